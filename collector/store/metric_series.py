"""GenAI client metrics as series: the ``metric_points`` table (migration 008).

Rows come from ``collector.otlp_metrics`` (one per histogram data point, as exported).
A cumulative point holds the count and sum since its start time, so a window's share is
its difference from the series' previous point with the same start (a new start time is
a restarted process: its first point counts whole); a delta point counts as it is. A
re-sent export (same series, same point time) is stored once.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from collector.store.queries import Filters

POINT_SCHEMA: dict[str, Any] = {
    "series": pl.String,
    "name": pl.String,
    "unit": pl.String,
    "service": pl.String,
    "route": pl.String,
    "replica": pl.String,
    "provider": pl.String,
    "operation": pl.String,
    "request_model": pl.String,
    "response_model": pl.String,
    "token_type": pl.String,
    "server_address": pl.String,
    "error_type": pl.String,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "cumulative": pl.Boolean,
    "count": pl.Int64,
    "sum": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
    "bounds": pl.List(pl.Float64),
    "bucket_counts": pl.List(pl.Int64),
    "attributes": pl.String,
}
_INT64_MAX = 2**63 - 1


def _clamp(value: Any) -> Any:
    """uint64 counts and times of a hostile export, kept inside BIGINT."""
    if isinstance(value, int) and not isinstance(value, bool):
        return min(value, _INT64_MAX)
    if isinstance(value, list):
        return [_clamp(v) for v in value]
    return value


def insert(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Store points (from ``otlp_metrics.count``) in one transaction on ``con`` (a cursor
    of its own: it does not wait for the request writer); returns how many are new."""
    if not rows:
        return 0
    columns = {name: [_clamp(row.get(name)) for row in rows] for name in POINT_SCHEMA}
    frame = pl.DataFrame(columns, schema=POINT_SCHEMA).with_columns(
        ts=pl.from_epoch("end_ns", time_unit="ns").cast(pl.Datetime("us"))
    )
    names = ", ".join(["ts", *POINT_SCHEMA])
    con.register("incoming_points", frame)
    try:
        (inserted,) = con.execute(
            f"INSERT INTO metric_points ({names}) SELECT {names} FROM incoming_points "
            "ON CONFLICT DO NOTHING"
        ).fetchone()
    finally:
        con.unregister("incoming_points")
    return int(inserted)


def series(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    window_s: int,
    name: str | None = None,
    token_type: str | None = None,
) -> pl.DataFrame:
    """Per window, metric, service, route, model and token type: the points recorded in
    the window (``count``), their ``sum`` (tokens, or seconds) and ``mean``. ``model``
    filters on the request model; windows are of the points' times."""
    where, params = filters.where("p")
    inner, inner_params = "TRUE", []
    for column, value in (("name", name), ("token_type", token_type)):
        if value is not None:
            inner += f" AND {column} = ?"
            inner_params.append(value)
    sql = f"""
        WITH p AS (
            SELECT *,
                   count - CASE WHEN cumulative THEN coalesce(lag(count) OVER w, 0)
                           ELSE 0 END AS new_count,
                   sum - CASE WHEN cumulative THEN coalesce(lag(sum) OVER w, 0)
                         ELSE 0 END AS new_sum
            FROM metric_points WHERE {inner}
            WINDOW w AS (PARTITION BY series, start_ns ORDER BY end_ns)
        )
        SELECT time_bucket(to_seconds(?::BIGINT), p.ts) AS window, p.name, any_value(p.unit)
               AS unit, p.service, p.route, coalesce(p.request_model, p.response_model)
               AS model, p.token_type, sum(p.new_count)::BIGINT AS count,
               sum(p.new_sum) AS sum, sum(p.new_sum) / nullif(sum(p.new_count), 0) AS mean
        FROM p WHERE {where}
        GROUP BY ALL HAVING sum(p.new_count) > 0
        ORDER BY 1, 2, 4, 5, 6, 7
    """
    return cur.sql(sql, params=[*inner_params, window_s, *params]).pl()
