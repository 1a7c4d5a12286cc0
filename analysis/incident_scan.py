"""Which spans of windows could show a cause regressing, for every span of a group at
once: the first, necessary checks of ``incident_rules._test`` (enough requests broken;
a Poisson tail under ``alpha`` at the baseline rate) over dense prefix sums, so that
the exact test runs only on the few spans these do not rule out.

Conservative by construction: a span ruled out here always fails the exact test.
The count check is exact (integers); the tail check compares a *lower bound* of the
tail with ``alpha`` plus a margin far above any rounding error:

- at or below the mean less one, the tail is at least one half (the Poisson median is
  at least ``mean - ln 2``, Choi 1994);
- above it, ``P(X >= k) >= sum_{t<=T} pmf(k + t) >= pmf(k) * sum_{t<=T} r**t`` with
  ``r = mean / (k + T)``, since each step multiplies the pmf by ``mean / (k + t + 1)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MARGIN = 1e-6  # relative: rule a span out only when its tail is this much above alpha


class Dense:
    """Prefix sums of one series' counts over windows 0..size-1 (window index ─► count);
    ``sum(lo, hi)`` is the same arithmetic as ``incident_rules._window_sum``."""

    def __init__(self, values: dict[int, Any], size: int) -> None:
        dense = np.zeros(size, dtype=np.int64)
        if values:
            keys = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
            dense[keys] = np.fromiter(values.values(), dtype=np.int64, count=len(values))
        self.prefix = np.concatenate(([0], np.cumsum(dense)))
        self.size = size

    def sum(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per (lo, hi): the sum over window indexes lo..hi inclusive."""
        top = self.prefix[np.clip(hi + 1, 0, self.size)]
        return top - self.prefix[np.clip(lo, 0, self.size)]


def _span_sums(
    req: Dense, cnt: Dense, every: tuple[Dense, Dense], lo: np.ndarray, hi: np.ndarray, rules: Any
) -> tuple[np.ndarray, ...]:
    """Per span: the cause's breaks and the requests over its baseline windows, for the
    group and for all groups (``incident_rules.baseline_span``, then ``sums``)."""
    per_day = 86_400 // rules.window_s
    totals = [np.zeros(len(lo), dtype=np.int64) for _ in range(4)]
    seen = np.zeros(len(lo), dtype=bool)
    for days in rules.seasonal_days:
        slo, shi = lo - days * per_day - 1, hi - days * per_day + 1
        ok = (shi >= 0) & (req.sum(slo, shi) >= rules.seasonal_min_requests)
        seen |= ok
        for total, dense in zip(totals, (cnt, req, *every), strict=True):
            total += np.where(ok, dense.sum(slo, shi), 0)
    blo, bhi = lo - rules.baseline_windows, lo - 1
    for total, dense in zip(totals, (cnt, req, *every), strict=True):
        total[:] = np.where(seen, total, dense.sum(blo, bhi))
    return tuple(totals)


def _tail_floor(k: np.ndarray, mean: np.ndarray, lgamma: np.ndarray) -> np.ndarray:
    """A lower bound of P(X >= k), X ~ Poisson(mean), per element (k >= 1); ``lgamma``:
    log(n!) for n up to max(k) at least."""
    floor = np.zeros(len(k))
    low = k <= mean - 1
    floor[low] = 0.5
    upper = ~low & (mean > 0)
    kk, mm = k[upper].astype(np.float64), mean[upper]
    steps = np.ceil(np.sqrt(mm)) + 2
    ratio = mm / (kk + steps)
    pmf = np.exp(-mm + kk * np.log(mm) - lgamma[k[upper]])
    floor[upper] = pmf * (1 - ratio ** (steps + 1)) / (1 - ratio)
    return floor


class Scan:
    """One evaluation's dense prefix sums (built once per series dict) and the check."""

    def __init__(self, rules: Any, size: int) -> None:
        self.rules, self.size = rules, size
        self.dense: dict[int, tuple[dict, Dense]] = {}
        self.lgamma = np.zeros(0)  # log(n!) by n

    def _log_factorials(self, most: int) -> np.ndarray:
        if most >= len(self.lgamma):
            more = [math.lgamma(n + 1) for n in range(len(self.lgamma), 2 * most + 1)]
            self.lgamma = np.concatenate((self.lgamma, more))
        return self.lgamma

    def _of(self, values: dict) -> Dense:
        found = self.dense.get(id(values))
        if found is None or found[0] is not values:
            found = self.dense[id(values)] = (values, Dense(values, self.size))
        return found[1]

    def could_regress(
        self, series: Any, every: Any, cause: str, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """Per span lo..hi (arrays of window indexes): False where
        ``incident_rules._test`` surely finds no regression of ``cause`` on the group
        of ``series`` (``every``: all groups' series)."""
        rules = self.rules
        req, cnt = self._of(series.requests), self._of(series.counts[cause])
        observed = cnt.sum(lo, hi)
        everywhere = (self._of(every.counts[cause]), self._of(every.requests))
        n, base, all_n, all_base = _span_sums(req, cnt, everywhere, lo, hi, rules)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            prior = (all_n + 0.5) / (all_base + rules.prior_requests)
            rate = (n + rules.prior_requests * prior) / (base + rules.prior_requests)
            mean = rate * req.sum(lo, hi)
            most = int(observed.max(initial=0))
            finite = np.where(np.isfinite(mean), mean, 0.0)
            floor = _tail_floor(observed, finite, self._log_factorials(most))
        enough = observed >= max(rules.min_count, rules.min_breaks)
        unsure = ~np.isfinite(mean)  # the exact test meets (and raises on) what this cannot
        return enough & ((floor <= rules.alpha * (1 + MARGIN)) | unsure)
