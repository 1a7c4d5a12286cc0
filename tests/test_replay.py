"""`cachediag replay`: recorded traffic lands in a real server as OTLP spans."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

from analysis.traffic import TrafficGenerator
from analysis.usage import from_provider
from tests.cli_run import cachediag
from tests.servers import Server


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_replay_lands_every_request_with_its_usage(tmp_path):
    records = list(TrafficGenerator(seed=3, hours=1, sessions_per_hour=120).records())
    assert len({r["service"] for r in records}) == 4  # this seed's hour has every service
    path = tmp_path / "traffic.jsonl"
    _write(path, records)
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    try:
        proc = cachediag("replay", str(path), "--endpoint", server.url)
        assert proc.exit_code == 0, proc.stderr
        assert f"{len(records):,} requests replayed" in proc.stdout
        rows = server.api("requests?limit=10000")["data"]
    finally:
        server.stop()

    def key(route, replica, prompt, cached):
        return (route, replica, prompt, cached)

    want = Counter(
        key(
            r["route"],
            r["replica"],
            from_provider(r["response"]["usage"]).prompt_tokens,
            from_provider(r["response"]["usage"]).cached_tokens,
        )
        for r in records
    )
    got = Counter(
        key(r["route"], r["replica"], r["prompt_tokens"], r["cached_tokens"]) for r in rows
    )
    assert got == want
    assert {r["service"] for r in rows} == {r["service"] for r in records}
    assert all(r["prefix_hash"] and r["ttft_ms"] > 0 for r in rows)


def test_replay_now_shifts_times_and_bad_files_are_one_line(tmp_path):
    records = list(TrafficGenerator(seed=4, hours=0.2, sessions_per_hour=60).records())[:20]
    path = tmp_path / "traffic.jsonl"
    _write(path, records)
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    try:
        before = time.time()
        proc = cachediag("replay", str(path), "--now", "--endpoint", server.url)
        assert proc.exit_code == 0, proc.stderr
        newest = server.api("requests?limit=1")["data"][0]["ts"]
    finally:
        server.stop()
    from datetime import datetime

    stamp = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp()
    assert before - 60 < stamp < time.time() + 5
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    proc = cachediag("replay", str(bad), "--endpoint", "http://127.0.0.1:9")
    assert proc.exit_code == 2 and proc.stderr.count("\n") == 1 and "line 1" in proc.stderr


def test_hostile_replay_files_are_one_line(tmp_path):
    import gzip

    from click.testing import CliRunner

    from cachediag.cli import main

    noise = random.Random(1).randbytes(30_000).hex()
    record = b'{"time": 1, "request": {"messages": [], "x": "%s"}}\n' % noise.encode()
    cases = {
        "deep.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n",
        "latin.jsonl": '{"time": 1, "request": {"messages": "café"}}\n'.encode("latin-1"),
        "long.jsonl": b'{"n": ' + b"9" * 5000 + b"}\n",
        "cut.jsonl.gz": gzip.compress(record)[:20_000],  # cut inside the first line
        "types.jsonl": b'{"time": 1, "request": 5}\n',
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = CliRunner().invoke(main, ["replay", str(path), "--endpoint", "http://127.0.0.1:9"])
        assert result.exit_code == 2, (name, result.output)
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: {path}: "), line
