"""The store's side of one row per call (the rules are ``collector.calls``): within a
commit's transaction, find the stored rows and waiting parts that an incoming batch shares
a trace with, merge them, and say what to delete and what to insert.

Most batches share no trace with anything stored and hold no parts: an in-memory index of
the newest LINK_ROWS rows' trace ids (``Recent``) says so without a query, and the batch
is inserted as it is. Otherwise the rows of the shared traces among those newest rows are
read back, merged, and every stored row the merge changed is deleted and inserted anew
(with its explanation dropped): a new row id is how the explain loop sees a row it must
explain again (and rewind for, if older than what it explained). Parts that find no call
wait in ``call_parts`` for PARTS_TTL_S (by arrival). Records of one call arriving more than
LINK_ROWS rows apart are not merged.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any, NamedTuple

import duckdb
import polars as pl

from analysis.segmaps import captured_prompt
from collector import calls

# How far back a commit looks for other records of its traces: the newest LINK_ROWS stored
# rows (records of one call are exported seconds apart; at 10,000 calls/s this is 20 s).
LINK_ROWS = 200_000
PARTS_TTL_S = 3600  # how long a part waits for its call
PRUNE_EVERY_S = 60.0


class Recent:
    """The trace ids of the newest LINK_ROWS stored rows and waiting parts, in memory: most
    batches share no trace with them, and this says so without a query. It may name a
    trace no longer stored (a query then finds nothing), never miss one of its window."""

    def __init__(self, limit: int = LINK_ROWS) -> None:
        self.limit = limit
        self._order: deque[str] = deque()
        self._count: dict[str, int] = {}
        self._pruned = 0.0

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Fill from the store (on open), oldest first."""
        found = con.execute(
            "SELECT trace_id FROM (SELECT trace_id, rowid FROM requests "
            "WHERE trace_id IS NOT NULL ORDER BY rowid DESC LIMIT ?) ORDER BY rowid",
            [self.limit],
        ).fetchall()
        waiting = con.execute("SELECT trace_id FROM call_parts").fetchall()
        self.add([t for (t,) in found] + [t for (t,) in waiting if t])

    def add(self, traces: list[str]) -> None:
        count, order = self._count, self._order
        for trace in traces:
            count[trace] = count.get(trace, 0) + 1
            order.append(trace)
        while len(order) > self.limit:
            old = order.popleft()
            if count[old] == 1:
                del count[old]
            else:
                count[old] -= 1

    def __contains__(self, trace: str) -> bool:
        return trace in self._count

    def prune(self, con: duckdb.DuckDBPyConnection) -> None:
        """Drop the parts that waited PARTS_TTL_S in vain (at most once a PRUNE_EVERY_S)."""
        now = time.monotonic()
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            con.execute(f"DELETE FROM call_parts WHERE arrived < now() - to_seconds({PARTS_TTL_S})")


def _linked(frame: pl.DataFrame, parts: pl.DataFrame | None, recent: Recent) -> list[str]:
    """Trace ids of an incoming batch that may hold more than one record of a call: met
    twice in it, stored or waiting already, or with a part."""
    calls = [t for t in frame["trace_id"].to_list() if t]
    waiting = [t for t in parts["trace_id"].to_list() if t] if parts is not None else []
    linked, seen = set(waiting), set()
    for trace in calls:
        if trace in seen or trace in recent:
            linked.add(trace)
        seen.add(trace)
    recent.add(calls + waiting)
    return sorted(linked)


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


class Linked(NamedTuple):
    """What a batch becomes once linked: the rows to insert, the ids of stored rows to
    delete first (``forget``), which ids became which (a nested span's into its parent's),
    the renderings rebuilt from merged message events (id, content), and the ids whose
    stored rendering no longer matches the row's fingerprint (another record's won)."""

    frame: pl.DataFrame
    stale: list[str]
    moved: dict[str, str]
    rebuilt: list[tuple[str, str]]
    outdated: list[str]


def link(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    parts: pl.DataFrame | None,
    recent: Recent,
) -> Linked:
    """Link an incoming batch (calls ``frame``, ``parts``) with the stored rows and waiting
    parts of its traces; waiting parts are updated here (inside the caller's transaction)."""
    columns = frame.columns
    recent.prune(con)
    traces = _linked(frame, parts, recent)
    if not traces:
        return Linked(frame, [], {}, [], [])
    incoming = pl.concat(
        [
            frame.with_columns(part=pl.lit(False)),
            *([parts.with_columns(part=pl.lit(True))] if parts is not None else []),
        ]
    )
    linked = pl.DataFrame({"trace_id": traces}, schema={"trace_id": pl.String})
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
    out, stale, moved, rebuilt, outdated = [], [], {}, [], []
    for row, absorbed in merged:
        moved.update((i, row["id"]) for i in absorbed if i != row["id"])
        content = row.pop(calls.CONTENT, None)
        if content is not None:
            rebuilt.append((row["id"], content))
        old = before.get(row["id"])
        if old is not None and old["prefix_hash"] != row["prefix_hash"]:
            outdated.append(row["id"])  # a log's rendering, then the span's fingerprint
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
    frame = pl.concat([rest, pl.DataFrame(out, schema=frame.schema)])
    return Linked(frame, stale, moved, rebuilt, outdated)


def renderings(frame: pl.DataFrame, contents: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One captured rendering per id: where the records of one call brought several in one
    commit (a span's and its log record's), the one that agrees with the segment map of the
    row to insert (``frame``): the record the row's fingerprint came from."""
    by_id: dict[str, list[str]] = {}
    for key, content in contents:
        by_id.setdefault(key, []).append(content)
    several = [key for key, found in by_id.items() if len(found) > 1]
    if not several:
        return contents
    rows = {
        row["id"]: row
        for row in frame.filter(pl.col("id").is_in(several))
        .select("id", "segments", "request_model")
        .to_dicts()
    }
    kept = []
    for key, found in by_id.items():
        row = rows.get(key)
        agree = [
            c
            for c in found
            if row is not None
            and captured_prompt(c, row["segments"], row["request_model"]) is not None
        ]
        kept.append((key, (agree or found)[0]))
    return kept


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


def forget(con: duckdb.DuckDBPyConnection, linked: Linked) -> None:
    """Delete the stored rows a merge replaces, with their explanations, and the renderings
    that no longer match their row (the incoming records' are stored instead); the captured
    content of a record merged into another call row goes with it."""
    stale, moved = linked.stale, linked.moved
    outdated = linked.outdated + [i for i, _ in linked.rebuilt]
    if outdated:
        ids = pl.DataFrame({"id": outdated}, schema={"id": pl.String})
        con.register("outdated_ids", ids)
        try:
            con.execute("DELETE FROM request_content WHERE id IN (SELECT id FROM outdated_ids)")
        finally:
            con.unregister("outdated_ids")
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
