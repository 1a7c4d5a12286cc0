"""Explaining stored requests: read them in time order, write one explanation each.

The same pass serves `cachediag explain --db FILE` (everything, offline) and
the server (new rows as they commit, on a background thread, with the
explainer's state kept between passes). Rows are read on their own cursor
in chunks and explanations written as frames, never row by row.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from analysis.explain import Explainer
from collector.store import Store

log = logging.getLogger(__name__)

CHUNK = 10_000
BACKGROUND_CHUNK = 2_000
ACTIVE_S = 0.25  # a commit this recent means ingest is busy
DUTY = 0.1  # share of the time the background explainer takes while ingest is busy
_COLUMNS = (
    "id",
    "ts",
    "session_key",
    "conversation_id",
    "request_model",
    "provider",
    "route",
    "replica",
    "block_hashes",
    "block_size",
    "total_tokens",
    "prompt_tokens",
    "cached_tokens",
    "segments",
    "encoding",
    "provider_verdict",
)
SCHEMA = {
    "id": pl.String,
    "cause": pl.String,
    "segment": pl.String,
    "path": pl.String,
    "first_diff_token": pl.Int64,
    "first_diff_block": pl.Int32,
    "expected_cached": pl.Int64,
    "reported_cached": pl.Int64,
    "missed_tokens": pl.Int64,
    "missed_cost_usd": pl.Float64,
    "predecessor_id": pl.String,
    "provider_verdict": pl.String,
    "detail": pl.String,
}


def explain_new(
    store: Store,
    explainer: Explainer,
    after_rowid: int = -1,
    progress: Callable[[int], None] = lambda n: None,
    chunk_rows: int = CHUNK,
    pause_gc: bool = True,
) -> tuple[int, Counter]:
    """Explain requests stored after ``after_rowid``; returns the last rowid and the causes.
    ``pause_gc`` turns the cyclic garbage collector off for the pass (see below)."""
    # The time as epoch seconds: cheaper to fetch than a datetime, and what the explainer
    # computes with.
    columns = ", ".join("epoch(r.ts) AS ts" if c == "ts" else f"r.{c}" for c in _COLUMNS)
    cur = store.cursor()
    result = cur.execute(
        f"SELECT r.rowid, {columns}, c.content FROM requests r "
        "LEFT JOIN request_content c USING (id) WHERE r.rowid > ? ORDER BY r.ts, r.id",
        [after_rowid],
    )
    names = ["rowid", *_COLUMNS, "content"]
    last, counts = after_rowid, Counter()
    # Each chunk's explanations are written on a second thread while the next chunk is
    # explained: DuckDB lets go of the GIL while it inserts.
    with (
        _collector_paused() if pause_gc else contextlib.nullcontext(),
        ThreadPoolExecutor(1, thread_name_prefix="cachediag-save") as writer,
    ):
        saved = None
        while chunk := result.fetchmany(chunk_rows):
            out = []
            for values in chunk:
                row = dict(zip(names, values, strict=True))
                last = max(last, row["rowid"])
                explanation = explainer.explain(row)
                counts[explanation.cause] += 1
                out.append(explanation)
            frame = pl.DataFrame(out, schema=SCHEMA, orient="row")
            if saved is not None:
                saved.result()
            saved = writer.submit(store.save_explanations, frame)
            progress(len(chunk))
        if saved is not None:
            saved.result()
    cur.close()
    return last, counts


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one pass. The explainer's state makes no
    cycles, but each collection rescans what it has kept: a quarter to a third of the
    explain time. Cycles made meanwhile wait for the collection after the pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Background:
    """Explains new rows as they commit, on its own thread, without holding up ingest.

    It shares the GIL with ingest, so while commits keep coming it paces itself
    to a DUTY share of the time and catches up when ingest goes quiet (or when
    someone waits on ``flush``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.explainer = Explainer()
        self.last_rowid = -1
        self.explained = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._hurry = threading.Event()  # flush or close: stop pacing
        self._last_commit = 0.0
        self._chunk_start = 0.0
        self._thread = threading.Thread(target=self._run, name="cachediag-explain", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """New rows were committed."""
        self._last_commit = time.monotonic()
        self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every committed row is explained."""
        self._hurry.set()
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout)

    def _pace(self, _rows: int) -> None:
        """After each chunk: while ingest is busy, rest (1 - DUTY) / DUTY times as long as
        the chunk took."""
        now = time.monotonic()
        if not self._hurry.is_set() and now - self._last_commit < ACTIVE_S:
            self._hurry.wait((now - self._chunk_start) * (1 - DUTY) / DUTY)
        self._chunk_start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self._chunk_start = time.monotonic()
            try:
                # The collector stays on: a paced pass lasts as long as ingest keeps coming.
                self.last_rowid, counts = explain_new(
                    self.store,
                    self.explainer,
                    self.last_rowid,
                    self._pace,
                    BACKGROUND_CHUNK,
                    pause_gc=False,
                )
                self.explained += sum(counts.values())
            except Exception:  # logged; the next commit tries again
                log.exception("explaining new requests failed")
            if not self._wake.is_set():
                self._hurry.clear()
                self._idle.set()

    def close(self) -> None:
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=30)
