"""Read operations over the store: rows and series as polars frames, one request as a
dict, the server's counters. Nothing here writes."""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from collector.store import queries
from collector.store.queries import Filters

WAIT_S = 60.0  # how long stats(wait=True) waits for the explainer


def requests(
    cur: duckdb.DuckDBPyConnection, filters: Filters, limit: int = 100, offset: int = 0
) -> pl.DataFrame:
    """Requests, newest first, one page."""
    return queries.requests(cur, filters, limit, offset)


def request(cur: duckdb.DuckDBPyConnection, request_id: str) -> dict | None:
    """One request with its captured content and explanation, or None."""
    return queries.request_detail(cur, request_id)


def series(
    cur: duckdb.DuckDBPyConnection, filters: Filters, window_s: int, group: str | None = None
) -> pl.DataFrame:
    """Per window (and group): requests, hit ratio, TTFT percentiles, missed tokens and cost."""
    return queries.timeseries(cur, filters, window_s, group)


def explanations(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    cause: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> pl.DataFrame:
    """Explained requests, newest first, one page."""
    return queries.explanations(cur, filters, cause, limit, offset)


def prefixes(cur: duckdb.DuckDBPyConnection, filters: Filters, window_s: int) -> pl.DataFrame:
    """Per window and route: distinct and new prefixes, tools, schema and prompt versions."""
    return queries.prefixes(cur, filters, window_s)


def routing(cur: duckdb.DuckDBPyConnection, filters: Filters) -> pl.DataFrame:
    """Per route: replicas, session stickiness, requests without a session key."""
    return queries.routing(cur, filters)


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
