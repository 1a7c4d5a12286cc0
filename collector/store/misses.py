"""SQL over explanations: one page of explained requests (misses only when asked), how
many match, and the missed cost per window and cause.

A page is chosen before anything is joined: the matching ids and times come from a
join of two narrow projections (the explanation's id and cause, the request's id, time
and filtered columns), ordered by time and cut to the page; only the page's rows are
then read whole. Misses leave out ``no_miss`` and ``cold_start`` in SQL.
"""

from __future__ import annotations

import duckdb
import polars as pl

from collector.store.queries import Filters

NOT_MISSES = ("no_miss", "cold_start")  # explained, but nothing a user could act on


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
) -> pl.DataFrame:
    """Explained requests, newest first, one page (``misses``: leave out no_miss and
    cold_start)."""
    where, params = filters.where("r")
    which, cause_params = _cause_where(cause, misses)
    return cur.sql(
        f"""
        WITH e AS (SELECT id FROM explanations WHERE {which}),
        chosen AS (SELECT r.id, r.ts FROM requests r SEMI JOIN e USING (id)
                   WHERE {where} ORDER BY r.ts DESC, r.id LIMIT ? OFFSET ?)
        SELECT x.*, c.ts, r.route, r.replica, r.request_model
        FROM chosen c JOIN explanations x USING (id) JOIN requests r USING (id)
        ORDER BY c.ts DESC, c.id""",
        params=[*cause_params, *params, limit, offset],
    ).pl()


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
