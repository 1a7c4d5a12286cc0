"""SQL over explanations: one page of explained requests (misses only when asked), how
many match, and the missed cost per window and cause.

A page is chosen before anything is joined whole: the matching ids and times come from
the newest span of requests (a longer one only when it holds too few) semi-joined with
the explanations' ids of the causes asked for, ordered by time and cut to the page;
only the page's rows are then read whole, through the primary keys. Misses leave out
``no_miss`` and ``cold_start`` in SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import polars as pl

from collector.store.queries import Filters

NOT_MISSES = ("no_miss", "cold_start")  # explained, but nothing a user could act on
SPAN_GROWTH = 8  # how much longer each search for a page looks back


def _cause_where(cause: str | None, misses: bool) -> tuple[str, list]:
    clauses, params = ["TRUE"], []
    if misses:
        clauses.append(f"cause NOT IN ({', '.join('?' for _ in NOT_MISSES)})")
        params.extend(NOT_MISSES)
    if cause:
        clauses.append("cause = ?")
        params.append(cause)
    return " AND ".join(clauses), params


def _filtered(filters: Filters) -> bool:
    return any(v is not None for v in vars(filters).values())


def page(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    cause: str | None = None,
    limit: int = 100,
    offset: int = 0,
    misses: bool = False,
    holds: datetime | None = None,
) -> pl.DataFrame:
    """Explained requests, newest first, one page (``misses``: leave out no_miss and
    cold_start; ``holds``: a time from which on the matching rows are known to fill the
    page, where the search for it starts)."""
    chosen = _chosen(cur, filters, cause, limit, offset, misses, holds)
    if not chosen:
        ids: list[str] = []
        marks = "NULL"
    else:
        ids = [i for i, _ in chosen]
        marks = ", ".join("?" for _ in ids)
    return cur.sql(  # the page's rows whole, through the primary keys
        f"""
        SELECT x.*, r.ts, r.route, r.replica, r.request_model
        FROM (SELECT * FROM explanations WHERE id IN ({marks})) x
        JOIN (SELECT id, ts, route, replica, request_model FROM requests
              WHERE id IN ({marks})) r USING (id)
        ORDER BY r.ts DESC, x.id""",
        params=[*ids, *ids],
    ).pl()


def _chosen(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    cause: str | None,
    limit: int,
    offset: int,
    misses: bool,
    holds: datetime | None = None,
) -> list[tuple[str, object]]:
    """The page's (id, ts): searched in the newest hour of requests first, then in
    eight times as long a span each time, until the span holds the page or everything
    (a span from a time on holds every row newer than it, so its page is the page)."""
    first, last = cur.execute("SELECT min(ts), max(ts) FROM requests").fetchall()[0]
    if first is None:
        return []
    if filters.until is not None:
        last = min(last, filters.until)
    where, params = filters.where("r")
    which, cause_params = _cause_where(cause, misses)
    sql = (
        # A join, not a semi-join: DuckDB builds a semi-join's table from its right side
        # (every explanation), a join's from the smaller (the span's requests).
        f"SELECT r.id, r.ts FROM (SELECT * FROM requests r WHERE r.ts >= ? AND {where}) r "
        f"JOIN (SELECT id FROM explanations WHERE {which}) e USING (id) "
        "ORDER BY r.ts DESC, r.id LIMIT ? OFFSET ?"
    )
    span = timedelta(hours=1)
    if holds is not None and last - holds > span:
        span = last - holds
    while True:
        start = last - span
        if start <= first:
            start = first
        found = cur.execute(sql, [start, *params, *cause_params, limit, offset]).fetchall()
        if len(found) >= limit or start <= first:
            return found
        span *= SPAN_GROWTH


def count(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    cause: str | None = None,
    misses: bool = False,
) -> int:
    """How many explained requests match (the total a page is one part of)."""
    which, cause_params = _cause_where(cause, misses)
    if not _filtered(filters):  # no request column filtered: no join
        sql, params = f"SELECT count(*) FROM explanations WHERE {which}", cause_params
    else:
        where, params = filters.where("r")
        sql = (
            f"SELECT count(*) FROM requests r SEMI JOIN (SELECT id FROM explanations "
            f"WHERE {which}) e USING (id) WHERE {where}"
        )
        params = [*cause_params, *params]
    return int(cur.execute(sql, params).fetchall()[0][0])


def by_cause(cur: duckdb.DuckDBPyConnection, filters: Filters, window_s: int) -> pl.DataFrame:
    """Per window and miss cause: misses, missed tokens and missed dollars."""
    where, params = filters.where("r")
    which, cause_params = _cause_where(None, True)
    return cur.sql(
        f"""
        SELECT time_bucket(to_seconds(?::BIGINT), r.ts) AS window, e.cause,
               count(*) AS misses, sum(e.missed_tokens)::BIGINT AS missed_tokens,
               sum(e.missed_cost_usd) AS missed_cost_usd
        FROM (SELECT id, cause, missed_tokens, missed_cost_usd FROM explanations
              WHERE {which}) e JOIN requests r USING (id)
        WHERE {where} GROUP BY ALL ORDER BY 1, 2""",
        params=[window_s, *cause_params, *params],
    ).pl()
