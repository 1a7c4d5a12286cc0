"""The store's side of one row per call (the rules are ``collector.calls``): within a
commit's transaction, find the stored rows and waiting parts that an incoming batch shares
a trace with, merge them, and say what to delete and what to insert.

Most batches share no trace with anything stored and hold no parts: one query over the
recent rows' trace ids finds that, and the batch is inserted as it is. Otherwise the rows
of the shared traces are read back, merged, and every stored row the merge changed is
deleted and inserted anew (with its explanation dropped): a new row id is how the explain
loop sees a row it must explain again (and rewind for, if older than what it explained).
Parts that find no call wait in ``call_parts`` for PARTS_TTL_S (by arrival).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl

from collector import calls

# A call's records are stamped within the call; a commit looks for its traces' other records
# this far around its own times (the time index's zone maps make older rows cheap to skip).
LINK_WINDOW_S = 3600
PARTS_TTL_S = 3600  # how long a part waits for its call


def _window(frame: pl.DataFrame) -> tuple[int, int]:
    lo, hi = frame["start_ns"].min(), frame["start_ns"].max()
    return (lo or 0) // 1000 - LINK_WINDOW_S * 10**6, (hi or 0) // 1000 + LINK_WINDOW_S * 10**6


def _shared(con: duckdb.DuckDBPyConnection, incoming: pl.DataFrame) -> pl.DataFrame:
    """Trace ids of the incoming rows that appear more than once among incoming rows,
    stored rows (near in time) and waiting parts, or that have a part."""
    traces = incoming.select("trace_id", "part").filter(pl.col("trace_id").is_not_null())
    con.register("incoming_traces", traces.select(pl.col("trace_id").unique()))
    try:
        lo, hi = _window(incoming)
        stored = con.execute(
            "SELECT trace_id FROM requests WHERE ts BETWEEN make_timestamp(?) AND "
            "make_timestamp(?) AND trace_id IN (SELECT trace_id FROM incoming_traces) "
            "UNION ALL SELECT trace_id FROM call_parts "
            "WHERE trace_id IN (SELECT trace_id FROM incoming_traces)",
            [lo, hi],
        ).fetchall()
    finally:
        con.unregister("incoming_traces")
    everything = pl.concat(
        [
            traces.select("trace_id"),
            pl.DataFrame({"trace_id": [t for (t,) in stored]}, schema={"trace_id": pl.String}),
        ]
    )
    many = everything.group_by("trace_id").len().filter(pl.col("len") > 1).select("trace_id")
    with_parts = traces.filter(pl.col("part")).select("trace_id")
    return pl.concat([many, with_parts]).unique()


def _stored(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> list[dict]:
    select = ", ".join("epoch_us(ts) * 1000 AS start_ns" if c == "start_ns" else c for c in columns)
    result = con.execute(
        f"SELECT {select} FROM {table} WHERE trace_id IN (SELECT trace_id FROM linked_traces)"
    )
    names = [d[0] for d in result.description]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        all(a[k] == b[k] for k in a if k not in ("start_ns", "attributes"))
        and a["start_ns"] // 1000 == b["start_ns"] // 1000
        and _attrs(a) == _attrs(b)
    )


def _attrs(row: dict[str, Any]) -> Any:
    try:
        return json.loads(row["attributes"]) if row["attributes"] else None
    except ValueError:
        return row["attributes"]


def link(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, parts: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[str], dict[str, str]]:
    """The rows to insert for an incoming batch (calls ``frame``, ``parts``), and the ids of
    stored rows to delete first (``forget``), and which ids became which (a nested span's
    into its parent's); waiting parts are updated here (inside the caller's transaction)."""
    columns = frame.columns
    incoming = pl.concat(
        [
            frame.with_columns(part=pl.lit(False)),
            *([parts.with_columns(part=pl.lit(True))] if parts is not None else []),
        ]
    )
    con.execute(f"DELETE FROM call_parts WHERE arrived < now() - to_seconds({PARTS_TTL_S})")
    linked = _shared(con, incoming)
    if not len(linked):
        return frame, [], {}
    con.register("linked_traces", linked)
    try:
        stored = _stored(con, "requests", columns)
        waiting = _stored(con, "call_parts", columns)
        con.execute("DELETE FROM call_parts WHERE trace_id IN (SELECT trace_id FROM linked_traces)")
    finally:
        con.unregister("linked_traces")
    mine = incoming.filter(pl.col("trace_id").is_in(linked["trace_id"].implode()))
    rows = stored + waiting + mine.drop("part").to_dicts()
    part = [False] * len(stored) + [True] * len(waiting) + mine["part"].to_list()
    merged, unmatched = calls.resolve(rows, part)
    before = {row["id"]: row for row in stored}
    out, stale, moved = [], [], {}
    for row, absorbed in merged:
        moved.update((i, row["id"]) for i in absorbed if i != row["id"])
        old = before.get(row["id"])
        if (
            old is not None
            and _same(old, row)
            and all(i == row["id"] or i not in before for i in absorbed)
        ):
            continue  # nothing new for this call
        out.append(row)
        stale.extend(i for i in absorbed if i in before)
    if unmatched:
        _wait(con, pl.DataFrame([rows[i] for i in unmatched], schema=frame.schema))
    rest = frame.filter(
        ~pl.col("trace_id").is_in(linked["trace_id"].implode()) | pl.col("trace_id").is_null()
    )
    return pl.concat([rest, pl.DataFrame(out, schema=frame.schema)]), stale, moved


def _wait(con: duckdb.DuckDBPyConnection, parts: pl.DataFrame) -> None:
    parts = parts.with_columns(
        ts=pl.from_epoch("start_ns", time_unit="ns").cast(pl.Datetime("us"))
    ).drop("start_ns")
    con.register("incoming_parts", parts)
    try:
        names = ", ".join(parts.columns)
        con.execute(f"INSERT INTO call_parts ({names}) SELECT {names} FROM incoming_parts")
    finally:
        con.unregister("incoming_parts")


def forget(con: duckdb.DuckDBPyConnection, stale: list[str], moved: dict[str, str]) -> None:
    """Delete the stored rows a merge replaces, with their explanations; the captured
    content of a record merged into another call row goes with it."""
    if stale:
        con.register("stale_ids", pl.DataFrame({"id": stale}, schema={"id": pl.String}))
        try:
            con.execute("DELETE FROM explanations WHERE id IN (SELECT id FROM stale_ids)")
            con.execute("DELETE FROM requests WHERE id IN (SELECT id FROM stale_ids)")
        finally:
            con.unregister("stale_ids")
    if moved:
        pairs = pl.DataFrame(
            list(moved.items()), schema={"old": pl.String, "new": pl.String}, orient="row"
        )
        con.register("moved_ids", pairs)
        try:
            con.execute(
                "INSERT INTO request_content SELECT m.new, c.content FROM request_content c "
                "JOIN moved_ids m ON c.id = m.old ON CONFLICT DO NOTHING"
            )
            con.execute("DELETE FROM request_content WHERE id IN (SELECT old FROM moved_ids)")
        finally:
            con.unregister("moved_ids")
