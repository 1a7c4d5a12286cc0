"""SQL over the store schema: what the query API, the dashboard and the CLI read.

Each function takes a DuckDB cursor and validated arguments and returns a
polars frame. Group-by columns come from a fixed list, never from the caller's
text, so no caller string reaches SQL except as a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from analysis import fingerprint, providers

GROUPS = {
    "route": "route",
    "model": "request_model",
    "replica": "replica",
    "prompt_version": "prompt_version",
    "schema_version": "schema_version",
    "service": "service",
    "provider": "provider",
    "prefix_hash": "prefix_hash",
}
REQUEST_FIELDS = (
    "id",
    "ts",
    "service",
    "route",
    "replica",
    "provider",
    "request_model",
    "session_key",
    "conversation_id",
    "prompt_version",
    "schema_version",
    "prefix_hash",
    "tools_count",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "ttft_ms",
    "is_error",
)


_DURATION = re.compile(r"([0-9]{1,12})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 3660 * 86400  # ten years: the longest window or TTL a query takes
_INT64 = (-(2**63), 2**63 - 1)


def seconds(text: str) -> int:
    """A duration like 60, 5m, 1h or 1d in seconds, up to ten years; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    value = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"{text[:40]!r}: expected a duration like 60, 5m, 1h or 1d, at most 3660d")
    return value


def clamped_sum(expr: str) -> str:
    """SQL: sum of ``expr`` (cast to HUGEINT first) clamped into BIGINT, so rows holding
    extreme token counts (old databases stored -2^63) cannot overflow a series."""
    return f"greatest(least(sum(({expr})::HUGEINT), {_INT64[1]}), {_INT64[0]})::BIGINT"


def traffic(
    cur: duckdb.DuckDBPyConnection, newest: int | None = None, segments: bool = True
) -> Iterator[dict]:
    """Every request in time order (``newest``: only about the newest that many, from the
    time of the n-th newest on), with what a what-if replay needs (``segments``: the
    segment maps too, which only a warmup reads), streamed."""
    columns = (
        "ts, id, route, session_key, request_model, prefix_hash, "
        f"{'segments' if segments else 'NULL AS segments'}, "
        "block_hashes, prompt_tokens, total_tokens, cached_tokens, ttft_ms"
    )
    where, params = "TRUE", []
    if newest is not None:  # the cut found on the narrow time column alone, then a range
        cut = cur.execute(
            "SELECT ts FROM requests ORDER BY ts DESC LIMIT 1 OFFSET ?", [max(newest - 1, 0)]
        ).fetchall()
        if cut:
            where, params = "ts >= ?", [cut[0][0]]
    result = cur.execute(f"SELECT {columns} FROM requests WHERE {where} ORDER BY ts, id", params)
    names = [d[0] for d in result.description]
    return (
        dict(zip(names, row, strict=True))
        for rows in iter(lambda: result.fetchmany(2048), [])
        for row in rows
    )


@dataclass(frozen=True)
class Filters:
    """Row filters every list and series query accepts."""

    since: datetime | None = None
    until: datetime | None = None
    route: str | None = None
    model: str | None = None
    replica: str | None = None
    service: str | None = None

    def where(self, alias: str = "") -> tuple[str, list]:
        p = f"{alias}." if alias else ""
        clauses, params = ["TRUE"], []
        for column, op, value in (
            (f"{p}ts", ">=", self.since),
            (f"{p}ts", "<", self.until),
            (f"{p}route", "=", self.route),
            (f"{p}request_model", "=", self.model),
            (f"{p}replica", "=", self.replica),
            (f"{p}service", "=", self.service),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        return " AND ".join(clauses), params


def requests(
    cur: duckdb.DuckDBPyConnection, filters: Filters, limit: int = 100, offset: int = 0
) -> pl.DataFrame:
    """Requests, newest first, one page."""
    where, params = filters.where()
    sql = (
        f"SELECT {', '.join(REQUEST_FIELDS)} FROM requests WHERE {where} "
        "ORDER BY ts DESC, id LIMIT ? OFFSET ?"
    )
    return cur.sql(sql, params=[*params, limit, offset]).pl()


def request_detail(cur: duckdb.DuckDBPyConnection, request_id: str) -> dict | None:
    """One request with its captured content and explanation, or None."""
    found = cur.sql(
        "SELECT r.*, c.content, to_json(e) AS explanation FROM requests r "
        "LEFT JOIN request_content c USING (id) LEFT JOIN explanations e USING (id) "
        "WHERE r.id = ?",
        params=[request_id],
    ).pl()
    if not len(found):
        return None
    row = found.to_dicts()[0]
    row["block_hashes"] = fingerprint.unpack_hashes(row["block_hashes"])  # stored packed
    return row


def timeseries(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    window_s: int,
    group: str | None = None,
    table: dict | None = None,
) -> pl.DataFrame:
    """Per window (and group): requests, token-weighted hit ratio, TTFT percentiles, misses."""
    key = GROUPS[group] if group else "NULL"
    where, params = filters.where()
    bucket = "time_bucket(to_seconds(?::BIGINT), ts)"
    series = cur.sql(
        f"""
        SELECT {bucket} AS window, {key}::VARCHAR AS "group", count(*) AS requests,
               {clamped_sum("coalesce(prompt_tokens, 0)")} AS prompt_tokens,
               {clamped_sum("coalesce(cached_tokens, 0)")} AS cached_tokens,
               quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS ttft
        FROM requests WHERE {where} GROUP BY ALL""",
        params=[window_s, *params],
    ).pl()
    misses = cur.sql(
        f"""
        SELECT {bucket} AS window, {key}::VARCHAR AS "group", request_model AS model,
               {clamped_sum("coalesce(prompt_tokens, 0)::HUGEINT - coalesce(cached_tokens, 0)")}
                   AS missed
        FROM requests WHERE {where} GROUP BY ALL""",
        params=[window_s, *params],
    ).pl()
    return _finish_series(series, misses, table or providers.load_table())


def _finish_series(series: pl.DataFrame, misses: pl.DataFrame, table: dict) -> pl.DataFrame:
    """Price the missed tokens per model and join them to their window and group."""
    per_token = pl.col("model").replace_strict(
        {m: providers.missed_cost_usd(table, m) for m in misses["model"].unique().to_list()},
        default=None,
        return_dtype=pl.Float64,
    )
    cost = misses.group_by("window", "group").agg(
        pl.col("missed").sum().alias("missed_tokens"),
        (pl.col("missed") * per_token).sum().alias("missed_cost_usd"),
    )
    hit = pl.when(pl.col("prompt_tokens") > 0).then(
        pl.col("cached_tokens") / pl.col("prompt_tokens")
    )
    return (
        series.join(cost, on=["window", "group"], how="left", nulls_equal=True)
        .select(
            "window",
            "group",
            "requests",
            "prompt_tokens",
            "cached_tokens",
            hit.alias("hit_ratio"),
            "missed_tokens",
            "missed_cost_usd",
            pl.col("ttft").list.get(0, null_on_oob=True).alias("ttft_p50_ms"),
            pl.col("ttft").list.get(1, null_on_oob=True).alias("ttft_p95_ms"),
            pl.col("ttft").list.get(2, null_on_oob=True).alias("ttft_p99_ms"),
        )
        .sort("window", "group", nulls_last=True)
    )


def prefixes(cur: duckdb.DuckDBPyConnection, filters: Filters, window_s: int) -> pl.DataFrame:
    """Per window and route: distinct prefixes, prefixes never seen before, tools, schemas."""
    where, params = filters.where("r")
    return cur.sql(
        f"""
        WITH firsts AS (SELECT prefix_hash, route, min(ts) AS first_seen FROM requests
                        WHERE prefix_hash IS NOT NULL GROUP BY ALL)
        SELECT time_bucket(to_seconds(?::BIGINT), r.ts) AS window, r.route,
               count(DISTINCT r.prefix_hash) AS distinct_prefixes,
               count(DISTINCT r.prefix_hash) FILTER (
                   f.first_seen >= time_bucket(to_seconds(?::BIGINT), r.ts)) AS new_prefixes,
               max(r.tools_count) AS tools_count,
               string_agg(DISTINCT r.schema_version, ', ' ORDER BY r.schema_version)
                   AS schema_versions,
               string_agg(DISTINCT r.prompt_version, ', ' ORDER BY r.prompt_version)
                   AS prompt_versions
        FROM requests r LEFT JOIN firsts f USING (prefix_hash, route)
        WHERE {where} GROUP BY ALL ORDER BY 1, 2""",
        params=[window_s, window_s, *params],
    ).pl()


def routing(cur: duckdb.DuckDBPyConnection, filters: Filters) -> pl.DataFrame:
    """Per route: replicas, session stickiness, requests without a session key, hit ratio."""
    where, params = filters.where()
    aliased, _ = filters.where("r")
    return cur.sql(
        f"""
        WITH sessions AS (SELECT route, session_key, count(DISTINCT replica) AS replicas
                          FROM requests WHERE session_key IS NOT NULL AND {where} GROUP BY ALL)
        SELECT r.route, count(DISTINCT r.replica) AS replicas,
               (SELECT count(*) FROM sessions s WHERE s.route = r.route) AS sessions,
               (SELECT count(*) FROM sessions s WHERE s.route = r.route AND s.replicas > 1)
                   AS sessions_on_several_replicas,
               count(*) FILTER (r.session_key IS NULL) AS requests_without_key,
               sum(coalesce(r.cached_tokens, 0)::DOUBLE)
                   / nullif(sum(coalesce(r.prompt_tokens, 0)::DOUBLE), 0) AS hit_ratio
        FROM requests r WHERE {aliased} GROUP BY r.route ORDER BY 1""",
        params=[*params, *params],
    ).pl()


def last_request_ts(cur: duckdb.DuckDBPyConnection) -> datetime | None:
    """The time of the newest stored request."""
    return cur.execute("SELECT max(ts) FROM requests").fetchall()[0][0]
