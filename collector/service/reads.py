"""Read operations over the store: rows and series as polars frames, one request as a
dict, the server's counters. Nothing here writes."""

from __future__ import annotations

from typing import Any

import duckdb

from collector.store import metric_series, misses, queries

WAIT_S = 60.0  # how long stats(wait=True) waits for the explainer


# The list and series reads are the store's queries as they are: the service adds nothing.
requests = queries.requests  # (cur, filters, limit, offset): requests, newest first, one page
request = queries.request_detail  # (cur, id): one request with content and explanation, or None
series = queries.timeseries  # (cur, filters, window_s, group): hit ratio, TTFT, missed cost
explanations = misses.page  # (cur, filters, cause, limit, offset, misses): one page
explanations_count = misses.count  # (cur, filters, cause, misses): how many match
causes = misses.by_cause  # (cur, filters, window_s): missed dollars per window and cause
prefixes = queries.prefixes  # (cur, filters, window_s): distinct and new prefixes per route
routing = queries.routing  # (cur, filters): replicas, stickiness, requests without a session
# (cur, filters, window_s, name, token_type): exported GenAI client metrics per window
metrics = metric_series.series


def stats(collector: Any, wait: bool = False) -> dict[str, int]:
    """The server's ingest and explain counters. ``wait`` first waits (up to WAIT_S) until
    every committed row is explained, so a script reads explanations without polling;
    it evaluates nothing and writes nothing."""
    explain = collector.explain
    if explain and wait:
        explain.flush(WAIT_S)
    return dict(
        collector.stats.as_dict(),
        committed_rows=collector.writer.committed_rows,
        pending_rows=collector.writer.pending_rows,
        explained_rows=explain.explained if explain else 0,
        explain_rewinds=explain.rewinds if explain else 0,
        inflight_bytes=collector.inflight,
        db_memory_bytes=db_memory(collector.store.cursor()),
    )


def db_memory(cur: duckdb.DuckDBPyConnection) -> int:
    """Bytes DuckDB holds now (buffer pool, indexes, uncheckpointed rows); closes ``cur``."""
    try:
        return int(cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0])
    finally:
        cur.close()
