"""The DuckDB store: migrated on open, batched inserts, a group-committing writer.

Rows go in as one polars frame per transaction, never row by row; a re-sent
span (same id) is stored once. ``Writer`` gathers whatever arrived while the
previous commit ran (up to a row budget) into one transaction and only then
tells each submitter its rows are durable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from collector.store import changes, linking, migrations
from collector.store.lake import LakeConfig, LakeWriter, replace_alerts

log = logging.getLogger(__name__)

REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String,
    "trace_id": pl.String,
    "span_id": pl.String,
    "parent_span_id": pl.String,
    "signal": pl.String,
    "service": pl.String,
    "name": pl.String,
    "start_ns": pl.Int64,
    "duration_ms": pl.Float64,
    "provider": pl.String,
    "operation": pl.String,
    "request_model": pl.String,
    "response_model": pl.String,
    "conversation_id": pl.String,
    "session_key": pl.String,
    "route": pl.String,
    "replica": pl.String,
    "prompt_version": pl.String,
    "schema_version": pl.String,
    "prefix_hash": pl.String,
    "tools_hash": pl.String,
    "tools_count": pl.Int32,
    "encoding": pl.String,
    "block_size": pl.Int32,
    "block_hashes": pl.Binary,  # big-endian int64s (analysis.fingerprint.pack_hashes)
    "segments": pl.String,
    "total_tokens": pl.Int64,
    "prompt_tokens": pl.Int64,
    "cached_tokens": pl.Int64,
    "cache_write_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "ttft_ms": pl.Float64,
    "is_error": pl.Boolean,
    "error_type": pl.String,
    "provider_verdict": pl.String,
    "attributes": pl.String,
    "breakpoints": pl.String,  # JSON token positions of cache_control breakpoints
    "retention_s": pl.Int32,  # the cache lifetime the request asked for, seconds
}
_COLUMNS = [c for c in REQUEST_SCHEMA if c != "start_ns"]
CHECKPOINT_MIB = 256
# DuckDB's own default, 80 % of RAM, let its buffer pool grow with the data stored. 512 MiB
# failed commits ("failed to pin block") under a sustained 7,000 spans/s with the explainer
# sorting its backlog beside them; 2 GiB held.
MEMORY_LIMIT_MIB = 2048
# DuckDB's memory for an explain pass on its own (``cachediag explain``): its buffer pool
# keeps what it scanned up to the limit, and the pass reads a window of rows at a time;
# with the explainer's own state (about 700 MB at most) a day of a million requests
# explains in under 2 GB (benchmarks/bench_explain.py).
EXPLAIN_MEMORY_MIB = 768


class StoreLocked(RuntimeError):
    """Another process holds the database file."""


class Store:
    """One read-write DuckDB connection, plus cursors for readers in this process."""

    def __init__(
        self,
        path: str,
        read_only: bool = False,
        memory_mib: int = MEMORY_LIMIT_MIB,
        lake: LakeConfig | None = None,
    ) -> None:
        try:
            self.con = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"{path} is open in another process (a running cachediag "
                    "serve?); query that server instead"
                ) from None
            raise
        self.path = path
        self._lock = threading.Lock()
        if not read_only:
            # Fewer, larger checkpoints: block-hash lists make the WAL grow fast, and
            # checkpointing every 16 MiB (the default) halves the insert rate.
            self.con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_MIB}MiB'")
            self.con.execute(f"SET memory_limit = '{int(memory_mib)}MiB'")
            migrations.apply(self.con)
        self.recent = linking.Recent()
        self.changes = changes.Changes()  # what each write touched, for kept answers
        if not read_only:
            self.recent.load(self.con)
        # With a lake, each commit also goes there before this file's (collector.store.lake).
        self.lake = LakeWriter(lake) if lake is not None and not read_only else None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for reading from another thread."""
        return self.con.cursor()

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor for what the query API and alerts read: the lake's every collector's
        rows when there is one, else this file's."""
        return self.lake.cursor() if self.lake is not None else self.con.cursor()

    @staticmethod
    def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
        """Mapped rows as one frame of the requests schema (built column by column,
        twice as fast as from row dicts)."""
        columns = {name: [row.get(name) for row in rows] for name in REQUEST_SCHEMA}
        return pl.DataFrame(columns, schema=REQUEST_SCHEMA)

    def insert(
        self,
        frame: pl.DataFrame,
        contents: list[tuple[str, str]],
        parts: pl.DataFrame | None = None,
    ) -> int:
        """Insert a frame of calls (and captured contents, and ``parts`` that enrich calls)
        in one transaction, merging the records of one call into one row
        (``collector.store.linking``); returns how many call rows are new here."""
        if not len(frame) and (parts is None or not len(parts)):
            return 0
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                linked = linking.link(self.con, frame, parts, self.recent)
                linking.forget(self.con, linked)
                kept = linking.renderings(linked.frame, contents) + linked.rebuilt
                inserted = self._insert(linked.frame, kept, linked.moved)
                if self.lake is not None:
                    self.lake.ship(self.con, linked.frame["id"].to_list(), linked.stale)
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise
            frame, stale = linked.frame, linked.stale
            first = frame["start_ns"].min() if len(frame) else None
            if len(frame) or stale:  # a stale row's time is not known here: everything
                self.changes.touch(None if stale else changes.from_ns(first))
            return inserted - len(stale)

    def _insert(
        self, frame: pl.DataFrame, contents: list[tuple[str, str]], moved: dict[str, str]
    ) -> int:
        frame = frame.unique(subset="id", keep="first", maintain_order=True).with_columns(
            ts=pl.from_epoch("start_ns", time_unit="ns").cast(pl.Datetime("us"))
        )
        content = pl.DataFrame(
            [(moved.get(i, i), c) for i, c in contents] if moved else contents,
            schema={"id": pl.String, "content": pl.String},
            orient="row",
        ).unique(subset="id", keep="first")
        columns = ", ".join(["ts", *_COLUMNS])
        try:
            self.con.register("incoming", frame)
            (inserted,) = self.con.execute(
                f"INSERT INTO requests ({columns}) SELECT {columns} "
                "FROM incoming ON CONFLICT DO NOTHING"
            ).fetchall()[0]
            if len(content):
                self.con.register("incoming_content", content)
                self.con.execute(
                    "INSERT INTO request_content SELECT id, content "
                    "FROM incoming_content ON CONFLICT DO NOTHING"
                )
        finally:
            self.con.unregister("incoming")
            self.con.unregister("incoming_content")
        return inserted

    def save_explanations(self, frame: pl.DataFrame, since: datetime | None = None) -> None:
        """Write explanations (one per request id; a new one replaces the old); ``since``:
        the earliest time of their requests, when the caller knows it."""
        if not len(frame):
            return
        columns = ", ".join(frame.columns)
        with self._lock:
            if self.lake is not None:  # first: a row explained here is never explained again
                self.lake.save_explanations(frame)
            self.con.register("incoming_explanations", frame)
            try:
                self.con.execute(
                    f"INSERT OR REPLACE INTO explanations ({columns}) "
                    f"SELECT {columns} FROM incoming_explanations"
                )
            finally:
                self.con.unregister("incoming_explanations")
            self.changes.touch(since)

    def close(self) -> None:
        with self._lock:
            self.con.close()
            if self.lake is not None:
                self.lake.close()


@dataclass
class _Batch:
    frame: pl.DataFrame
    contents: list[tuple[str, str]]
    parts: pl.DataFrame | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Writer:
    """Group commit: everything that queued during one commit goes in the next;
    acknowledgements only after COMMIT.

    Each commit costs about as much as inserting a thousand rows, so while
    ``more_coming()`` says exports are still being decoded the writer lingers (up to
    ``linger_s``, or until ``max_rows``) to take them into the same transaction.
    """

    def __init__(
        self,
        store: Store,
        max_rows: int = 20_000,
        max_pending_rows: int = 200_000,
        linger_s: float = 0.05,
        more_coming: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_pending_rows = max_pending_rows
        self.linger_s = linger_s
        self.more_coming = more_coming
        self._queue: queue.Queue[_Batch | None] = queue.Queue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.committed_rows = 0
        self.transactions = 0
        self._thread = threading.Thread(target=self._run, name="cachediag-writer", daemon=True)
        self._thread.start()

    def try_submit(
        self,
        frame: pl.DataFrame,
        contents: list[tuple[str, str]],
        parts: pl.DataFrame | None = None,
    ) -> _Batch | None:
        """Queue rows for the next commit; None when the queue is full (back-pressure)."""
        with self._pending_lock:
            if self._pending and self._pending + len(frame) > self.max_pending_rows:
                return None
            self._pending += len(frame)
        batch = _Batch(frame, contents, parts)
        self._queue.put(batch)
        return batch

    @property
    def pending_rows(self) -> int:
        return self._pending

    def _gather(self, first: _Batch) -> tuple[list[_Batch], bool]:
        """``first``, whatever queued while the last commit ran, and what arrives while
        the linger lasts and more exports are on their way."""
        batches, rows = [first], len(first.frame)
        deadline = time.monotonic() + self.linger_s
        while rows < self.max_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self.more_coming():
                    break
                try:
                    item = self._queue.get(timeout=min(left, 0.005))
                except queue.Empty:
                    continue
            if item is None:
                return batches, True
            batches.append(item)
            rows += len(item.frame)
        return batches, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batches, stop = self._gather(first)
            frame = pl.concat([b.frame for b in batches], how="vertical")
            contents = [c for b in batches for c in b.contents]
            found = [b.parts for b in batches if b.parts is not None]
            parts = pl.concat(found, how="vertical") if found else None
            error = None
            try:
                self.committed_rows += self.store.insert(frame, contents, parts)
                self.transactions += 1
            except Exception as exc:  # reported to every submitter, never swallowed
                log.exception("commit of %d rows failed", len(frame))
                error = exc
            with self._pending_lock:
                self._pending -= len(frame)
            for batch in batches:
                batch.error = error
                batch.done.set()

    def close(self, timeout: float | None = None) -> bool:
        """Commit everything queued, then stop; True when done within ``timeout``."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


def save_alerts(store: Store, rows: list[dict]) -> None:
    """Replace the alerts table with a fresh evaluation."""
    frame = alert_frame(rows)
    with store._lock:
        if store.lake is not None:  # evaluated over the lake: stored there
            replace_alerts(store.lake.con, frame)
            return
        store.con.execute("BEGIN TRANSACTION")
        try:
            store.con.execute("DELETE FROM alerts")
            if len(frame):
                store.con.register("incoming_alerts", frame)
                store.con.execute("INSERT INTO alerts BY NAME SELECT * FROM incoming_alerts")
                store.con.unregister("incoming_alerts")
            store.con.execute("COMMIT")
        except Exception:
            store.con.execute("ROLLBACK")
            raise


def alert_frame(rows: list[dict]) -> pl.DataFrame:
    """Alert rows as the alerts table's frame."""
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "rule": pl.String,
            "group_key": pl.String,
            "state": pl.String,
            "started_at": pl.Datetime("us"),
            "resolved_at": pl.Datetime("us"),
            "value": pl.Float64,
            "baseline": pl.Float64,
            "attribution": pl.String,
            "top_causes": pl.String,
            "cost_per_hour": pl.Float64,
            "updated_at": pl.Datetime("us"),
            "cause": pl.String,
            "signals": pl.String,
            "sparkline": pl.String,
        },
    )
