"""SQL of the alert rules and of the stored incidents (judged by ``analysis.alert_judge``).

Per window and group: requests, tokens, p95 TTFT (``alert_windows``) and the misses
of each cause with their dollars (``alert_causes``); what an incident's group did
(``alert_evidence``); the stored incidents, newest first (``listed``); the misses of
each cause per group and hour of day outside incidents (``recurring``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

NOT_MISSES = ("no_miss", "below_minimum", "cold_start", "identical", "appended")
# Written into the SQL, not bound: a bound window width or cause list keeps DuckDB from
# folding the bucket and pushing the filter down (10 M rows: 0.64 s against 0.42 s for the
# windows, 1.28 s against 0.48 s for the causes).
_NOT_MISSES_SQL = ", ".join(f"'{cause}'" for cause in NOT_MISSES)


def _bucket(window_s: int, column: str) -> str:
    """The window a request time falls in, the width written as a constant."""
    return f"time_bucket(INTERVAL {int(window_s)} SECOND, {column})"


def alert_windows(
    cur: duckdb.DuckDBPyConnection, window_s: int, group_by: tuple[str, ...]
) -> pl.DataFrame:
    """Per window and group: requests, tokens, hit ratio, p95 TTFT."""
    keys = ", ".join(group_by)
    return cur.sql(
        f"""
        SELECT {_bucket(window_s, "ts")} AS window, {keys},
               count(*) AS requests, sum(coalesce(prompt_tokens, 0))::BIGINT AS prompt,
               sum(coalesce(cached_tokens, 0))::BIGINT AS cached,
               quantile_cont(ttft_ms, 0.95) AS p95, count(ttft_ms) AS samples
        FROM requests GROUP BY ALL ORDER BY 1"""
    ).pl()


def alert_causes(
    cur: duckdb.DuckDBPyConnection, window_s: int, group_by: tuple[str, ...]
) -> pl.DataFrame:
    """Per window, group and miss cause: the requests it explains and their missed
    dollars and tokens."""
    keys = ", ".join(f"r.{k}" for k in group_by)
    return cur.sql(
        f"""
        WITH e AS (SELECT id, cause, missed_cost_usd, missed_tokens FROM explanations
                   WHERE cause NOT IN ({_NOT_MISSES_SQL}))
        SELECT {_bucket(window_s, "r.ts")} AS window, {keys}, e.cause,
               count(*) AS requests, sum(coalesce(e.missed_cost_usd, 0)) AS usd,
               sum(coalesce(e.missed_tokens, 0))::BIGINT AS tokens
        FROM e JOIN requests r USING (id) GROUP BY ALL ORDER BY 1"""
    ).pl()


def _group_where(group: dict[str, Any], group_by: tuple[str, ...]) -> tuple[str, list]:
    clauses, params = [], []
    for key, value in group.items():
        if key not in group_by:
            continue
        if value is None:
            clauses.append(f"r.{key} IS NULL")
        else:
            clauses.append(f"r.{key} = ?")
            params.append(value)
    return " AND ".join(clauses) or "TRUE", params


def alert_evidence(
    cur: duckdb.DuckDBPyConnection,
    group: dict[str, Any],
    group_by: tuple[str, ...],
    dimensions: Iterable[str],
    bounds: tuple[datetime, datetime, datetime],
    resolved_at: datetime | None,
    cause: str | None = None,
) -> tuple[dict[str, list[tuple]], list[tuple], int | None]:
    """What an incident's group did: per dimension, its values from the baseline's start
    to the first window's end, most missed tokens in the first window first (only the
    misses of ``cause`` when given); the top three miss causes (cause, requests, missed
    dollars) from the window's start to ``resolved_at`` (or now); and the tokens missed
    in the first window.
    ``bounds``: (baseline start, window start, window end)."""
    where, params = _group_where(group, group_by)
    since, start, end = bounds
    missed_sql = "coalesce(r.prompt_tokens, 0) - coalesce(r.cached_tokens, 0)"
    counted = f"CASE WHEN e.cause = ? THEN {missed_sql} ELSE 0 END" if cause else missed_sql
    extra = [cause] if cause else []
    values = {
        dim: cur.execute(
            f"SELECT r.{dim}, sum(CASE WHEN r.ts >= ? THEN {counted} ELSE 0 END) AS missed "
            f"FROM requests r LEFT JOIN explanations e USING (id) "
            f"WHERE {where} AND r.ts >= ? AND r.ts < ? "
            "GROUP BY ALL ORDER BY missed DESC NULLS LAST",
            [start, *extra, *params, since, end],
        ).fetchall()
        for dim in dimensions
    }
    marks = ", ".join("?" for _ in NOT_MISSES)
    causes = cur.execute(
        f"SELECT e.cause, count(*), round(sum(e.missed_cost_usd), 6) FROM explanations e "
        f"JOIN requests r USING (id) WHERE {where} AND r.ts >= ? "
        "AND r.ts < coalesce(?, 'infinity'::TIMESTAMP) "
        f"AND e.cause NOT IN ({marks}) GROUP BY ALL "
        "ORDER BY 3 DESC NULLS LAST LIMIT 3",
        [*params, start, resolved_at, *NOT_MISSES],
    ).fetchall()
    (missed,) = cur.execute(
        f"SELECT sum({missed_sql}) FROM requests r WHERE {where} AND r.ts >= ? AND r.ts < ?",
        [*params, start, end],
    ).fetchall()[0]
    return values, causes, missed


@contextlib.contextmanager
def _registered(cur: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> Iterator[None]:
    """``frame`` readable as the view ``name`` on ``cur`` for the block."""
    cur.register(name, frame)
    try:
        yield
    finally:
        cur.unregister(name)


def _same_group(group_by: tuple[str, ...], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{k} IS NOT DISTINCT FROM {right}.{k}" for k in group_by)


def evidence_dimensions(
    cur: duckdb.DuckDBPyConnection,
    windows: pl.DataFrame,
    group_by: tuple[str, ...],
    dimensions: tuple[str, ...],
    window_s: int,
) -> list[tuple]:
    """``alert_evidence``'s dimensions and missed tokens for many incidents in one scan.
    ``windows``: per incident ``k`` (its group, ``start``, its ``cause`` or null) one row
    per window from its baseline's start to its first window (``window``). Per incident
    and grouping set (``grouped``: ``grouping()`` over the dimensions; all set: the whole
    incident): k, each dimension's value, ``grouped``, the missed tokens counted for the
    value and those of the first window (null without requests)."""
    dims = ", ".join(f"r.{d} AS value_{i}" for i, d in enumerate(dimensions))
    flags = ", ".join(f"value_{i}" for i in range(len(dimensions)))
    sets = ", ".join(f"(k, value_{i})" for i in range(len(dimensions)))
    missed = "coalesce(r.prompt_tokens, 0) - coalesce(r.cached_tokens, 0)"
    ranges = _ranges(windows["window"].unique().sort().to_list(), timedelta(seconds=window_s))
    # one range scan each (zonemaps skip the rest; an OR of ranges would scan it all)
    scans = " UNION ALL ".join("SELECT * FROM requests WHERE ts >= ? AND ts < ?" for _ in ranges)
    with _registered(cur, "alert_evidence_windows", windows):
        return cur.execute(
            f"""
            WITH picked AS (
                SELECT w.k, w.start, w.cause AS wanted, r.id, r.ts, {dims},
                       {missed} AS missed
                FROM (SELECT *, {_bucket(window_s, "ts")} AS bucket FROM ({scans})) r
                JOIN alert_evidence_windows w
                  ON {_same_group(group_by, "r", "w")} AND r.bucket = w.window)
            SELECT k, {flags}, grouping({flags}) AS grouped,
                   sum(CASE WHEN ts >= start AND (wanted IS NULL OR e.cause = wanted)
                            THEN missed ELSE 0 END) AS dim_missed,
                   sum(CASE WHEN ts >= start THEN missed END) AS missed
            FROM picked LEFT JOIN explanations e USING (id)
            GROUP BY GROUPING SETS ({sets}, (k))""",
            [t for span in ranges for t in span],
        ).fetchall()


def _ranges(windows: list[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted window starts as the fewest [start, end) ranges that cover them."""
    out: list[tuple[datetime, datetime]] = []
    for window in windows:
        if out and out[-1][1] == window:
            out[-1] = (out[-1][0], window + step)
        else:
            out.append((window, window + step))
    return out


def evidence_causes(
    cur: duckdb.DuckDBPyConnection, incidents: pl.DataFrame, group_by: tuple[str, ...]
) -> list[tuple]:
    """``alert_evidence``'s top three miss causes for many incidents at once: per
    incident ``k`` (its group, ``start`` and ``resolved_at``, null while open), (k,
    cause, requests, missed dollars) most dollars first (ties by cause: one order every
    time). The dollars are summed exactly (whole picodollars) and rounded to the
    micro-dollar half away from zero, as DuckDB's ``round`` does."""
    spans = sorted(incidents.select("start", "resolved_at").rows(), key=lambda s: s[0])
    merged: list[list] = []
    for start, end in spans:  # overlapping spans as one range scan (end None: open)
        if merged and (merged[-1][1] is None or start <= merged[-1][1]):
            if merged[-1][1] is not None:
                merged[-1][1] = None if end is None else max(merged[-1][1], end)
        else:
            merged.append([start, end])
    scans = " UNION ALL ".join(
        "SELECT * FROM requests WHERE ts >= ?" + (" AND ts < ?" if end else "") for _, end in merged
    )
    with _registered(cur, "alert_evidence_incidents", incidents):
        return cur.execute(
            f"""
            WITH summed AS (
                SELECT a.k, e.cause, count(*) AS n,
                       sum(round(e.missed_cost_usd * 1e12)::BIGINT)::HUGEINT AS pico
                FROM ({scans}) r JOIN alert_evidence_incidents a
                  ON {_same_group(group_by, "r", "a")} AND r.ts >= a.start
                     AND r.ts < coalesce(a.resolved_at, 'infinity'::TIMESTAMP)
                JOIN explanations e ON e.id = r.id
                WHERE e.cause NOT IN ({_NOT_MISSES_SQL})
                GROUP BY a.k, e.cause),
            rounded AS (
                SELECT k, cause, n,
                       (sign(pico) * ((abs(pico) + 500000) // 1000000))::DOUBLE / 1e6 AS usd
                FROM summed)
            SELECT k, cause, n, usd FROM rounded
            QUALIFY row_number() OVER (PARTITION BY k ORDER BY usd DESC NULLS LAST, cause) <= 3
            ORDER BY k, usd DESC NULLS LAST, cause""",
            [t for span in merged for t in span if t is not None],
        ).fetchall()


def listed(
    cur: duckdb.DuckDBPyConnection,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[pl.DataFrame, int]:
    """Stored incidents, firing first then newest first, a page of them; and how many
    match in all. ``since``/``until`` bound their start."""
    clauses, params = ["TRUE"], []
    for sql, value in (("state = ?", state), ("started_at >= ?", since)):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    if until is not None:
        clauses.append("started_at < ?")
        params.append(until)
    where = " AND ".join(clauses)
    (total,) = cur.execute(f"SELECT count(*) FROM alerts WHERE {where}", params).fetchall()[0]
    page = " LIMIT ? OFFSET ?" if limit is not None else ""
    frame = cur.sql(
        f"SELECT * FROM alerts WHERE {where} "
        f"ORDER BY state = 'firing' DESC, started_at DESC, id{page}",
        params=[*params, *([limit, offset] if limit is not None else [])],
    ).pl()
    return frame, total


def cause_costs(
    cur: duckdb.DuckDBPyConnection, group_by: tuple[str, ...]
) -> tuple[pl.DataFrame, float]:
    """Per group, cause and hour of day: requests and missed dollars of every miss cause;
    and the days the stored traffic spans."""
    keys = ", ".join(f"r.{k}" for k in group_by)
    marks = ", ".join("?" for _ in NOT_MISSES)
    frame = cur.sql(
        f"""
        SELECT {keys}, e.cause, hour(r.ts) AS hour, count(*) AS requests,
               sum(coalesce(e.missed_cost_usd, 0)) AS usd, min(r.ts) AS first_ts
        FROM explanations e JOIN requests r USING (id)
        WHERE e.cause NOT IN ({marks}) GROUP BY ALL ORDER BY ALL""",
        params=list(NOT_MISSES),
    ).pl()
    first, last = cur.execute("SELECT min(ts), max(ts) FROM requests").fetchall()[0]
    days = max((last - first).total_seconds() / 86400, 1 / 24) if first else 1.0
    return frame, days


def group_traffic(
    cur: duckdb.DuckDBPyConnection, group: dict[str, Any], group_by: tuple[str, ...]
) -> tuple[list[dict], str | None, int]:
    """A group's requests in time order with what a what-if replay needs; its most common
    provider and the replicas it ran on."""
    where, params = _group_where(group, group_by)
    result = cur.execute(
        "SELECT ts, route, session_key, request_model, prefix_hash, segments, "
        "block_hashes, prompt_tokens, total_tokens, cached_tokens, ttft_ms "
        f"FROM requests r WHERE {where} ORDER BY ts, id",
        params,
    )
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    provider, replicas = cur.execute(
        f"SELECT mode(provider), count(DISTINCT replica) FROM requests r WHERE {where}", params
    ).fetchall()[0]
    return rows, provider, replicas or 1
