"""The server's explainer: explains new rows as they commit, on a thread of its own
(the pass itself is ``collector.explanations``)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import duckdb

from analysis.explain import Explainer
from collector.explanations import explain_new, resume, rewind
from collector.store import explaining as reads
from collector.store.database import Store

log = logging.getLogger(__name__)

BACKGROUND_CHUNK = 2_000
ACTIVE_S = 0.25  # a commit this recent means ingest is busy
DUTY = 0.1  # share of the time the background explainer takes while ingest is busy
# Unless someone waits on flush, at most one rewind this often: a rewind primes a new
# explainer from the stored window (seconds at 100k rows), and several live exporters
# commit out of time order all the time; late rows wait, and one rewind takes them all.
REWIND_GAP_S = 30.0
STOP_S = 3.0  # how long close() waits for the explain thread to stop


class Background:
    """Explains new rows as they commit, on its own thread, without holding up ingest.

    Its first pass (on ``catch_up``, a commit or ``flush``) resumes from what is
    stored; the next ones explain the rows committed since. It shares the GIL with
    ingest, so while commits keep coming it paces itself to a DUTY share of the time
    and catches up when ingest goes quiet (or when someone waits on ``flush``).
    ``close`` stops it between two rows.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.explainer = Explainer()
        self.last_rowid: int | None = None  # None: resume from what is stored
        self.explained = 0
        self.rewinds = 0  # passes that explained again from a row committed late
        self._last_rewind = -REWIND_GAP_S
        self._later: threading.Timer | None = None  # the pass a deferred rewind waits for
        self._cursor = store.cursor()  # this thread's reads; close() interrupts them
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._hurry = threading.Event()  # flush or close: stop pacing
        self._last_commit = 0.0
        self._chunk_start = 0.0
        self._thread = threading.Thread(target=self._run, name="cachediag-explain", daemon=True)
        self._thread.start()

    def catch_up(self) -> None:
        """Start a pass now, without waiting for a commit: rows that a stop left without
        an explanation are explained (the server calls this once it is serving)."""
        self._idle.clear()
        self._wake.set()

    def poke(self) -> None:
        """New rows were committed."""
        self._last_commit = time.monotonic()
        self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every committed row is explained (False when stopped first)."""
        self._hurry.set()
        self._idle.clear()
        self._wake.set()
        if self._stop.is_set():  # else a stop from now on ends the wait (see _run)
            return False
        return self._idle.wait(timeout) and not self._stop.is_set()

    def _pace(self, rows: int) -> None:
        """After each chunk: count it; while ingest is busy, rest (1 - DUTY) / DUTY times
        as long as the chunk took. A rewind first reports the explanations it dropped."""
        self.explained += rows
        if rows < 0:
            return
        now = time.monotonic()
        if not self._hurry.is_set() and now - self._last_commit < ACTIVE_S:
            self._hurry.wait((now - self._chunk_start) * (1 - DUTY) / DUTY)
        self._chunk_start = time.monotonic()

    def _pass(self) -> None:
        # The collector stays on: a paced pass lasts as long as ingest keeps coming.
        how = dict(
            progress=self._pace,
            chunk_rows=BACKGROUND_CHUNK,
            pause_gc=False,
            stop=self._stop,
            cursor=self._cursor,
        )
        if self.last_rowid is None:
            last, _ = resume(self.store, self.explainer, **how)
        else:
            # Rows are explained in time order, but concurrent exports commit out of it: a
            # row older than the last one explained was not there when the rows after it
            # were explained, so they are explained again from it on, knowing it.
            high = reads.last_rowid(self._cursor)
            late = reads.earliest_after(self._cursor, self.last_rowid, high)
            newest = self.explainer.newest
            if late is not None and newest is not None and late < newest:
                if self._defer_rewind():
                    return
                self.explainer, self.rewinds = Explainer(), self.rewinds + 1
                last, _ = rewind(self.store, self.explainer, late, upto=high, **how)
            else:
                last, _ = explain_new(self.store, self.explainer, self.last_rowid, upto=high, **how)
        if not self._stop.is_set():  # a stopped pass is no place to go on from
            self.last_rowid = last

    def _defer_rewind(self) -> bool:
        """Whether a rewind must wait (REWIND_GAP_S since the last one, and no flush);
        if so, a pass is scheduled for when it may run."""
        wait = self._last_rewind + REWIND_GAP_S - time.monotonic()
        if wait > 0 and not self._hurry.is_set():
            if self._later is None or not self._later.is_alive():
                self._later = threading.Timer(wait, self._wake.set)
                self._later.daemon = True
                self._later.start()
            return True
        self._last_rewind = time.monotonic()
        return False

    def _run(self) -> None:
        while self._wake.wait() and not self._stop.is_set():
            self._wake.clear()
            self._chunk_start = time.monotonic()
            try:
                self._pass()
            except Exception:
                if self._stop.is_set():  # interrupted by close()
                    break
                log.exception("explaining new requests failed")
                # The next pass starts again from what is stored, with a fresh state.
                self.explainer, self.last_rowid = Explainer(), None
            if not self._wake.is_set():
                self._hurry.clear()
                self._idle.set()
        self._cursor.close()
        self._idle.set()  # no flush waits for a stopped thread

    def stop(self) -> None:
        """Ask the thread to stop after the row at hand (or its query) and return."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        with contextlib.suppress(duckdb.Error):
            self._cursor.interrupt()

    def close(self, timeout: float = STOP_S) -> bool:
        """Stop; True when the thread ended within ``timeout``. What it explained is
        kept; the rest is explained after the next start."""
        self.stop()
        if self._later is not None:
            self._later.cancel()
        self._thread.join(timeout)
        return not self._thread.is_alive()
