"""A what-if job as its readers see it: once its state says it ended, its time and its answer
(or its error) are there. The dashboard polls a job from another thread and prints both."""

from __future__ import annotations

import pytest

from collector.service import whatif as service


class Watched(service.Job):
    """A job that notes its time, answer and error at the moment its state says it ended."""

    def __setattr__(self, name, value) -> None:
        if name == "state" and value in ("done", "failed"):
            object.__setattr__(self, "seen", (self.seconds, self.result, self.error))
        object.__setattr__(self, name, value)


class Cursor:
    closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("fails", [False, True])
def test_a_job_that_says_it_ended_has_its_time_and_answer(monkeypatch, fails):
    answer, cursor = object(), Cursor()

    def replay(cur, *params, progress):
        assert cur is cursor and params == ("sticky", 600)
        if fails:
            raise ValueError("no rows")
        return answer

    monkeypatch.setattr(service, "whatif", replay)
    runner = service.Runner(lambda: cursor)
    job = Watched("j1", ("sticky", 600))
    try:
        runner._run(job)
    finally:
        runner.close()
    seconds, result, error = job.seen
    assert seconds is not None and seconds >= 0
    assert (result, error) == ((None, "ValueError: no rows") if fails else (answer, None))
    assert job.state == ("failed" if fails else "done") and cursor.closed
