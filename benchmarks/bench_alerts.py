"""Benchmark: the alert rules (and insights without replays) over ten million rows whose
misses are explained, beside DuckDB scanning them.

``bench_explain.py --rule-rows`` times the rules over rows without explanations;
here one request in seven misses and carries an explanation (a cause, missed
tokens and dollars), as the server's store holds them, so the per-cause counts
the incidents are judged on are part of the time. Median of ``--repeat`` runs.

    python benchmarks/bench_alerts.py [--rows N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_explain import fill_flat  # noqa: E402
from collector.service import alerts as service_alerts  # noqa: E402
from collector.store.database import Store  # noqa: E402

CAUSES = "['routing', 'ttl_expired', 'dynamic_value', 'eviction_or_unknown']"


def explain_misses(store: Store) -> int:
    """An explanation for every request that missed (cached 0), causes in turn."""
    store.con.execute(f"""
        INSERT INTO explanations (id, cause, missed_tokens, missed_cost_usd)
        SELECT id, {CAUSES}[1 + (hash(id) % 4)::INTEGER], prompt_tokens,
               prompt_tokens * 1.25e-6
        FROM requests WHERE cached_tokens = 0""")
    return store.con.execute("SELECT count(*) FROM explanations").fetchall()[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/rules.duckdb")
        fill_flat(store, args.rows)
        explained = explain_misses(store)
        cur = store.cursor()
        scans, rules, found = [], [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            cur.execute("SELECT count(*), sum(prompt_tokens) FROM requests").fetchall()
            scans.append(time.perf_counter() - start)
            start = time.perf_counter()
            found = service_alerts.find(cur)
            rules.append(time.perf_counter() - start)
        store.close()
    print(
        f"alert rules over {args.rows:,} rows ({explained:,} explained misses): "
        f"median {statistics.median(rules):.2f} s of {args.repeat} (target 2 s), "
        f"{len(found)} incidents; DuckDB scans them in {statistics.median(scans):.2f} s"
    )


if __name__ == "__main__":
    main()
