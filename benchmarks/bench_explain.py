"""Benchmark: explain throughput over a million stored requests, alert rules over ten million.

Builds the databases with SQL (sessions of growing conversations sharing
per-route prefixes, with block-hash chains and segment maps; a tenth of the
requests miss), then times ``cachediag explain``'s pass (read, explain,
write) and one evaluation of every alert rule, beside the time DuckDB takes
just to scan the same rows.

Targets: >= 10,000 requests/s explained; rules over 10 M rows in <= 2 s.

    python benchmarks/bench_explain.py [--requests N] [--rule-rows N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.explain import Explainer  # noqa: E402
from collector.explanations import explain_new  # noqa: E402
from collector.service import alerts as service_alerts  # noqa: E402
from collector.store.database import Store  # noqa: E402
from collector.store.migrations import pack_sql  # noqa: E402

SESSIONS = 5000  # conversations running at once; each takes 8 turns
HASHES = """list_transform(range(20 + 5 * turn), lambda k: (CASE WHEN k < 20
                   THEN hash(session % 5, k) ELSE hash(session, k) END
                   % 9223372036854775807)::BIGINT)"""


def fill_sessions(store: Store, n: int) -> None:
    """``n`` requests: 5,000 concurrent sessions x 8 turns, 5 routes, 3 replicas."""
    store.con.execute(f"""
        INSERT INTO requests (id, ts, signal, session_key, request_model, provider, route,
                              replica, block_hashes, block_size, total_tokens, prompt_tokens,
                              cached_tokens, segments, ttft_ms)
        WITH base AS (
            SELECT i AS n, i % {SESSIONS} + {SESSIONS} * (i // ({SESSIONS} * 8)) AS session,
                   (i // {SESSIONS}) % 8 AS turn FROM range({n}) t(i))
        SELECT 'r' || n, TIMESTAMP '2026-01-01' + to_microseconds((n * 80000)::BIGINT), 'span',
               's' || session, 'gpt-4o', 'openai', '/r' || (session % 5),
               'rep' || (session % 3),
               {pack_sql(HASHES)},
               64, (20 + 5 * turn) * 64 + 30, (20 + 5 * turn) * 64 + 30,
               CASE WHEN n % 10 = 0 THEN 0 ELSE (20 + 5 * turn) * 64 END,
               '[["tools[0]","tool",0,1280,"t' || (session % 5) || '"],' || array_to_string(
                   list_transform(range(turn + 1), lambda k: format(
                       '["messages[{{}}].content","message",{{}},{{}},"m{{}}_{{}}"]',
                       k, 1280 + k * 320, 1600 + k * 320, session, k)), ',') || ']',
               200 + (n % 97)
        FROM base""")


def fill_flat(store: Store, n: int) -> None:
    """``n`` requests with what the rules read: 10 routes x 2 models x 4 replicas, 30 days."""
    store.con.execute("DROP INDEX requests_ts")
    store.con.execute(f"""
        INSERT INTO requests (id, ts, signal, route, request_model, replica, prompt_version,
                              prompt_tokens, cached_tokens, ttft_ms)
        SELECT 'f' || i, TIMESTAMP '2026-01-01' + to_microseconds((i * 260000)::BIGINT),
               'span', '/r' || (i % 10), CASE WHEN i % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4.1' END,
               'rep' || (i % 4), 'v' || (i // 1000000), 2000 + i % 500,
               CASE WHEN i % 7 = 0 THEN 0 ELSE 1536 END, 150 + (i % 211)
        FROM range({n}) t(i)""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rule-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/explain.duckdb")
        fill_sessions(store, args.requests)
        start = time.perf_counter()
        store.con.execute(
            "SELECT sum(octet_length(block_hashes)), max(segments) FROM requests"
        ).fetchall()
        scan = time.perf_counter() - start
        start = time.perf_counter()
        _, counts = explain_new(store, Explainer())
        took = time.perf_counter() - start
        store.close()
        print(
            f"explain: {sum(counts.values()):,} requests in {took:.1f} s = "
            f"{sum(counts.values()) / took:,.0f} requests/s (target 10,000); "
            f"DuckDB scans the same rows in {scan:.2f} s"
        )
        print("  causes: " + ", ".join(f"{c} {n:,}" for c, n in counts.most_common()))

        flat = Store(f"{tmp}/rules.duckdb")
        fill_flat(flat, args.rule_rows)
        cur = flat.cursor()
        start = time.perf_counter()
        cur.execute("SELECT count(*), sum(prompt_tokens) FROM requests").fetchall()
        scan = time.perf_counter() - start
        start = time.perf_counter()
        found = service_alerts.find(cur)
        took = time.perf_counter() - start
        flat.close()
        print(
            f"alert rules over {args.rule_rows:,} rows: {took:.2f} s (target 2 s), "
            f"{len(found)} alerts; DuckDB scans them in {scan:.2f} s"
        )


if __name__ == "__main__":
    main()
