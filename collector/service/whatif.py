"""What-if: stored traffic replayed through a simulated provider with other routing,
TTL, replicas or warmup, per route, beside what was observed.

On a server the replay runs on a worker of its own (``Runner``: one thread, a few jobs
queued at most, a busy answer beyond that), over the newest ``SAMPLE`` requests unless
asked otherwise, reporting how many rows it has replayed; it lets other threads run
every few hundred rows, so the API's other requests are not starved while it works.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb

from collector.store import queries

DEFAULT_TTL_S = 600
SAMPLE = 20_000  # newest requests a server replays unless asked for another number
YIELD_EVERY = 256  # rows replayed between pauses that let the API's other threads run
YIELD_S = 0.001
MAX_QUEUED = 4  # jobs waiting or running at once; beyond that the runner is busy
KEPT = 32  # finished jobs remembered for their readers


@dataclass(frozen=True)
class WhatIf:
    """The simulated provider, the days the traffic spans, and per route the observed
    and simulated outcomes; ``sampled``: the newest requests replayed (None: all) of
    ``stored``."""

    model: Any  # analysis.simulate.ProviderModel
    warmup: bool
    days: float
    routes: dict[str, tuple[Any, Any]]  # route -> (observed, simulated) whatif.Outcome
    sampled: int | None = None
    stored: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """One row per route."""
        return [
            {
                "route": route,
                "requests": seen.requests,
                "observed_hit_ratio": seen.hit_ratio,
                "simulated_hit_ratio": sim.hit_ratio,
                "observed_p95_ttft_ms": seen.p95_ttft_ms,
                "simulated_p95_ttft_ms": sim.p95_ttft_ms,
                "observed_missed_usd": seen.missed_cost_usd,
                "simulated_missed_usd": sim.missed_cost_usd,
            }
            for route, (seen, sim) in sorted(self.routes.items())
        ]


def whatif(
    cur: duckdb.DuckDBPyConnection,
    router: str = "sticky",
    ttl_s: float = DEFAULT_TTL_S,
    replicas: int | None = None,
    warmup: bool = False,
    sample: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WhatIf:
    """Replay the stored traffic (``sample``: only the newest that many requests);
    ``replicas`` defaults to as many as the traffic used (the most replicas any route ran
    on). ``progress(done, total)`` hears of the rows replayed as it goes."""
    from analysis.simulate import ProviderModel
    from analysis.whatif import compare

    used, first, last, stored = cur.execute(
        "SELECT max(n), min(t0), max(t1), sum(k) FROM (SELECT route, count(DISTINCT replica) "
        "AS n, min(ts) AS t0, max(ts) AS t1, count(*) AS k FROM requests GROUP BY route)"
    ).fetchall()[0]
    stored = int(stored or 0)
    sampled = sample if sample is not None and sample < stored else None
    model = ProviderModel(replicas=replicas or max(used or 1, 1), router=router, ttl_s=ttl_s)
    span: list = []
    rows = _paced(queries.traffic(cur, sampled, warmup), sampled or stored, progress, span)
    routes = compare(rows, model, warmup)
    if sampled is not None and span:
        first, last = span[0], span[-1]
    days = max((last - first).total_seconds() / 86400, 1 / 24) if first else 1.0
    return WhatIf(model, warmup, days, routes, sampled, stored)


def _paced(
    rows: Iterable[dict],
    total: int,
    progress: Callable[[int, int], None] | None,
    span: list,
) -> Iterator[dict]:
    """The rows, pausing every YIELD_EVERY of them (other threads get the interpreter)
    and telling ``progress`` how far the replay is, when there is a ``progress`` to
    tell; ``span`` gets the first and last
    row's time."""
    row = None
    for done, row in enumerate(rows, 1):
        if done == 1:
            span.append(row["ts"])
        if progress and done % YIELD_EVERY == 0:
            progress(done, total)
            time.sleep(YIELD_S)
        yield row
    if row is not None:
        span.append(row["ts"])
    if progress:
        progress(total, total)


@dataclass
class Job:
    """One what-if on the runner: its parameters, how far it is, its answer or error."""

    id: str
    params: tuple
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    result: WhatIf | None = None
    error: str | None = None
    future: Future | None = None

    def status(self) -> dict[str, Any]:
        """The job as plain data (its answer's rows once done)."""
        body: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "seconds": self.seconds,
            "error": self.error,
        }
        if self.result is not None:
            body.update(meta(self.result), data=self.result.rows())
        return body


def meta(found: WhatIf) -> dict[str, Any]:
    """What an answer says beside its rows: the simulated provider and the sample."""
    model = found.model
    return {
        "router": model.router,
        "replicas": model.replicas,
        "ttl_s": model.ttl_s,
        "warmup": found.warmup,
        "days": found.days,
        "sampled": found.sampled,
        "stored": found.stored,
    }


class Busy(RuntimeError):
    """The runner already holds MAX_QUEUED jobs."""


class Runner:
    """What-ifs on one worker thread of their own, a few queued at most; a job asked for
    again while it is queued or running (or done) is the same job."""

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self._cursor = cursor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whatif")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, *params: Any) -> Job:
        """The job for these parameters (router, ttl_s, replicas, warmup, sample)."""
        with self._lock:
            same = next((j for j in self._jobs.values() if j.params == params), None)
            if same is not None and same.state != "failed":
                return same
            if sum(j.state in ("queued", "running") for j in self._jobs.values()) >= MAX_QUEUED:
                raise Busy(f"{MAX_QUEUED} what-ifs are queued or running; try again shortly")
            job = Job(uuid.uuid4().hex[:12], params)
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT + MAX_QUEUED:
                oldest = next(iter(self._jobs.values()))
                if oldest.state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
            job.future = self._pool.submit(self._run, job)
            return job

    def jobs(self) -> list[Job]:
        """The jobs remembered, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job) -> None:
        job.state, job.started = "running", time.monotonic()

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        cur = self._cursor()
        try:
            result, error = whatif(cur, *job.params, progress=progress), None
        except Exception as exc:  # a failed job says why to whoever reads it
            result, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            cur.close()
        # Its time and answer before its state: whoever reads the state finished reads them
        # (the dashboard, polling, read "done" with no time yet and failed to print it).
        job.seconds = time.monotonic() - job.started
        job.result, job.error = result, error
        job.state = "done" if error is None else "failed"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
