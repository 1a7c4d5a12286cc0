"""Decode workers: a process pool that replaces itself when a worker dies.

A worker can die (an input that crashes the compiled reader, the OOM killer, a
stray SIGKILL); the standard ProcessPoolExecutor then stays broken and every
later export would fail. Here the broken pool is replaced at once, counted,
and each export that was in flight is tried again alone in a one-process
quarantine pool: if it kills that process too, its body is the culprit
(``WorkerCrashed``, a 400); otherwise it is answered as if nothing happened.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerCrashed(RuntimeError):
    """The input killed a decode worker even when it ran alone."""


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the server process already runs DuckDB's threads.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class DecodePool:
    """``run(fn, *args)`` in a worker process, surviving dead workers."""

    def __init__(self, workers: int, on_restart: Callable[[], None]) -> None:
        self._workers = workers
        self._on_restart = on_restart
        self._pool = _new_pool(workers)
        self._quarantine: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # guards replacing either pool
        self._alone = threading.Lock()  # one suspect at a time in quarantine

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        try:
            future = pool.submit(fn, *args)
        except BrokenProcessPool:  # it broke before this export reached it
            future = self._replace(pool).submit(fn, *args)
        try:
            return future.result()
        except BrokenProcessPool:
            self._replace(pool)
            return self._run_alone(fn, *args)

    def pids(self) -> list[int]:
        """The worker processes now running (the soak samples their memory)."""
        pools = (self._pool, self._quarantine)
        return [pid for p in pools if p is not None for pid in (p._processes or {})]

    def shutdown(self) -> None:
        with self._lock:
            self._pool.shutdown()
            if self._quarantine is not None:
                self._quarantine.shutdown()

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is broken:
                log.warning("a decode worker died; starting a new pool")
                broken.shutdown(wait=False)
                self._pool = _new_pool(self._workers)
                self._on_restart()
            return self._pool

    def _run_alone(self, fn: Callable[..., T], *args: Any) -> T:
        with self._alone:
            if self._quarantine is None:
                self._quarantine = _new_pool(1)
            try:
                return self._quarantine.submit(fn, *args).result()
            except BrokenProcessPool:
                with self._lock:
                    self._quarantine.shutdown(wait=False)
                    self._quarantine = None
                self._on_restart()
                raise WorkerCrashed("this export crashed the decoder") from None
