"""Explaining stored requests: read them in time order, write one explanation each.

The same pass serves `cachediag explain --db FILE` (everything, offline) and
the server (new rows as they commit, on the thread of ``collector.explain_loop``, with the
explainer's state kept between passes). Rows are read on their own cursor
in chunks and explanations written as frames, never row by row.

The explanations table is where a server resumes: when it starts (or after a
failed pass) it explains only the requests that have none yet, after priming
the explainer with the explained requests it would still remember, so a stop
or a restart never re-explains anything and the next request still finds its
predecessor. Priming reads the explained requests of the explainer's own
forgetting horizon (``Explainer.window_s``, the longest provider TTL) before
the newest one, at most ``MAX_REQUESTS`` of them: bounded in time and memory
whatever the database holds.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from analysis.explain import MAX_REQUESTS, Explainer
from collector.store import explaining as reads
from collector.store.changes import from_ns
from collector.store.database import Store

log = logging.getLogger(__name__)

CHUNK = 10_000
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


@dataclass(frozen=True)
class _Pass:
    """How a pass runs: ``progress`` after each chunk, whether the garbage collector is
    paused, and ``stop``, checked before every row; ``cursor`` is read on (another thread
    may interrupt it), or the pass opens one of its own."""

    progress: Callable[[int], None]
    chunk_rows: int
    pause_gc: bool
    stop: threading.Event
    cursor: duckdb.DuckDBPyConnection | None

    @contextlib.contextmanager
    def reading(self, store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor or store.cursor()
        try:
            yield cur
        finally:
            if self.cursor is None:
                cur.close()


def explain_new(
    store: Store,
    explainer: Explainer,
    after_rowid: int = -1,
    progress: Callable[[int], None] = lambda n: None,
    chunk_rows: int = CHUNK,
    pause_gc: bool = True,
    *,
    stop: threading.Event | None = None,
    cursor: duckdb.DuckDBPyConnection | None = None,
    upto: int | None = None,
) -> tuple[int, Counter]:
    """Explain requests stored after ``after_rowid`` (up to rowid ``upto``, when given);
    returns the last rowid read (``upto``, when given) and the causes. ``pause_gc`` turns
    the cyclic garbage collector off for the pass (see below). Once ``stop`` is set the
    pass ends after the row at hand, keeping what it explained (the rowid it returns is
    then no place to go on from: ``resume`` is)."""
    how = _Pass(progress, chunk_rows, pause_gc, stop or threading.Event(), cursor)
    with how.reading(store) as cur:
        rows = reads.after(cur, after_rowid, chunk_rows, upto)
        last, counts = _explain(store, explainer, rows, how)
    return max(after_rowid, last, -1 if upto is None else upto), counts


def resume(
    store: Store,
    explainer: Explainer,
    progress: Callable[[int], None] = lambda n: None,
    chunk_rows: int = CHUNK,
    pause_gc: bool = True,
    *,
    stop: threading.Event | None = None,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> tuple[int, Counter]:
    """Explain only the stored requests without an explanation, ``explainer`` primed
    first; returns the rowid to go on from with ``explain_new``, and the causes. When one
    of them is older than an explained request (stored after it), everything from it on
    is explained again (``rewind``), as if the requests had come in time order."""
    how = _Pass(progress, chunk_rows, pause_gc, stop or threading.Event(), cursor)
    with how.reading(store) as cur:
        # Read before the pass's query: a row committed in between is in the pass.
        high = reads.last_rowid(cur)
        late, newest = reads.earliest_unexplained(cur), reads.newest_explained(cur)
        if late is not None and newest is not None and late < newest:
            return _rewind(store, explainer, late, high, how, cur)
        primed = prime(store, explainer, stop=how.stop, cursor=cur)
        last, counts = _explain(store, explainer, reads.unexplained(cur, chunk_rows), how)
    log.info("explainer primed with %d stored requests; %d explained", primed, counts.total())
    return max(high, last), counts


def rewind(
    store: Store,
    explainer: Explainer,
    key: tuple[float, str],
    progress: Callable[[int], None] = lambda n: None,
    chunk_rows: int = CHUNK,
    pause_gc: bool = True,
    *,
    stop: threading.Event | None = None,
    cursor: duckdb.DuckDBPyConnection | None = None,
    upto: int | None = None,
) -> tuple[int, Counter]:
    """Explain again every stored request from ``key`` (its time as ``epoch(ts)``, its
    id) on (up to rowid ``upto``, when given), ``explainer`` (a fresh one) primed with the
    requests of the window before it; returns the rowid to go on from with
    ``explain_new``, and the causes. For a request stored after requests it precedes:
    each of them is explained again knowing it."""
    how = _Pass(progress, chunk_rows, pause_gc, stop or threading.Event(), cursor)
    with how.reading(store) as cur:
        high = reads.last_rowid(cur) if upto is None else upto
        return _rewind(store, explainer, key, high, how, cur)


def _rewind(
    store: Store,
    explainer: Explainer,
    key: tuple[float, str],
    high: int,
    how: _Pass,
    cur: duckdb.DuckDBPyConnection,
) -> tuple[int, Counter]:
    how.progress(-reads.unexplain_from(store, key))  # dropped, to be written again
    primed = 0
    for chunk in reads.before(cur, key, high, explainer.window_s, MAX_REQUESTS, CHUNK):
        for row in chunk:
            if how.stop.is_set():
                return high, Counter()
            explainer.remember(row)
            primed += 1
    _, counts = _explain(store, explainer, reads.since(cur, key, high, how.chunk_rows), how)
    log.info("explained again from %s on: %d (%d primed)", key[1], counts.total(), primed)
    return high, counts


def waiting(store: Store) -> int:
    """How many stored requests have no explanation yet (what ``resume`` explains)."""
    return reads.waiting(store.con)


def prime(
    store: Store,
    explainer: Explainer,
    *,
    stop: threading.Event | None = None,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> int:
    """Give ``explainer`` the explained requests it would still remember, without
    explaining them again; returns how many."""
    how = _Pass(lambda n: None, CHUNK, False, stop or threading.Event(), cursor)
    primed = 0
    with how.reading(store) as cur:
        for chunk in reads.remembered(cur, explainer.window_s, MAX_REQUESTS, CHUNK):
            for row in chunk:
                if how.stop.is_set():
                    return primed
                explainer.remember(row)
                primed += 1
    return primed


def _explain(
    store: Store, explainer: Explainer, chunks: Iterator[Iterator[dict]], how: _Pass
) -> tuple[int, Counter]:
    """One pass over the rows of ``chunks`` (in time order); returns the largest rowid
    read (or -1) and the causes."""
    last, counts = -1, Counter()
    saver = _Saver(store)
    try:
        with _collector_paused() if how.pause_gc else contextlib.nullcontext():
            for chunk in chunks:
                out, first = [], None
                for row in chunk:
                    if how.stop.is_set():
                        break
                    last = max(last, row["rowid"])
                    first = row["ts"] if first is None else min(first, row["ts"])
                    out.append(explainer.explain(row))
                counts.update(e.cause for e in out)
                saver.save(pl.DataFrame(out, schema=SCHEMA, orient="row"), first)
                if how.pause_gc:  # the chunk's cycles (not the explainer's state: see below)
                    gc.collect(1)
                how.progress(len(out))
                if how.stop.is_set():
                    break
    finally:
        saver.wait()
    return last, counts


class _Saver:
    """Writes a chunk's explanations on a thread of its own while the next chunk is
    explained (DuckDB lets go of the GIL while it inserts); one write at a time, each
    waited for before the next and at the end of the pass."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, frame: pl.DataFrame, first: float | None = None) -> None:
        """Write ``frame`` (``first``: its earliest request's epoch(ts), if known)."""
        self.wait()
        since = None if first is None else from_ns(int((first - 1) * 1e9))  # a second early
        self._thread = threading.Thread(
            target=self._write, args=(frame, since), name="cachediag-save", daemon=True
        )
        self._thread.start()

    def _write(self, frame: pl.DataFrame, since: datetime | None) -> None:
        try:
            self.store.save_explanations(frame, since)
        except Exception as exc:  # raised in the pass, by the next save or wait
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one pass. The explainer's state makes no
    cycles, but each full collection rescans what it has kept: a quarter to a third of
    the explain time. The cycles a chunk makes (its frames, threads, dicts) are collected
    after it, from the young generations only: left for the end of the pass, they took
    2.6 GB over 1.5 M requests."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
