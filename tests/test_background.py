"""The instrumentation's background worker and counters: bounded, dropping, fork-safe."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from collector.instrument.background import Tally, Worker
from tests.servers import ROOT


def _held_worker(size: int = 2):
    """A worker whose first job holds it until released; what it ran and dropped."""
    ran, dropped = [], []
    inside, release = threading.Event(), threading.Event()

    def handle(job):
        if job == "hold":
            inside.set()
            release.wait(60)
        ran.append(job)

    worker = Worker(handle, dropped.append, size, "test-worker")
    worker.submit("hold")
    assert inside.wait(60)
    return worker, ran, dropped, release


def test_full_queue_drops_on_the_submitting_thread():
    worker, ran, dropped, release = _held_worker()
    for job in ("a", "b", "c"):
        worker.submit(job)
    assert dropped == ["c"]
    release.set()
    assert worker.drain(60)
    assert ran == ["hold", "a", "b"]
    assert worker.stop(60)


def test_drain_and_stop_give_up_at_their_deadline():
    """A job that does not finish: drain and stop return (False) instead of waiting;
    stop drops what is still queued, and later jobs too."""
    worker, ran, dropped, release = _held_worker()
    worker.submit("a")
    assert not worker.drain(0.05)
    assert not worker.stop(0.05)
    worker.submit("late")
    assert dropped == ["a", "late"]
    release.set()


def test_a_queue_must_hold_a_job():
    with pytest.raises(ValueError, match="at least one job"):
        Worker(print, print, 0, "none")


def test_tally_counts_across_threads():
    tally = Tally()
    threads = [
        threading.Thread(target=lambda: [tally.add("n") for _ in range(1000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert tally["n"] == 4000 and tally["other"] == 0


_FORK = """
import os, signal, threading
from collector.instrument.background import Tally, Worker

ran, dropped = [], []
inside, release = threading.Event(), threading.Event()


def handle(job):
    if job == "hold":
        inside.set()
        release.wait(60)
    ran.append((os.getpid(), job))


worker = Worker(handle, dropped.append, 4, "w")
stopped = Worker(handle, dropped.append, 4, "s")
stopped.stop(10)
tally = Tally()
tally.add("n", 2)
worker.submit("hold")
inside.wait(60)
os.register_at_fork(before=release.set)  # runs before the worker's own hook
parent = os.getpid()
pid = os.fork()
if pid == 0:
    signal.alarm(60)  # a child that hangs is killed, never left behind
    worker.submit("child")
    stopped.submit("to a stopped worker")
    worker.drain(30)
    print(ran == [(parent, "hold"), (os.getpid(), "child")], dropped, tally["n"], flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_its_own_worker_and_counts():
    """The fork waits for the job in progress (the child sees it done: no lock was
    inherited held); the child's jobs run on its own thread; a stopped worker stays
    stopped; counts start from zero."""
    proc = subprocess.run(
        [sys.executable, "-c", _FORK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    child, code = proc.stdout.splitlines()
    assert (child, code) == ("True ['to a stopped worker'] 0", "0")
