"""The instrumentation's background machinery: counters and the fingerprint worker.

Both live inside customers' services, so both are fork-safe the way the
OpenTelemetry SDK's batch processor is (``os.register_at_fork``): a child
process (gunicorn ``--preload``, Celery prefork, multiprocessing) gets fresh
locks, a fresh queue and its own running thread, and counts from zero. Nothing
here ever blocks the thread that hands work over: a full queue drops the job
and says so.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

FORK_WAIT_S = 1.0  # longest a fork() waits for the job in progress to finish


def _at_fork(obj: Any, **hooks: Callable[[Any], None]) -> None:
    """Register ``hook(obj)`` functions as fork hooks, without keeping ``obj`` alive."""
    ref = weakref.ref(obj)

    def bind(hook: Callable[[Any], None]) -> Callable[[], None]:
        def run() -> None:
            target = ref()
            if target is not None:
                hook(target)

        return run

    os.register_at_fork(**{when: bind(hook) for when, hook in hooks.items()})


def fork_safe_session() -> Any:
    """A requests Session (for the OTLP exporter) that a forked child does not share:
    the child mounts fresh connection pools and leaves the parent's keep-alive sockets
    (and any pool lock held at the fork) alone."""
    import requests  # the OTLP/HTTP exporter's own dependency, needed only then

    def fresh_pools(session: requests.Session) -> None:
        for prefix in list(session.adapters):
            session.mount(prefix, requests.adapters.HTTPAdapter())

    session = requests.Session()
    _at_fork(session, after_in_child=fresh_pools)
    return session


class Tally:
    """Thread-safe named counts of this process (a forked child starts from zero)."""

    def __init__(self) -> None:
        self._after_fork_in_child()
        _at_fork(self, after_in_child=Tally._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


class ProcessorDrops:
    """The OTel SDK batch processor's metrics hook, counting its queue-full drops into a
    Tally (the SDK's own counter needs OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED)."""

    def __init__(self, tally: Tally, name: str) -> None:
        self._tally, self._name = tally, name

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        pass

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        if error_type == "queue_full":
            self._tally.add(self._name, count)

    def finish_items(self, count: int) -> None:
        pass


_STOP = object()


class Worker:
    """One daemon thread running ``handle(job)`` for the jobs of a bounded queue.

    ``submit`` never waits: when the queue is full, or the worker is stopped, the job
    goes to ``drop(job)`` on the submitting thread instead (which must be cheap). Every
    wait is bounded. Before a fork the worker finishes its job in progress (at most
    FORK_WAIT_S), so the child inherits no lock held mid-job; the child starts its own
    thread on an empty queue (the jobs queued are the parent's, and the parent runs
    them).
    """

    def __init__(
        self, handle: Callable[[Any], None], drop: Callable[[Any], None], size: int, name: str
    ) -> None:
        if size < 1:
            raise ValueError(f"the queue must hold at least one job, not {size}")
        self._handle, self._drop = handle, drop
        self._size, self._name = size, name
        self._stopped = False
        self._start()
        _at_fork(
            self,
            before=Worker._before_fork,
            after_in_parent=Worker._after_fork_in_parent,
            after_in_child=Worker._after_fork_in_child,
        )

    def _reset(self) -> None:
        self._jobs: queue.Queue[Any] = queue.Queue(self._size)
        self._busy = threading.Lock()  # held while a job runs
        self._fork_held = False

    def _start(self) -> None:
        self._reset()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self._name)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _STOP:
                    return
                with self._busy:
                    self._handle(job)
            except Exception:  # never let the worker die
                log.debug("cachediag background job failed", exc_info=True)
            finally:
                self._jobs.task_done()

    def submit(self, job: Any) -> None:
        """Queue ``job``; if the queue is full or stopped, drop it (``drop(job)``)."""
        if not self._stopped:
            try:
                self._jobs.put_nowait(job)
                return
            except queue.Full:
                pass
        self._drop(job)

    def drain(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every queued job is done; True if they are."""
        deadline = time.monotonic() + timeout_s
        with self._jobs.all_tasks_done:
            while self._jobs.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._jobs.all_tasks_done.wait(min(left, 0.1))
        return True

    def stop(self, timeout_s: float) -> bool:
        """Run what is queued (at most ``timeout_s``), then stop the thread; jobs still
        queued then are dropped (``drop``). True if everything ran."""
        deadline = time.monotonic() + timeout_s
        self._stopped = True  # from now on submit drops
        done = self.drain(timeout_s)
        leftover = []
        while True:
            try:
                leftover.append(self._jobs.get_nowait())
                self._jobs.task_done()
            except queue.Empty:
                break
        for job in leftover:
            if job is not _STOP:
                self._drop(job)
        try:
            self._jobs.put_nowait(_STOP)
        except queue.Full:  # refilled meanwhile: the daemon thread ends with the process
            return False
        self._thread.join(max(deadline - time.monotonic(), 0))
        return done and not leftover

    def _before_fork(self) -> None:
        self._fork_held = self._busy.acquire(timeout=FORK_WAIT_S)

    def _after_fork_in_parent(self) -> None:
        if self._fork_held:
            self._fork_held = False
            self._busy.release()

    def _after_fork_in_child(self) -> None:
        """The parent's thread is not here: start ours (unless the parent had stopped)."""
        if self._stopped:
            self._reset()
        else:
            self._start()
