"""Benchmark: N collectors into one DuckLake, beside the embedded store in the same run.

A private PostgreSQL (tests/postgres.py) holds the catalog, a temporary directory the
Parquet files. For the embedded store (one `cachediag serve --db FILE`) and for 1, 2 and 4
`cachediag serve --lake` collectors, a client process sends the same kind of exports as
benchmarks/bench_ingest.py (512 LLM spans each, 200 block hashes per span), each
connection to one collector, and the run prints spans/s, the CPU seconds each collector
spent per 1,000 spans (user + system, from /proc: what sizes N machines), and the lake's
commit p50/p99 (each collector logs its own at stop). Then, with 1 M rows written straight
into both stores, the dashboard's queries: hit ratio and p95 TTFT per route per 5 min (the
series query), one request by id, a session's last 50.

On a 2-core machine, 4 collectors share 2 cores: the figures say what a commit costs and
how the catalog holds up, not how N machines scale (that is N x the 1-collector rate while
the catalog keeps up with the commits).

    python benchmarks/bench_lake.py [--batches N] [--rows R] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_ingest import SPANS_PER_BATCH  # noqa: E402
from tests.postgres import Cluster  # noqa: E402
from tests.servers import Server  # noqa: E402

QUIET = ("--workers", "0", "--no-grpc", "--alert-every", "0")
CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK  # utime + stime


def run_client(ports: list[int], batches: int, connections: int) -> float:
    """Send ``batches`` exports over ``connections`` connections per collector (as a
    gateway's sending queue does with its consumers), in a child process; the elapsed
    seconds. A collector acknowledges an export after its batch's lake commit (up to
    LAKE_BATCH_S later), so one connection carries about one export a second."""
    code = (
        "import sys, threading, time, gzip\n"
        "from benchmarks.bench_ingest import client, export\n"
        "ports = [int(p) for p in sys.argv[1].split(',')]\n"
        "n = int(sys.argv[2])\n"
        "bodies = [gzip.compress(export(1000 + i), 1) for i in range(n)]\n"
        "targets = ports * int(sys.argv[3])\n"
        "lat, err = [], []\n"
        "threads = [threading.Thread(target=client, args=(p, bodies[i::len(targets)], lat, "
        "err)) for i, p in enumerate(targets)]\n"
        "start = time.perf_counter()\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(time.perf_counter() - start)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, ",".join(map(str, ports)), str(batches), str(connections)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return float(out.split()[-1])


def ingest(
    tmp: Path, dsn: str | None, collectors: int, batches: int, connections: int, tag: str
) -> dict:
    """One ingest run: spans/s, CPU s per 1,000 spans per collector, lake commit p50/p99."""
    flags: tuple[str, ...] = ()
    if dsn is not None:
        (tmp / tag).mkdir()
        flags = ("--lake", f"postgres:{dsn}", "--data-path", str(tmp / tag))
    servers = [Server(tmp / f"{tag}-{i}.duckdb", *QUIET, *flags).start() for i in range(collectors)]
    before = [cpu_s(s.proc.pid) for s in servers]
    try:
        elapsed = run_client([s.port for s in servers], batches, connections)
        used = [cpu_s(s.proc.pid) - b for s, b in zip(servers, before, strict=True)]
    finally:
        logs = [s.stop() for s in servers]
    spans = batches * SPANS_PER_BATCH
    pattern = r"lake commits: (\d+), \d+ rows, p50 ([\d.]+) ms, p99 ([\d.]+)"
    commits = [re.search(pattern, text) for text in logs]
    found = [c for c in commits if c]
    return {
        "spans_s": spans / elapsed,
        "cpu_per_1k": statistics.mean(u / (spans / collectors / 1000) for u in used),
        "commits": sum(int(c.group(1)) for c in found),
        "p50_ms": max((float(c.group(2)) for c in found), default=float("nan")),
        "p99_ms": max((float(c.group(3)) for c in found), default=float("nan")),
    }


def fill(con, rows: int, commits: int) -> None:
    """``rows`` synthetic request rows in ``commits`` transactions (a day, 8 routes, 20 k
    sessions), with 200 block hashes each as the collectors store them."""
    per = rows // commits
    for c in range(commits):
        con.execute(
            f"""INSERT INTO requests (id, ts, route, session_key, request_model, provider,
                prompt_tokens, cached_tokens, ttft_ms, block_hashes, signal)
            SELECT md5(i::VARCHAR), TIMESTAMP '2026-11-01' + to_microseconds(i * 86400),
                '/route-' || (i % 8), 'sess-' || (hash(i) % 20000), 'gpt-4o', 'openai',
                8000 + i % 4000, (i % 3) * 2048, 200 + (i % 997), repeat('x', 1600)::BLOB,
                'span'
            FROM range({c * per}, {(c + 1) * per}) t(i)"""
        )


def queries(con, repeat: int) -> dict[str, float]:
    """Median ms of each dashboard query."""
    from collector.store import queries as q

    session = con.execute("SELECT session_key FROM requests LIMIT 1").fetchone()[0]
    some_id = con.execute("SELECT id FROM requests LIMIT 1 OFFSET 12345").fetchone()[0]
    cases = {
        "hit ratio + p95 TTFT per route per 5 min": lambda: q.timeseries(
            con, q.Filters(), 300, "route"
        ),
        "one request by id": lambda: q.request_detail(con, some_id),
        "a session's last 50": lambda: con.execute(
            "SELECT * FROM requests WHERE session_key = ? ORDER BY ts DESC LIMIT 50", [session]
        ).fetchall(),
    }
    out = {}
    for name, run in cases.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
        out[name] = statistics.median(times)
    return out


def query_latency(tmp: Path, dsn: str, rows: int, repeat: int) -> dict[str, dict]:
    from collector.store import lake
    from collector.store.database import Store

    store = Store(str(tmp / "query.duckdb"))
    fill(store.con, rows, 20)
    (tmp / "q").mkdir()
    shared = lake.connect(lake.LakeConfig(f"postgres:{dsn}", str(tmp / "q")))
    fill(shared, rows, 20)  # 20 commits: 20 files, as 20 collector batches would leave
    try:
        return {"embedded": queries(store.con, repeat), "lake": queries(shared, repeat)}
    finally:
        store.close()
        shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60, help="exports per ingest run")
    parser.add_argument(
        "--connections", type=int, default=8, help="client connections per collector"
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows for the queries (0: skip them)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query")
    args = parser.parse_args()
    with Cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        print(
            f"ingest: {args.batches} exports x {SPANS_PER_BATCH} spans per run, "
            f"{args.connections} connections per collector"
        )
        runs = [("embedded", None, 1)] + [(f"lake x{n}", n, n) for n in (1, 2, 4)]
        for label, n, collectors in runs:
            dsn = None
            if n is not None:
                pg.create_database(f"ingest{n}")
                dsn = pg.dsn_of(f"ingest{n}")
            r = ingest(
                base, dsn, collectors, args.batches, args.connections, label.replace(" ", "")
            )
            print(
                f"  {label:<9} {r['spans_s']:>8,.0f} spans/s  CPU {r['cpu_per_1k']:.3f} s "
                f"per 1,000 spans per collector  commits {r['commits']:>4} "
                f"p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms"
            )
        if not args.rows:
            return
        pg.create_database("queries")
        found = query_latency(base, pg.dsn_of("queries"), args.rows, args.repeat)
        print(f"dashboard queries at {args.rows:,} rows (median of {args.repeat}, ms):")
        for name in found["embedded"]:
            e, lk = found["embedded"][name], found["lake"][name]
            print(f"  {name:<42} embedded {e:8.1f}  lake {lk:8.1f}  ({lk / e:.1f}x)")


if __name__ == "__main__":
    main()
