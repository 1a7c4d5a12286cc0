"""The judge: per-cause incidents (``analysis.incident_rules``) with the hit-ratio and
TTFT signals of their group joined to them, as ``analysis.alerts.Alert`` objects.

A hit-ratio drop or a TTFT rise (the old window-against-baseline rules, see
``Rules``) joins an incident of its group open at that window (or starting the
window after). With none open, a TTFT rise opens one of its own: its cause is
the one whose misses in that window most exceed their baseline (``unexplained``
when none does). A hit-ratio drop opens one only when the window's misses are
not explained, or cost ``dearer`` times more each than the baseline's (else the
causes speak for them: none regressed, so the drop is the route's usual
variation), and when it costs ``min_usd_per_hour`` above the baseline's missed
dollars.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import polars as pl

from analysis import incident_rules as ir
from analysis import providers
from analysis.alerts import NOT_MISSES, ONSETS, UNEXPLAINED, Alert, Rules


def _indexed(frame: pl.DataFrame, index: ir.Index) -> pl.DataFrame:
    """``frame`` with ``i``: its window's index (``index.of``, for every row at once)."""
    step = index.step * 1_000_000
    since = (pl.col("window") - pl.lit(index.t0)).dt.total_microseconds()
    return frame.with_columns(i=since // step)


def _by_window(frame: pl.DataFrame, column: str) -> dict[int, Any]:
    return dict(zip(frame["i"].to_list(), frame[column].to_list(), strict=True))


def _series(
    counted: pl.DataFrame, by_cause: pl.DataFrame, keys: list[str], index: ir.Index
) -> tuple[dict[tuple, ir.Series], ir.Series]:
    """Per group, and over all groups, the requests and each cause's misses per window."""
    groups: dict[tuple, ir.Series] = defaultdict(ir.Series)
    every = ir.Series()
    counted = _indexed(counted.select("window", *keys, "requests"), index)
    for group, part in counted.partition_by(keys, as_dict=True).items():
        groups[group].requests = _by_window(part, "requests")
    total = counted.group_by("i").agg(pl.col("requests").sum())
    every.requests = _by_window(total, "requests")
    if not len(by_cause):
        return groups, every
    cols = by_cause.select("window", *keys, "cause", "requests", pl.col("usd").fill_null(0.0))
    cols = _indexed(cols.filter(~pl.col("cause").is_in(NOT_MISSES)), index)
    for (*group, cause), part in cols.partition_by([*keys, "cause"], as_dict=True).items():
        series = groups[tuple(group)]
        series.counts[cause] = _by_window(part, "requests")
        series.usd[cause] = _by_window(part, "usd")
    total = cols.group_by("cause", "i").agg(pl.col("requests").sum())
    for (cause,), part in total.partition_by("cause", as_dict=True).items():
        every.counts[cause] = _by_window(part, "requests")
    return groups, every


class _Stats:
    """Per group and window index, the window statistics of ``_windows``, read as a dict
    only when asked for."""

    def __init__(self, frame: pl.DataFrame, keys: list[str], index: ir.Index) -> None:
        frame = _indexed(frame, index)
        self.cols = {c: frame[c].to_list() for c in frame.columns}
        self.at: dict[tuple, dict[int, int]] = defaultdict(dict)
        groups = zip(*(self.cols[k] for k in keys), strict=True) if keys else iter(())
        for pos, (group, i) in enumerate(zip(groups, self.cols["i"], strict=False)):
            self.at[group][i] = pos
        # in the frame's order (by group, then window): the order the signals are met in
        flagged = frame.filter(pl.col("cached_drop") | pl.col("ttft_p95_rise"))
        self.flagged = flagged.select(*keys, "i", *_SIGNAL).rows()

    def row(self, group: tuple, i: int) -> dict[str, Any] | None:
        pos = self.at.get(group, {}).get(i)
        return None if pos is None else {c: v[pos] for c, v in self.cols.items()}

    def later(self, group: tuple, i: int) -> list[int]:
        return sorted(w for w in self.at.get(group, {}) if w > i)


def _windows(frame: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Each window beside the sums of the ``baseline_windows`` windows before it, and
    whether its hit ratio dropped or its p95 TTFT rose."""
    k, keys = rules.baseline_windows, list(rules.group_by)
    frame = frame.sort([*keys, "window"], nulls_last=True)
    shifted = {
        c: pl.col(c).shift(1).rolling_sum(k, min_samples=1).over(keys)
        for c in ("requests", "prompt", "cached")
    }
    frame = frame.with_columns(
        base_requests=shifted["requests"],
        base_prompt=shifted["prompt"],
        base_cached=shifted["cached"],
        base_p95=pl.col("p95").shift(1).rolling_median(k, min_samples=1).over(keys),
        ratio=pl.col("cached") / pl.col("prompt"),
    ).with_columns(
        base_ratio=pl.col("base_cached") / pl.col("base_prompt"),
        base_spread=pl.col("ratio").shift(1).rolling_std(k, min_samples=2).over(keys),
    )
    drop = pl.col("base_ratio") - pl.col("ratio")
    cached_drop = (
        (drop >= rules.drop_abs)
        & (drop >= rules.drop_sigma * pl.col("base_spread").fill_null(0.0))
        & (drop >= rules.drop_rel * pl.col("base_ratio"))
        & (pl.col("requests") >= rules.min_requests)
        & (pl.col("prompt") >= rules.min_prompt_tokens)
        & (pl.col("base_requests") >= rules.min_requests)
    )
    ttft_rise = (
        (pl.col("p95") >= rules.ttft_ratio * pl.col("base_p95"))
        & (pl.col("p95") - pl.col("base_p95") >= rules.ttft_abs_ms)
        & (pl.col("samples") >= rules.min_ttft_samples)
    )
    return frame.with_columns(
        cached_drop=cached_drop.fill_null(False), ttft_p95_rise=ttft_rise.fill_null(False)
    )


_SIGNAL = {"cached_drop": ("ratio", "base_ratio"), "ttft_p95_rise": ("p95", "base_p95")}


class _Judge:
    """One evaluation's state: the series, the window statistics, the incidents."""

    def __init__(
        self, counted: pl.DataFrame, by_cause: pl.DataFrame, rules: Rules, table: dict
    ) -> None:
        self.rules, self.table, self.keys = rules, table, list(rules.group_by)
        self.index = ir.Index(counted["window"].min(), rules.window_s)
        self.last = self.index.of(counted["window"].max())
        self.groups, self.every = _series(counted, by_cause, self.keys, self.index)
        self.stats = _Stats(_windows(counted, rules), self.keys, self.index)
        self.found: dict[tuple, list[ir.Found]] = defaultdict(list)

    def run(self) -> list[Alert]:
        first = self.rules.warmup_windows
        for found in ir.cause_incidents(self.groups, self.every, first, self.last, self.rules):
            found.signals.append(self._cause_signal(found))
            self.found[found.group].append(found)
        n = len(self.keys)
        for row in self.stats.flagged:
            i, flags = row[n], row[n + 1 :]
            for rule, flag in zip(_SIGNAL, flags, strict=True):
                if flag and i >= first:
                    self._window_signal(row[:n], i, rule)
        return sorted(
            (self._alert(f) for fs in self.found.values() for f in fs),
            key=lambda a: (a.started_at, a.cause),
        )

    def _signal(self, rule: str, i: int, value: float, baseline: float) -> dict[str, Any]:
        at = self.index.at(i).isoformat()
        return {"rule": rule, "value": value, "baseline": baseline, "at": at}

    def _cause_signal(self, found: ir.Found) -> dict[str, Any]:
        """A shape or TTL cause's signal in requests; a traffic cause's in hit ratio
        when the ratio dropped, else in its misses (``unit``): a route whose usual
        misses ebbed can gain hits while one cause's misses rise."""
        rule = ONSETS.get(found.cause, "cached_drop")
        counted = self._signal(rule, found.onset, found.observed, round(found.expected, 2))
        if rule != "cached_drop":
            return counted
        row = self.stats.row(found.group, found.onset) or {}
        ratio, base = row.get("ratio"), row.get("base_ratio")
        if ratio is not None and base is not None and ratio < base:
            return self._signal(rule, found.onset, ratio, base)
        return dict(counted, unit="misses")

    def _window_signal(self, group: tuple, i: int, rule: str) -> None:
        row = self.stats.row(group, i)
        value, base = (row[c] for c in _SIGNAL[rule])
        signal = self._signal(rule, i, value, base)
        for found in self.found[group]:
            end = self.last if found.end is None else found.end
            if found.start - 1 <= i <= end:
                if rule not in {s["rule"] for s in found.signals}:
                    found.signals.append(signal)
                return
        found = self._standalone(group, i, rule)
        if found is not None:
            found.signals.append(signal)
            self.found[group].append(found)

    def _excess(self, group: tuple, i: int) -> tuple[str, float]:
        """The cause whose misses in window i most exceed its baseline, and that excess
        in dollars an hour (``UNEXPLAINED``, 0 when none exceeds it)."""
        series, best = self.groups[group], (UNEXPLAINED, 0.0)
        n = series.requests.get(i, 0)
        spans = ir.baseline_span(series, i, self.rules)
        base_n = ir.sums(series.requests, spans) or 1
        for cause, usd in series.usd.items():
            excess = usd.get(i, 0.0) - ir.sums(usd, spans) / base_n * n
            excess *= 3600 / self.rules.window_s
            if excess > best[1]:
                best = (cause, excess)
        return best

    def _standalone(self, group: tuple, i: int, rule: str) -> ir.Found | None:
        series = self.groups[group]
        if rule == "cached_drop" and not self._dearer(series, i):
            return None  # explained misses, no cause regressed, none costlier: noise
        cause, excess = self._excess(group, i)
        if rule == "cached_drop":
            excess = max(excess, self._missed_excess(group, i))
            if excess < self.rules.min_usd_per_hour:
                return None
        rate = 0.0
        if cause != UNEXPLAINED:
            spans = ir.baseline_span(series, i, self.rules)
            rate = ir.rate_of(series, self.every, cause, spans, self.rules)
        found = ir.Found(group, cause, i, i, rate, 0, 0.0, excess)
        end = self._settles(group, i, rule) if cause == UNEXPLAINED else None
        if cause != UNEXPLAINED:
            end = ir.follow(series, found, self.last, self.rules)
        found.end = None if end is None or end < 0 else end
        return found

    def _dearer(self, series: ir.Series, i: int) -> bool:
        """Whether window i's misses are unexplained, or cost ``dearer`` times more each
        than the baseline's (the same causes breaking the prefix earlier: more missed
        tokens a miss, where counting misses sees no change)."""
        misses = sum(counts.get(i, 0) for counts in series.counts.values())
        if not misses:
            return True
        spans = ir.baseline_span(series, i, self.rules)
        base = sum(ir.sums(counts, spans) for counts in series.counts.values())
        if not base:
            return False  # the causes' own tests judge misses new to the group
        usd = sum(u.get(i, 0.0) for u in series.usd.values()) / misses
        base_usd = sum(ir.sums(u, spans) for u in series.usd.values()) / base
        return usd >= self.rules.dearer * base_usd

    def _missed_excess(self, group: tuple, i: int) -> float:
        """Missed prompt tokens of window i above the baseline's share, in dollars an
        hour at the group's model's price (for traffic that was not explained)."""
        row = self.stats.row(group, i)
        base = (row["base_prompt"] or 0) - (row["base_cached"] or 0)
        share = base / row["base_requests"] if row["base_requests"] else 0.0
        tokens = row["prompt"] - row["cached"] - share * row["requests"]
        model = dict(zip(self.keys, group, strict=True)).get("request_model")
        usd = providers.missed_cost_usd(self.table, model, max(tokens, 0))
        return usd * 3600 / self.rules.window_s

    def _settles(self, group: tuple, i: int, rule: str) -> int:
        """The first later window that does not breach ``rule`` with enough requests."""
        cols, at = self.stats.cols, self.stats.at.get(group, {})
        for j in self.stats.later(group, i):
            if not cols[rule][at[j]] and cols["requests"][at[j]] >= self.rules.min_requests:
                return j
        return -1

    def _alert(self, found: ir.Found) -> Alert:
        first = found.signals[0]
        end = found.end
        alert = Alert(
            first["rule"],
            dict(zip(self.keys, found.group, strict=True)),
            self.index.at(found.start),
            first["value"],
            first["baseline"],
            cause=found.cause,
            signals=found.signals,
            cost_per_hour=round(found.usd_per_hour, 4),
        )
        if end is not None:
            alert.state, alert.resolved_at = "resolved", self.index.at(end)
        series = self.groups[found.group]
        alert.sparkline = ir.sparkline(series, found, self.last, self.rules)
        return alert


def judge(
    counted: pl.DataFrame, by_cause: pl.DataFrame, rules: Rules, table: dict | None = None
) -> list[Alert]:
    """Every incident, oldest first, with its lifecycle and signals, from the store's
    per-window counts (``counted``: window, group, requests, prompt, cached, p95,
    samples) and the misses of each cause (``by_cause``: window, group, cause,
    requests, usd)."""
    if not len(counted):
        return []
    try:
        return _Judge(counted, by_cause, rules, table or providers.load_table()).run()
    finally:
        ir.forget()
