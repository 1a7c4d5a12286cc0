"""One minimal stream per class of regression the rules used to miss (or cry wolf on):
each shows the incident firing, or the rules staying quiet, as it should."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from analysis import alerts
from collector.service import alerts as service_alerts
from collector.service import insights as service_insights
from collector.store.database import Store

T0 = 1_763_769_600  # a midnight (UTC), seconds
WINDOW = 900
TOKENS = 4000
USD = TOKENS * (2.5 - 1.25) / 1e6  # what a 4,000-token miss of gpt-4o costs


@pytest.fixture()
def store(tmp_path):
    s = Store(str(tmp_path / "db.duckdb"))
    yield s
    s.close()


def _stream(store, windows, route="/chat", replica="r1"):
    """Store one group's traffic and its explanations. ``windows``: per window index,
    (requests, {cause: how many of them it broke}); a request no cause broke is served
    from cache and explained no_miss."""
    rows, explained = [], []
    for w, (n, broken) in windows.items():
        causes = [c for c, k in broken.items() for _ in range(k)]
        for i in range(n):
            cause = causes[i] if i < len(causes) else "no_miss"
            rid = f"{route}-{w}-{i}"
            rows.append(
                {
                    "id": rid,
                    "start_ns": (T0 + w * WINDOW + i * WINDOW // (n + 1)) * 10**9,
                    "signal": "span",
                    "route": route,
                    "request_model": "gpt-4o",
                    "replica": replica,
                    "prompt_tokens": TOKENS,
                    "cached_tokens": 0 if cause != "no_miss" else TOKENS - 200,
                    "ttft_ms": 200.0,
                }
            )
            miss = cause != "no_miss"
            explained.append(
                {
                    "id": rid,
                    "cause": cause,
                    "missed_tokens": TOKENS if miss else 0,
                    "missed_cost_usd": USD if miss else 0.0,
                }
            )
    store.insert(Store.frame(rows), [])
    store.save_explanations(pl.DataFrame(explained))


def _at(w: int) -> datetime:
    return datetime.fromtimestamp(T0 + w * WINDOW, UTC).replace(tzinfo=None)


def _incidents(store, route="/chat"):
    return [a for a in service_alerts.find(store.cursor()) if a.group["route"] == route]


def _started(alert) -> int:
    return round((alert.started_at - _at(0)).total_seconds() / WINDOW)


@pytest.mark.parametrize("surge_evicts", [True, False])
def test_a_launch_surge_that_evicts_live_conversations(store, surge_evicts):
    """Hit ratio 0.71 ─► 0.65 on a busy route, but many dollars an hour: an eviction
    incident; the same surge evicting at the usual rate is no incident."""
    usual = {w: (60, {"eviction_or_unknown": 2}) for w in range(12)}
    evicted = 60 if surge_evicts else 10
    surge = {w: (300, {"eviction_or_unknown": evicted}) for w in range(12, 16)}
    _stream(store, usual | surge | {w: (60, {"eviction_or_unknown": 2}) for w in range(16, 20)})
    found = _incidents(store)
    if not surge_evicts:
        assert found == []
        return
    (incident,) = found
    assert (incident.cause, _started(incident), incident.rule) == (
        "eviction_or_unknown",
        12,
        "cached_drop",
    )
    assert incident.state == "resolved" and incident.cost_per_hour > 0.5
    assert incident.top_causes[0][0] == "eviction_or_unknown"


def test_an_outage_past_the_ttl_while_another_incident_is_open(store):
    """A timestamp in the prompt since window 4 (still firing), then an outage: nine
    requests after it, all lapsed. One incident per cause: both are open."""
    shipped = {w: (20, {"dynamic_value": 10}) for w in range(4, 8)}
    before = {w: (20, {}) for w in range(4)}
    after = {12: (9, {"ttl_expired": 9}), 13: (20, {"dynamic_value": 10})}
    _stream(store, before | shipped | after)
    found = {a.cause: a for a in _incidents(store)}
    assert set(found) == {"dynamic_value", "ttl_expired"}
    assert (_started(found["dynamic_value"]), found["dynamic_value"].state) == (4, "firing")
    lapse = found["ttl_expired"]
    assert (_started(lapse), lapse.rule, lapse.state) == (12, "ttl_lapse", "firing")
    assert "9 requests found their prefix expired" in alerts.slack_text(lapse)


@pytest.mark.parametrize("truncates", [False, True])
def test_routine_compaction_is_normal_a_truncating_context_manager_is_not(store, truncates):
    """A route whose context compaction rewrites history a few times an hour: that rate
    is its baseline. A context manager that truncates old tool outputs rewrites it on
    every step: an incident, every step correctly explained history_rewritten."""
    windows = {w: (40, {"history_rewritten": 1 if w % 2 else 0}) for w in range(16)}
    if truncates:
        windows |= {w: (40, {"history_rewritten": 15}) for w in range(10, 14)}
    _stream(store, windows)
    found = _incidents(store)
    if not truncates:
        assert found == []
        return
    (incident,) = found
    assert (incident.cause, incident.rule, _started(incident)) == (
        "history_rewritten",
        "prefix_break",
        10,
    )
    assert incident.resolved_at == _at(14)


@pytest.mark.parametrize("lost", [1, 4])
def test_a_sparse_route_losing_session_affinity(store, lost):
    """Six requests a window on a quiet morning; a router that loses affinity misses two
    of them a window (hit ratio 0.94 ─► 0.77): too few requests for the hit-ratio rule,
    enough counts for an incident. One routing miss alone is none."""
    windows = {w: (6, {}) for w in range(12)}
    misses = {12: 1, 13: 1, 14: 1, 15: 1} if lost == 4 else {13: 1}
    windows |= {w: (6, {"routing": k}) for w, k in misses.items()}
    _stream(store, windows)
    found = _incidents(store)
    if lost == 1:
        assert found == []
        return
    (incident,) = found
    assert (incident.cause, incident.rule) == ("routing", "cached_drop")
    assert _started(incident) <= 14  # within two windows of the first lost request


def test_nightly_lapses_recur_quietly_a_new_lapse_pattern_fires(store):
    """Two days. Every night a sparse route's conversations outlive the TTL: the first
    night it is new (an incident); the second night yesterday's same hours know it (no
    incident), and it is an insight. A lapse pattern at noon, new to that hour, fires."""
    day = 96
    windows = {}
    for d in (0, 1):
        for w in range(day):
            night = 8 <= w < 24  # 02:00 to 06:00
            windows[d * day + w] = (4, {"ttl_expired": 3}) if night else (20, {})
    windows |= {day + w: (20, {"ttl_expired": 8}) for w in range(48, 52)}  # day 2 noon
    _stream(store, windows)
    found = _incidents(store)
    assert [(_started(a) // day, a.cause) for a in found] == [
        (0, "ttl_expired"),
        (1, "ttl_expired"),
    ]
    assert _started(found[0]) == 8 and _started(found[1]) == day + 48
    (insight,) = service_insights.find(store.cursor(), simulate=False)
    assert insight["cause"] == "ttl_expired" and insight["text"].startswith("nightly ")
    # the second night's lapses (the first was an incident) over the two days stored
    assert insight["cost_per_day"] == pytest.approx(16 * 3 * USD / 2, rel=0.01)


@pytest.mark.parametrize("all_day", [False, True])
def test_lapses_usual_at_night_are_news_in_a_busy_hour(store, all_day):
    """A route's conversations outlive the TTL every night (3 of 4 requests lapse). At
    15:15 a gateway outage ends: 60 backlogged requests, 3 lapsed. The night's rate is
    no excuse in a window that busy: an incident. On a route whose busy windows lapse
    that often all day long, the same window is its usual mix: none."""
    windows = {}
    for w in range(61):
        night = 8 <= w < 24
        lapsed = 3 if night else int(all_day)
        windows[w] = (4 if night else 20, {"ttl_expired": lapsed} if lapsed else {})
    windows[61] = (60, {"ttl_expired": 3})
    _stream(store, windows)
    found = [a for a in _incidents(store) if _started(a) > 24]  # the first night is new
    if all_day:
        assert found == []
        return
    (incident,) = found
    assert (_started(incident), incident.rule, incident.cause) == (61, "ttl_lapse", "ttl_expired")


def test_a_cause_regressing_while_the_hit_ratio_rises_is_told_in_misses(store):
    """A route whose usual lapses stop as a router loses affinity gains hits while its
    routing misses rise: the incident says how many requests missed, not "hit ratio
    63% → 79%" under a rule named for a drop."""
    windows = {w: (6, {"ttl_expired": 2}) for w in range(12)}
    windows |= {w: (6, {"routing": 1}) for w in range(12, 16)}
    _stream(store, windows)
    (incident,) = [a for a in _incidents(store) if a.cause == "routing"]
    signal = incident.signals[0]
    assert (signal["rule"], signal["unit"]) == ("cached_drop", "misses")
    assert signal["value"] >= 3 > signal["baseline"]
    text = alerts.slack_text(incident)
    assert "requests missed where" in text and "hit ratio" not in text


def test_a_hit_ratio_drop_is_told_as_one(store):
    """The sparse route of the affinity test: its ratio dropped, so its signal is one."""
    windows = {w: (6, {}) for w in range(12)}
    windows |= {w: (6, {"routing": 1}) for w in range(12, 16)}
    _stream(store, windows)
    (incident,) = _incidents(store)
    signal = incident.signals[0]
    assert "unit" not in signal and signal["value"] < signal["baseline"]
    assert "hit ratio" in alerts.slack_text(incident)
