"""`cachediag ingest`: OTLP-JSON lines and request records into a database, no server."""

from __future__ import annotations

import json
import re

import duckdb

from tests.cli_run import cachediag
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
    return cachediag("ingest", *args)


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
    assert proc.exit_code == 0, proc.stderr
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
        "o200k_base",  # exact and offline, from bpe-openai
        0,
        True,
    )  # under one 64-token block
    (content,) = con.execute("SELECT content FROM request_content LIMIT 1").fetchall()[0]
    assert content.startswith("<|system|>\nYou are the support bot.")


def test_bad_line_is_one_error_and_keeps_earlier_rows(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + '{"time": 1, "nothing": true}\n')
    proc = _ingest(str(path), "--db", str(tmp_path / "db.duckdb"))
    assert proc.exit_code == 2
    assert proc.stderr.count("\n") == 1 and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = _ingest(str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "db.duckdb"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def _records(n: int, start: int = 0) -> list[str]:
    return [json.dumps(dict(RECORD, id=f"r{i}")) for i in range(start, start + n)]


def _load(tmp_path, path, **kwargs):
    from collector.records import ingest_file
    from collector.store.database import Store

    store = Store(str(tmp_path / "load.duckdb"))
    try:
        report = ingest_file(store, str(path), True, **kwargs)
        ids = {r for (r,) in store.con.execute("SELECT id FROM requests").fetchall()}
    finally:
        store.close()
    return report, ids


def test_bad_lines_are_named_and_every_good_line_is_stored(tmp_path):
    good = _records(30)
    lines = [*good[:15], "{not json", *good[15:20], "[1, 2]", *good[20:], '{"messages": 5}']
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report, ids = _load(tmp_path, path)
    assert ids == {f"r{i}" for i in range(30)} and report.stored == 30
    assert report.bad == 3 and report.lines == 33 and report.stopped is None
    assert [n for n, _ in report.first_bad] == [16, 22, 33]
    assert "invalid JSON" in report.first_bad[0][1]
    assert "JSON object" in report.first_bad[1][1]
    assert "must be a list" in report.first_bad[2][1]


def test_many_bad_lines_are_counted_and_the_first_named(tmp_path):
    from collector.records import BAD_LINES_KEPT

    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(["x"] * 40 + _records(2)) + "\n")
    db = tmp_path / "db.duckdb"
    proc = _ingest(str(path), "--db", str(db))
    assert proc.exit_code == 2 and "Traceback" not in proc.stderr
    assert "2 requests stored" in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert "40 of 42 lines not stored" in line
    assert re.findall(r"line (\d+):", line) == [str(n) for n in range(1, BAD_LINES_KEPT + 1)]
    assert f"and {40 - BAD_LINES_KEPT} more" in line


def test_hostile_lines_are_refused_without_a_traceback(tmp_path):
    latin = json.dumps(dict(RECORD, id="latin", route="/café"), ensure_ascii=False)
    lines = [
        _records(1)[0].encode(),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"time": 1, "request": {"messages": ' + b"[" * 300 + b"]" * 300 + b"}}",
        b'{"time": 1, "n": ' + b"9" * 5000 + b"}",
        latin.encode("latin-1"),
        b'{"time": 1e999, "request": {"messages": []}}',
        _records(1, start=1)[0].encode(),
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report, ids = _load(tmp_path, path)
    assert ids == {"r0", "r1"}
    reasons = dict(report.first_bad)
    assert report.bad == 5 and sorted(reasons) == [2, 3, 4, 5, 6]
    assert "nested too deeply" in reasons[2] and "deeper than 100" in reasons[3]
    assert "4300 digits" in reasons[4] and "iconv" in reasons[5] and "'time'" in reasons[6]
    proc = _ingest(str(path), "--db", str(tmp_path / "cli.duckdb"))
    assert proc.exit_code == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "2 requests stored" in proc.stdout
    assert "line 5: not UTF-8" in proc.stderr


def test_a_line_whose_values_cannot_be_stored_costs_only_that_line(tmp_path):
    span = {"attributes": {"gen_ai.system": "openai", "cachediag.tools_count": 2**40}}
    bad = json.dumps(to_json(traces([span], seed=9)))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([*_records(3), bad, *_records(3, start=3)]) + "\n")
    report, ids = _load(tmp_path, path)
    assert ids == {f"r{i}" for i in range(6)}
    assert report.bad == 1 and report.first_bad[0][0] == 4


def test_a_span_out_of_range_costs_only_that_span_and_names_its_line(tmp_path):
    good = {"gen_ai.system": "openai", "gen_ai.usage.input_tokens": 10}
    spans = [{"attributes": good}, {"attributes": dict(good, **{"gen_ai.usage.input_tokens": -5})}]
    export = json.dumps(to_json(traces([*spans, {"attributes": good}], seed=11)))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join([*_records(2), export]) + "\n")
    report, ids = _load(tmp_path, path)
    assert report.stored == 4 and len(ids) == 4
    ((number, reason),) = report.first_bad
    assert number == 3 and reason.startswith("1 of 3 records refused") and "-5" in reason


def test_truncated_gzip_keeps_the_complete_records_before_the_cut(tmp_path):
    import gzip
    import zlib

    data = gzip.compress(("\n".join(_records(200)) + "\n").encode())
    cut = data[: len(data) // 2]
    whole = zlib.decompressobj(31).decompress(cut).count(b"\n")
    assert 0 < whole < 200
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(cut)
    report, ids = _load(tmp_path, path)
    assert ids == {f"r{i}" for i in range(whole)}
    assert "truncated" in report.stopped and f"after line {whole}" in report.stopped
    proc = _ingest(str(path), "--db", str(tmp_path / "cli.duckdb"))
    assert proc.exit_code == 2 and f"{whole} requests stored" in proc.stdout
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path):
    import gzip

    text = "\n".join(_records(4)) + "\n"
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text(text)
    zipped = tmp_path / "zipped.jsonl"
    zipped.write_bytes(gzip.compress(text.encode()))
    assert _load(tmp_path, plain)[0].stored == 4
    report, ids = _load(tmp_path, zipped)
    assert len(ids) == 4 and report.bad == 0 and report.stopped is None


def test_memory_is_bounded_by_chunks_of_input_bytes(tmp_path, monkeypatch):
    from collector import records

    stores = []
    original = records._store
    monkeypatch.setattr(records, "CHUNK_BYTES", 3 * len(_records(1)[0]))
    monkeypatch.setattr(
        records,
        "_store",
        lambda store, lines, report: (stores.append(len(lines)), original(store, lines, report)),
    )
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(_records(10)) + "\n")
    assert _load(tmp_path, path)[0].stored == 10
    assert max(stores) <= 3 and sum(stores) == 10


def test_not_a_duckdb_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(_records(1)[0] + "\n")
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n")
    proc = _ingest(str(path), "--db", str(db))
    assert proc.exit_code == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "not a DuckDB database" in proc.stderr


def test_an_overlong_line_is_refused_without_being_held(tmp_path, monkeypatch):
    from collector import records

    monkeypatch.setattr(records, "MAX_LINE_BYTES", 2048)
    r0, r1 = _records(2)
    assert len(r0) < 2048
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join([r0, "x" * 10_000, r1]) + "\n")
    report, ids = _load(tmp_path, path)
    assert ids == {"r0", "r1"} and report.lines == 3
    assert len(report.first_bad) == 1 and report.first_bad[0][0] == 2
    assert report.first_bad[0][1].startswith("longer than")
