"""Insights kept by the server: found on a thread of their own, answered at once,
found again after a write once they are old enough."""

from __future__ import annotations

import threading
from datetime import datetime

from collector.service import kept_insights
from collector.store.changes import Changes


class _Cursor:
    def close(self) -> None:
        pass


def test_first_ask_does_not_wait_then_the_kept_answer_until_a_write(monkeypatch):
    release, calls = threading.Event(), []

    def find(cur, rules):
        release.wait(30)
        calls.append(rules)
        return [{"cause": "ttl_expired", "n": len(calls)}]

    monkeypatch.setattr(kept_insights.insights, "find", find)
    changes = Changes()
    kept = kept_insights.KeptInsights(_Cursor, changes)
    assert kept.get("rules", wait=0) == (None, True)  # being found: answered at once
    assert kept.get("rules", wait=30) == (None, True)  # only the ask that started it waits
    release.set()
    assert kept.get("rules", wait=None) == ([{"cause": "ttl_expired", "n": 1}], False)
    assert kept.get("rules") == ([{"cause": "ttl_expired", "n": 1}], False)  # kept
    changes.touch(datetime(2025, 1, 1))
    assert kept.get("rules") == ([{"cause": "ttl_expired", "n": 1}], False)  # too young
    monkeypatch.setattr(kept_insights, "REFRESH_S", -1.0)
    rows, _ = kept.get("rules")  # old enough after a write: the kept answer, found again
    assert rows == [{"cause": "ttl_expired", "n": 1}]
    running = kept._running
    if running is not None:
        running.result(30)
    assert kept.get("rules")[0] == [{"cause": "ttl_expired", "n": 2}]
    assert kept.get("other rules", wait=None)[0] == [{"cause": "ttl_expired", "n": 3}]
    assert calls == ["rules", "rules", "other rules"]
