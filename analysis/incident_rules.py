"""Incidents from per-window, per-cause counts: one change on one group, one incident.

The store counts, per window and group, the requests and the misses of each
cause (with what they cost); this pure core decides when a cause *regresses*
on a group and follows it until it returns to its baseline.

- **Baseline by the route's own time of day.** A window is compared with the
  same group's windows at the same hour yesterday and last week when those are
  stored (``seasonal_days``, ``seasonal_min_requests``), else with the
  ``baseline_windows`` windows before it. A cause that is part of that
  baseline at its usual rate (nightly TTL lapses, routine compaction) is normal,
  and so is one at its usual rate over the ``mix_windows`` windows before that
  were as busy (``mix_density``: the route's cause mix at this traffic level,
  sporadic lapses all day long, not the night's lapses in a busy hour);
  one new to the group, or well above its usual rate, is a regression.
  The first window of a route is never judged: it has no normal yet.
- **Counts, not only ratios.** The baseline gives each cause a rate per
  request, shrunk toward the rate of that cause over all groups in the same
  windows (``prior_requests`` pseudo-requests): a sparse route's first
  windows are judged by what is normal elsewhere. A window (alone, or with the
  ones after it, up to ``span_windows`` in all: a sparse route shows its
  evidence over several) regresses when the cause broke at least ``min_count``
  requests, that many are improbable at the baseline rate (Poisson tail under
  ``alpha``), and the excess misses cost at least ``min_usd_per_hour``.
- **One incident per group and cause.** It starts at the first window of the
  evidence that had the cause, gathers every signal on the group while open,
  and resolves once the cause is back at its baseline rate (tail above
  ``resolve_alpha``) for ``resolve_windows`` windows that had requests.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from analysis import incident_scan

DAY_S = 86_400
SPARK_BEFORE, SPARK_AFTER = 4, 2  # sparkline windows around an incident
MIN_SPREAD_EVIDENCE = 5  # baseline occurrences a cause needs before its spread is measured


def poisson_tail(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    term = total = math.exp(-mean)
    for i in range(1, k):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)


@dataclass
class Series:
    """One group's windows (by index from the first stored window): requests, and per
    cause the requests it broke and their missed dollars."""

    requests: dict[int, int] = field(default_factory=dict)
    counts: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    usd: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))


@dataclass
class Found:
    """An incident as this module finds it (``analysis.alerts`` makes it an Alert)."""

    group: tuple
    cause: str
    start: int  # window index
    onset: int  # window index the regression was judged at
    rate: float  # the cause's baseline rate per request, frozen at the onset
    observed: int  # requests the cause broke in the onset evidence
    expected: float  # at the baseline rate
    usd_per_hour: float  # excess missed dollars an hour at the onset
    end: int | None = None  # window index it resolved at
    signals: list[dict[str, Any]] = field(default_factory=list)
    spark: list[float] = field(default_factory=list)


class Index:
    """Window index ─► time and back; windows are ``step`` seconds from ``t0``."""

    def __init__(self, t0: datetime, step: int) -> None:
        self.t0, self.step = t0, step

    def of(self, when: datetime) -> int:
        return int((when - self.t0).total_seconds() // self.step)

    def at(self, i: int) -> datetime:
        return self.t0 + timedelta(seconds=i * self.step)


_PREFIX: dict[int, tuple[dict, list[int], list]] = {}  # id(values) ─► prefix sums


def _window_sum(values: dict[int, Any], lo: int, hi: int) -> Any:
    """Sum of values over window indexes lo..hi (inclusive), by prefix sums over the
    windows present (built once per dict; ``forget`` drops them)."""
    found = _PREFIX.get(id(values))
    if found is None or found[0] is not values or len(found[1]) != len(values):
        keys = sorted(values)
        running, total = [0], 0
        for k in keys:
            total += values[k]
            running.append(total)
        found = _PREFIX[id(values)] = (values, keys, running)
    _, keys, running = found
    return running[bisect.bisect_right(keys, hi)] - running[bisect.bisect_left(keys, lo)]


def forget() -> None:
    """Drop the prefix sums of the last evaluation."""
    _PREFIX.clear()


def baseline_span(
    series: Series, first: int, rules: Any, last: int | None = None
) -> list[tuple[int, int]]:
    """The windows a span ``first``..``last`` is compared with: the same windows (and one
    either side) on each of ``seasonal_days`` before, where the group had
    ``seasonal_min_requests``; else the ``baseline_windows`` windows before it."""
    per_day = DAY_S // rules.window_s
    last = first if last is None else last
    spans = []
    for days in rules.seasonal_days:
        lo, hi = first - days * per_day - 1, last - days * per_day + 1
        if hi >= 0 and _window_sum(series.requests, lo, hi) >= rules.seasonal_min_requests:
            spans.append((lo, hi))
    return spans or [(first - rules.baseline_windows, first - 1)]


def sums(values: dict[int, Any], spans: list[tuple[int, int]]) -> Any:
    return sum(_window_sum(values, lo, hi) for lo, hi in spans)


def rate_of(series: Series, every: Series, cause: str, spans: list, rules: Any) -> float:
    """The cause's rate per request over the baseline spans, shrunk toward its rate over
    all groups there."""
    n, base = sums(series.counts[cause], spans), sums(series.requests, spans)
    all_n, all_base = sums(every.counts[cause], spans), sums(every.requests, spans)
    prior = (all_n + 0.5) / (all_base + rules.prior_requests)
    return (n + rules.prior_requests * prior) / (base + rules.prior_requests)


def dispersion(series: Series, cause: str, spans: list, rate: float, most: float) -> float:
    """How much more the cause's count varies from window to window in the baseline than
    a Poisson count would (Pearson's chi-square over its degrees of freedom, between 1 and
    ``most``): misses that come in bursts (fan-out rounds, a session's turns) are judged
    in bursts, not one by one."""
    chi, windows = 0.0, 0
    counts = series.counts[cause]
    if sums(counts, spans) < MIN_SPREAD_EVIDENCE:
        return 1.0  # too few to tell bursts from chance
    for lo, hi in spans:
        for i in range(lo, hi + 1):
            n = series.requests.get(i, 0)
            if n and rate:
                chi += (counts.get(i, 0) - rate * n) ** 2 / (rate * n)
                windows += 1
    if windows < 2:
        return 1.0
    return min(max(chi / (windows - 1), 1.0), most)


def usual_spans(series: Series, lo: int, hi: int, rules: Any) -> list[tuple[int, int]]:
    """The windows of the ``mix_windows`` before ``lo`` that had requests, at least
    ``mix_density`` times the requests per window of lo..hi (the route's cause mix at this
    traffic level), as runs of consecutive windows."""
    least = rules.mix_density * _window_sum(series.requests, lo, hi) / (hi - lo + 1)
    runs: list[list[int]] = []
    get = series.requests.get
    for i in range(lo - rules.mix_windows, lo):
        n = get(i, 0)
        if not n or n < least:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(a, b) for a, b in runs]


def _test(series: Series, every: Series, cause: str, lo: int, hi: int, rules: Any) -> Found | None:
    """Whether windows lo..hi show the cause regressing (see the module docstring)."""
    counts = series.counts[cause]
    observed = _window_sum(counts, lo, hi)
    if observed < max(rules.min_count, rules.min_breaks):
        return None
    spans = baseline_span(series, lo, rules, hi)
    requests = _window_sum(series.requests, lo, hi)
    rate = rate_of(series, every, cause, spans, rules)
    # each check below only makes the test stricter: stop at the first that fails
    if poisson_tail(observed, rate * requests) > rules.alpha:
        return None
    # the route's usual mix over the day before, at this traffic level: a cause it always
    # has is no news, but a lapse usual at night (sparse traffic outlives the TTL) is
    # news in a window as busy as the day
    day = usual_spans(series, lo, hi, rules)
    usual = rate_of(series, every, cause, day, rules) if day else 0.0
    if usual > rate:
        rate, spans = usual, day
    expected = rate * requests
    spread = dispersion(series, cause, spans, rate, rules.max_dispersion)
    if poisson_tail(math.ceil(observed / spread), expected / spread) > rules.alpha:
        return None
    usd = _window_sum(series.usd[cause], lo, hi)
    hours = (hi - lo + 1) * rules.window_s / 3600
    excess = usd * (1 - expected / observed) / hours
    if excess < rules.min_usd_per_hour:
        return None
    start = next(i for i in range(lo, hi + 1) if counts.get(i))
    return Found((), cause, start, hi, rate, observed, expected, excess)


def _at_baseline(series: Series, found: Found, i: int, rules: Any) -> bool | None:
    """Whether window i shows the cause back at its frozen baseline; None: no requests."""
    n = series.requests.get(i, 0)
    if not n:
        return None
    k = series.counts[found.cause].get(i, 0)
    return poisson_tail(k, found.rate * n) > rules.resolve_alpha


def follow(series: Series, found: Found, last: int, rules: Any) -> int:
    """The window an incident resolves at (its cause back at baseline for
    ``resolve_windows`` windows with requests), or -1 while it is still open; ``last``
    is the newest window stored."""
    quiet, since = 0, None
    for i in range(found.onset + 1, last + 1):
        verdict = _at_baseline(series, found, i, rules)
        if verdict is None:
            continue
        if verdict:
            since = i if quiet == 0 else since
            quiet += 1
            if quiet >= rules.resolve_windows:
                return since
        else:
            quiet = 0
    return -1


def cause_incidents(
    groups: dict[tuple, Series], every: Series, first: int, last: int, rules: Any
) -> list[Found]:
    """Every incident of every (group, cause), oldest first; windows before ``first``
    (the warm-up: not enough stored before them) are not judged."""
    forget()
    born: dict[Any, int] = {}  # per first group key (the route): its first window
    for group, series in groups.items():
        seen = min(series.requests, default=0)
        born[group[:1]] = min(born.get(group[:1], seen), seen)
    scan = incident_scan.Scan(rules, last + 1)
    out = []
    for group, series in groups.items():
        history = born[group[:1]]
        for cause in list(series.counts):
            bounds = (first, history, last)
            out += _incidents_of(group, series, every, cause, bounds, rules, scan)
    return sorted(out, key=lambda f: (f.start, f.group, f.cause))


def _candidates(
    series: Series, every: Series, cause: str, bounds: tuple, rules: Any, scan: Any
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The windows a cause's evidence could start at, in order; per such window i and
    span length d+1, whether ``_test`` could find i..i+d regressing (from ``max(i,
    first)``) and whether it could find i+1..i+d regressing (``incident_scan``: a span
    marked False surely fails ``_test``)."""
    first, busy_until, last = bounds
    starts = np.array(sorted(series.counts[cause]), dtype=np.int64)
    starts = starts[starts > busy_until]
    ends = starts[:, None] + np.arange(rules.span_windows, dtype=np.int64)[None, :]
    shape = ends.shape
    lo = np.broadcast_to(np.maximum(starts, first)[:, None], shape)
    could = scan.could_regress(series, every, cause, lo.ravel(), ends.ravel()).reshape(shape)
    could &= (ends <= last) & (lo <= ends)
    later = np.broadcast_to(starts[:, None] + 1, shape)
    rest = scan.could_regress(series, every, cause, later.ravel(), ends.ravel()).reshape(shape)
    keep = could.any(axis=1)
    return starts[keep].tolist(), could[keep], rest[keep]


def _incidents_of(
    group: tuple,
    series: Series,
    every: Series,
    cause: str,
    bounds: tuple,
    rules: Any,
    scan: incident_scan.Scan,
) -> list[Found]:
    """One cause's incidents on one group; ``bounds``: the first window judged, the
    first window of the group's route (its history: a route never seen has no normal
    yet; a new model on a known route is judged from its first request), the last."""
    first, busy_until, last = bounds  # windows up to busy_until are not judged
    out: list[Found] = []
    starts, could, rest = _candidates(series, every, cause, bounds, rules, scan)
    for row, i in enumerate(starts):
        if i <= busy_until:
            continue
        for d in range(rules.span_windows):  # the window alone, then with the next
            if not could[row, d]:
                continue
            j = i + d
            found = _test(series, every, cause, max(i, first), j, rules)
            if found is None:
                continue
            if j > i and rest[row, d] and _test(series, every, cause, i + 1, j, rules) is not None:
                break  # the evidence holds without window i: the onset is later
            found.group = group
            end = follow(series, found, last, rules)
            found.end = None if end < 0 else end
            busy_until = last if end < 0 else end
            out.append(found)
            break
    return out


def sparkline(series: Series, found: Found, last: int, rules: Any) -> list[float]:
    """Missed dollars an hour of the incident's cause per window, from SPARK_BEFORE windows
    before it to SPARK_AFTER after it (or to the newest window)."""
    end = last if found.end is None else min(found.end + SPARK_AFTER, last)
    per_hour = 3600 / rules.window_s
    usd = series.usd.get(found.cause, {})
    return [
        round(usd.get(i, 0.0) * per_hour, 4)
        for i in range(max(found.start - SPARK_BEFORE, 0), end + 1)
    ]
