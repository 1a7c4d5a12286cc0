"""Alert rules: one incident per change on a group, judged against the group's own
normal, ranked by what it costs.

The store counts requests, tokens, p95 TTFT and the misses of each cause per
window and group (``collector.store.alerts``; ``collector.service.alerts.find``
puts it together) and this pure core judges them. The four rules are the
*signals* an incident carries:

- ``prefix_break``: a shape cause (``BREAKS``) regresses on the group;
- ``ttl_lapse``: ``ttl_expired`` regresses (a nightly lapse that recurs at its
  usual rate is the route's normal, reported as an insight, not an alert);
- ``cached_drop``: the hit ratio drops (``drop_abs`` and ``drop_rel`` below the
  baseline, with ``min_requests`` and ``min_prompt_tokens`` behind it), or an
  infrastructure cause (routing, eviction, fan-out) regresses;
- ``ttft_p95_rise``: p95 TTFT grows ``ttft_ratio`` times and ``ttft_abs_ms``
  over its baseline with ``min_ttft_samples`` behind it.

A cause regresses as ``analysis.incident_rules`` says (baseline at the same
hour yesterday / last week when stored, else the windows before; counts with a
minimum of evidence; excess missed dollars an hour). Signals of one group at
the same time join the incident of the cause they come with; incidents of
different causes stay apart; each resolves when its cause is back at baseline.
A hit-ratio drop or TTFT rise with no cause regressing opens an incident of the
window's costliest cause (``unexplained`` without explanations) when the money
passes ``min_usd_per_hour`` too. Each incident says where it concentrates,
its top causes, its excess cost per hour and a sparkline.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from analysis import causes, providers

ATTRIBUTION = ("replica", "prefix_hash", "prompt_version", "schema_version", "tools_count")
# Shape causes that break a prefix: a regression of one is a ``prefix_break``.
BREAKS = tuple(c for c in causes.SHAPE_CAUSES if c not in ("identical", "appended"))
ONSETS = {**dict.fromkeys(BREAKS, "prefix_break"), "ttl_expired": "ttl_lapse"}
NOT_MISSES = ("no_miss", "below_minimum", "cold_start", "identical", "appended")
UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Rules:
    """Thresholds; every field can be set from a TOML file's [alerts] table."""

    window_s: int = 900  # one window, seconds: the unit every count below is per
    baseline_windows: int = 8  # windows before a window that make its baseline
    group_by: tuple[str, ...] = ("route", "request_model")  # one incident stream per group
    # cached_drop (hit ratio): the window must lose drop_abs points and drop_rel of the
    # baseline ratio, over min_requests requests and min_prompt_tokens prompt tokens
    drop_abs: float = 0.15
    drop_rel: float = 0.25
    drop_sigma: float = 3.0  # and this many standard deviations of the baseline's ratios
    dearer: float = 2.0  # explained misses: a drop counts when each costs this many times more
    min_requests: int = 8
    min_prompt_tokens: int = 10_000
    ttft_ratio: float = 1.5  # ttft_p95_rise: p95 TTFT grows this many times
    ttft_abs_ms: float = 200.0  # and by this many milliseconds
    min_ttft_samples: int = 10  # over at least this many requests with a TTFT
    min_breaks: int = 2  # the old onset minimum: the evidence minimum is max(it, min_count)
    # A cause regresses: at least min_count requests broken in a window (alone or with
    # the next ones, span_windows in all), a Poisson tail under alpha at the baseline
    # rate, and the excess misses costing min_usd_per_hour (missed-token dollars above
    # the baseline's). The baseline rate is shrunk toward the cause's rate over all
    # groups by prior_requests pseudo-requests (sparse routes: counts, not only ratios).
    min_count: int = 3
    span_windows: int = 3  # evidence may span this many windows (sparse routes)
    alpha: float = 3e-3
    min_usd_per_hour: float = 0.004
    prior_requests: float = 20.0
    # Counts that vary more than Poisson in the baseline (bursts) are judged in bursts:
    # the test divides both counts by that overdispersion, at most this much.
    max_dispersion: float = 4.0
    # Baseline by time of day: the same hour this many days before, where the group had
    # seasonal_min_requests requests then; else the baseline_windows windows before.
    seasonal_days: tuple[int, ...] = (1, 7)
    seasonal_min_requests: int = 10
    # The route's normal cause mix: a cause's rate over this many windows before (a day)
    # is its usual rate too; the higher of the two is the baseline. Only the windows with
    # at least mix_density times the judged windows' requests a window count: the mix at
    # this traffic level (lapses usual at night are news in a busy hour).
    mix_windows: int = 96
    mix_density: float = 0.5
    warmup_windows: int = 2  # windows of stored traffic before the first judged
    # Resolution: the cause back at its baseline rate (Poisson tail above resolve_alpha)
    # for resolve_windows windows that had requests.
    resolve_alpha: float = 0.05
    resolve_windows: int = 2
    # Insights: recurring costs of a cause outside incidents, at least this a day.
    min_insight_usd_per_day: float = 0.05

    @classmethod
    def load(cls, path: str | None) -> Rules:
        if not path:
            return cls()
        with open(path, "rb") as handle:
            found = tomllib.load(handle).get("alerts", {})
        unknown = set(found) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown alert settings: {', '.join(sorted(unknown))}")
        for key in ("group_by", "seasonal_days"):
            if key in found:
                found[key] = tuple(found[key])
        return replace(cls(), **found)


@dataclass
class Alert:
    """One incident and its lifecycle: a cause on a group, with its signals."""

    rule: str  # its first signal: cached_drop | ttft_p95_rise | prefix_break | ttl_lapse
    group: dict[str, Any]
    started_at: datetime
    value: float
    baseline: float
    state: str = "firing"
    resolved_at: datetime | None = None
    attribution: dict[str, Any] = field(default_factory=dict)
    top_causes: list[list] = field(default_factory=list)
    cost_per_hour: float = 0.0  # excess missed dollars an hour, over the incident
    cause: str = UNEXPLAINED
    signals: list[dict[str, Any]] = field(default_factory=list)
    sparkline: list[float] = field(default_factory=list)  # cause's missed $/h per window

    @property
    def id(self) -> str:
        group = json.dumps(self.group, sort_keys=True)
        return f"{self.cause}|{group}|{self.started_at:%Y%m%dT%H%M%S}"

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "group_key": json.dumps(self.group),
            "state": self.state,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
            "value": self.value,
            "baseline": self.baseline,
            "attribution": json.dumps(self.attribution, default=str),
            "top_causes": json.dumps(self.top_causes),
            "cost_per_hour": self.cost_per_hour,
            "updated_at": self.resolved_at or self.started_at,
            "cause": self.cause,
            "signals": json.dumps(self.signals, default=str),
            "sparkline": json.dumps(self.sparkline),
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), id=self.id)


@dataclass(frozen=True)
class Evidence:
    """What the store found about an incident's group. ``dimensions``: per ATTRIBUTION
    column, (value, missed tokens in the incident's first window) over that window and
    its baseline, most missed first; ``causes``: the top three (cause, requests, missed
    dollars) from its start to its resolution; ``missed``: missed tokens in its first
    window."""

    dimensions: dict[str, list[tuple[Any, int | None]]]
    causes: list[tuple[str, int, float | None]]
    missed: int | None


def bounds(alert: Alert, rules: Rules) -> tuple[datetime, datetime, datetime]:
    """The evidence's time bounds: the baseline's start, the incident's first window's
    start and its end."""
    start = alert.started_at
    since = start - timedelta(seconds=rules.window_s * rules.baseline_windows)
    return since, start, start + timedelta(seconds=rules.window_s)


def attribute(alert: Alert, evidence: Evidence, rules: Rules, table: dict) -> None:
    """Fill in where the incident's misses concentrate and its top causes (its own cause
    first); its cost per hour comes from the evidence when the judge had none."""
    for dim, values in evidence.dimensions.items():
        # One value before and during the window explains nothing; one value that
        # carries twice the misses of any other does.
        if len(values) > 1 and values[0][1] and values[0][1] >= 2 * (values[1][1] or 0):
            alert.attribution[dim] = values[0][0]
    alert.top_causes = [list(c) for c in evidence.causes]
    if alert.cause != UNEXPLAINED:
        if alert.cause not in [c[0] for c in alert.top_causes]:
            alert.top_causes.insert(0, [alert.cause, int(alert.value), None])
        alert.top_causes.sort(key=lambda c: c[0] != alert.cause)
    alert.top_causes = alert.top_causes[:3]
    if not alert.cost_per_hour:
        model = alert.group.get("request_model")
        missed_usd = providers.missed_cost_usd(table, model, evidence.missed or 0)
        alert.cost_per_hour = round(missed_usd * (3600 / rules.window_s), 4)


_WHAT = {
    "cached_drop": "hit ratio {baseline:.0%} → {value:.0%}",
    "ttft_p95_rise": "p95 TTFT {baseline:.0f} → {value:.0f} ms",
    "prefix_break": "{value:.0f} requests broke their prefix where {baseline:.1f} were usual",
    "ttl_lapse": "{value:.0f} requests found their prefix expired where {baseline:.1f} were usual",
    # a traffic cause's incident whose hit ratio did not drop (its signal's ``unit``)
    "misses": "{value:.0f} requests missed where {baseline:.1f} were usual",
}


def slack_text(alert: Alert) -> str:
    """One line a chat channel can show."""
    group = ", ".join(f"{k}={v}" for k, v in alert.group.items())
    first = alert.signals[0] if alert.signals else {}
    what = _WHAT[first.get("unit", alert.rule)].format(value=alert.value, baseline=alert.baseline)
    more = sorted({s["rule"] for s in alert.signals} - {alert.rule})
    also = f" (also {', '.join(more)})" if more else ""
    return (
        f"[{alert.state}] {alert.rule} on {group}: {what}{also} since "
        f"{alert.started_at:%H:%M} UTC; cause {alert.cause}; "
        f"~${alert.cost_per_hour:.2f}/h above baseline"
    )
