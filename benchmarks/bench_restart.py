"""Benchmark: what a stop and a restart cost a server holding explained requests.

Builds a database of explained requests (sessions of growing conversations, as
bench_explain does), then, with real ``cachediag serve`` processes:

- restarts a server on it and posts one 512-span export: rows explained after the
  restart, and the time until they are, beside a whole-database pass (what every
  start and every stop re-explained before explanations resumed from the store);
- stops it with SIGTERM: idle, in the middle of a long explain pass, and right after
  a burst of ingest (a write-ahead log to checkpoint): median seconds to exit.

Target: every stop under 5 s, exit status 0; nothing re-explained.

    python benchmarks/bench_restart.py [--requests N] [--stops K]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402

from analysis.explain import Explainer  # noqa: E402
from benchmarks.bench_explain import fill_sessions  # noqa: E402
from collector.explanations import explain_new  # noqa: E402
from collector.store.database import Store  # noqa: E402
from tests.otlp_build import traces  # noqa: E402
from tests.servers import Server  # noqa: E402

ARGS = ("--workers", "0", "--no-grpc")
PB = {"Content-Type": "application/x-protobuf"}
END_NS = 1_767_225_600 * 10**9  # 2026-01-01, where fill_sessions starts


def export(n: int, seed: int, start_ns: int, blocks: int = 20) -> bytes:
    """``n`` LLM spans of new sessions starting at ``start_ns``."""
    spans = [
        {
            "start": start_ns + i * 10**6,
            "attributes": {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "cachediag.session_key": f"new{seed}-{i}",
                "cachediag.block_size": 64,
                "cachediag.block_hashes": [seed * 10**6 + i * 100 + k for k in range(blocks)],
                "gen_ai.usage.input_tokens": 64 * blocks,
                "gen_ai.usage.cache_read.input_tokens": 0,
            },
        }
        for i in range(n)
    ]
    return traces(spans, seed=seed).SerializeToString()


def stop(srv: Server) -> tuple[float, str]:
    """SIGTERM; seconds until the process exited, and its log. Fails on an unclean exit."""
    proc = srv.proc
    began = time.perf_counter()
    err = srv.stop(signal.SIGTERM)
    took = time.perf_counter() - began
    if proc.returncode != 0 or "terminate called" in err or "Traceback" in err:
        raise SystemExit(f"unclean stop (status {proc.returncode}):\n{err}")
    return took, err


def restart_with_one_export(db: Path, rows: int) -> None:
    """Restart on explained rows, post 512 spans, wait until they are explained."""
    began = time.perf_counter()
    srv = Server(db, *ARGS).start()
    post = srv.request("POST", "/v1/traces", export(512, 1, END_NS + rows * 80_000_000), PB)
    assert post[0] == 200, post
    stats = srv.api("stats?wait=1")
    took = time.perf_counter() - began
    _, log = stop(srv)
    primed = re.search(r"primed with (\d+)", log)
    print(
        f"restart + one 512-span export: {stats['explained_rows']:,} rows explained "
        f"({primed.group(1) if primed else '?'} primed) in {took:.1f} s from start; "
        f"before: every stored row, {rows + 512:,}"
    )


def stop_times(db: Path, tmp: Path, stops: int) -> None:
    idle = [stop(Server(db, *ARGS).start())[0] for _ in range(stops)]
    unexplained = tmp / "unexplained.duckdb"
    mid = []
    for _ in range(stops):
        shutil.copy(db, unexplained)
        with duckdb.connect(str(unexplained)) as con:
            con.execute("DELETE FROM explanations")
        srv = Server(unexplained, *ARGS).start()
        for _ in range(100_000):  # bounded: until the pass has explained a chunk
            if srv.api("stats")["explained_rows"]:
                break
        mid.append(stop(srv)[0])
    burst = []
    for k in range(stops):
        srv = Server(tmp / f"burst{k}.duckdb", *ARGS).start()
        for i in range(100):  # 51,200 rows of 60 blocks: a write-ahead log to checkpoint
            srv.request("POST", "/v1/traces", export(512, 100 + i, END_NS + i * 10**9, 60), PB)
        burst.append(stop(srv)[0])
    for name, times in (("idle", idle), ("mid-pass", mid), ("after a 51k-row burst", burst)):
        print(
            f"SIGTERM {name}: median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {stops} (target 5 s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--stops", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "restart.duckdb"
        store = Store(str(db))
        fill_sessions(store, args.requests)
        began = time.perf_counter()
        explain_new(store, Explainer())
        store.close()
        print(
            f"a whole-database pass (what each start and stop re-explained before): "
            f"{args.requests:,} rows in {time.perf_counter() - began:.1f} s"
        )
        restart_with_one_export(db, args.requests)
        stop_times(db, Path(tmp), args.stops)


if __name__ == "__main__":
    main()
