"""Insights computed on a thread of their own and kept, so the API answers at once.

Finding insights replays traffic through the what-if simulator (minutes at a million
requests), and what they say is a route's normal over days, so a server computes them
off the request path: the first ask starts the computation and waits a moment for it;
later asks get the kept answer, started again in the background once a write has
changed the store (any write when the store's changes are unknown, as through a lake)
and the kept answer is REFRESH_S old.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from typing import Any

import duckdb

from collector.service import insights
from collector.store.changes import Changes

log = logging.getLogger(__name__)
REFRESH_S = 60.0  # the youngest kept answer a write sends to be computed again
FIRST_WAIT_S = 1.0  # how long the first ask waits for the first answer


class KeptInsights:
    """One server's insights, kept (``reader``: a new cursor on its store; ``changes``:
    its write log, None when unknown)."""

    def __init__(
        self, reader: Callable[[], duckdb.DuckDBPyConnection], changes: Changes | None
    ) -> None:
        self.reader = reader
        self.changes = changes
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cachediag-insights")
        self._kept: tuple[Any, int, float, list[dict]] | None = None  # rules, version, at, rows
        self._running: Future | None = None

    def get(self, rules: Any, wait: float | None = FIRST_WAIT_S) -> tuple[list[dict] | None, bool]:
        """The kept insights for ``rules`` (None while none are computed yet), and whether
        a computation is under way; ``wait``: seconds the ask that starts the first
        computation waits for it (None: any ask waits until it is there)."""
        with self._lock:
            kept = self._kept if self._kept is not None and self._kept[0] == rules else None
            started = self._running is None and self._stale(kept)
            if started:
                self._running = self._pool.submit(self._compute, rules)
            running = self._running
        if kept is None and running is not None and (started or wait is None):
            try:
                running.result(wait)
            except Pending:
                return None, True
            return self.get(rules, wait)
        return (kept[3] if kept else None), running is not None

    def _stale(self, kept: tuple | None) -> bool:
        if kept is None:
            return True
        changed = self.changes is None or self.changes.since(kept[1]) is not None
        return changed and time.monotonic() - kept[2] > REFRESH_S

    def _compute(self, rules: Any) -> None:
        version = self.changes.version if self.changes is not None else -1
        cur = self.reader()
        try:
            rows = insights.find(cur, rules)
            with self._lock:
                self._kept = (rules, version, time.monotonic(), rows)
        except Exception:
            log.exception("insights failed")
            raise
        finally:
            cur.close()
            with self._lock:
                self._running = None
