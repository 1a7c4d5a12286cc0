"""Alert rules: cached-token drops, p95 TTFT rises, prefix breaks and TTL lapses, per
group, with attribution.

The store aggregates requests per window and group (``collector.store.queries``;
``collector.service.alerts.find`` puts the two together) and this pure core judges
them: each window is compared with a baseline of the windows before it. A rule
fires when the change passes both its absolute and its relative threshold with
enough requests behind it, and resolves when a later window is back within
them; there is at most one open alert per rule and group. The onset rules
(prefix breaks, TTL lapses) read the explanations instead: a miss cause that
starts. Every alert says where the change concentrates (replica, prefix_hash,
prompt_version, schema_version, tools_count), which miss causes dominate its
window, and what it costs per hour.
"""

from __future__ import annotations

import bisect
import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from analysis import causes, providers

ATTRIBUTION = ("replica", "prefix_hash", "prompt_version", "schema_version", "tools_count")
# Shape causes that break a prefix. Healthy append-only traffic produces none of these,
# so a few in one window, where the baseline had none, mean a change shipped.
BREAKS = tuple(c for c in causes.SHAPE_CAUSES if c not in ("identical", "appended"))
# The onset rules: the rule each cause raises when it starts, after a baseline without it
# (for a TTL lapse, with less of it).
# A TTL lapse is news only when its misses alone are a drop the hit-ratio rule would call
# one (``drop_rel`` of the requests): sparse traffic, which the hit-ratio rule has too
# few requests to judge, loses its cache between requests; one user back from lunch
# is not an incident.
ONSETS = {**dict.fromkeys(BREAKS, "prefix_break"), "ttl_expired": "ttl_lapse"}


@dataclass(frozen=True)
class Rules:
    """Thresholds; every field can be set from a TOML file's [alerts] table."""

    window_s: int = 900
    baseline_windows: int = 4
    group_by: tuple[str, ...] = ("route", "request_model")
    drop_abs: float = 0.15  # hit ratio points the window must lose against the baseline
    drop_rel: float = 0.25  # and this share of the baseline's hit ratio
    min_requests: int = 8
    min_prompt_tokens: int = 10_000
    ttft_ratio: float = 1.5  # p95 TTFT must grow this many times
    ttft_abs_ms: float = 200.0  # and by this many milliseconds
    min_ttft_samples: int = 10
    min_breaks: int = 2  # requests an onset cause (shape or TTL) breaks in its first 2 windows

    @classmethod
    def load(cls, path: str | None) -> Rules:
        if not path:
            return cls()
        with open(path, "rb") as handle:
            found = tomllib.load(handle).get("alerts", {})
        unknown = set(found) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown alert settings: {', '.join(sorted(unknown))}")
        if "group_by" in found:
            found["group_by"] = tuple(found["group_by"])
        return replace(cls(), **found)


@dataclass
class Alert:
    """One alert and its lifecycle."""

    rule: str  # cached_drop | ttft_p95_rise | prefix_break | ttl_lapse
    group: dict[str, Any]
    started_at: datetime
    value: float
    baseline: float
    state: str = "firing"
    resolved_at: datetime | None = None
    attribution: dict[str, Any] = field(default_factory=dict)
    top_causes: list[list] = field(default_factory=list)
    cost_per_hour: float = 0.0

    @property
    def id(self) -> str:
        return (
            f"{self.rule}|{json.dumps(self.group, sort_keys=True)}|{self.started_at:%Y%m%dT%H%M%S}"
        )

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
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), id=self.id)


@dataclass(frozen=True)
class Evidence:
    """What the store found about an alert's group. ``dimensions``: per ATTRIBUTION
    column, (value, missed tokens in the alert's first window) over that window and its
    baseline, most missed first; ``causes``: the top three (cause, requests, missed
    tokens) from its start to its resolution; ``missed``: missed tokens in its first
    window."""

    dimensions: dict[str, list[tuple[Any, int | None]]]
    causes: list[tuple[str, int, int | None]]
    missed: int | None


def bounds(alert: Alert, rules: Rules) -> tuple[datetime, datetime, datetime]:
    """The evidence's time bounds: the baseline's start, the alert's first window's start
    and its end."""
    start = alert.started_at
    since = start - timedelta(seconds=rules.window_s * rules.baseline_windows)
    return since, start, start + timedelta(seconds=rules.window_s)


def _baselined(frame: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Each window beside the sums of the ``baseline_windows`` windows before it."""
    k, keys = rules.baseline_windows, list(rules.group_by)
    frame = frame.sort([*keys, "window"], nulls_last=True)
    shifted = {
        c: pl.col(c).shift(1).rolling_sum(k, min_samples=1).over(keys)
        for c in ("requests", "prompt", "cached")
    }
    return frame.with_columns(
        base_requests=shifted["requests"],
        base_prompt=shifted["prompt"],
        base_cached=shifted["cached"],
        base_p95=pl.col("p95").shift(1).rolling_median(k, min_samples=1).over(keys),
        ratio=pl.col("cached") / pl.col("prompt"),
    ).with_columns(base_ratio=pl.col("base_cached") / pl.col("base_prompt"))


def _breaches(frame: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    drop = pl.col("base_ratio") - pl.col("ratio")
    cached_drop = (
        (drop >= rules.drop_abs)
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


def judge(
    counted: pl.DataFrame, breaks: pl.DataFrame, last: datetime | None, rules: Rules
) -> list[Alert]:
    """Every alert, oldest first, with its lifecycle, from the store's per-window counts
    (``counted``: requests, tokens, p95 TTFT per window and group), the requests each
    onset cause broke (``breaks``) and the time of the newest request (``last``)."""
    frame = _breaches(_baselined(counted, rules), rules)
    found = [
        *_lifecycle(frame, rules, "cached_drop", "ratio", "base_ratio"),
        *_lifecycle(frame, rules, "ttft_p95_rise", "p95", "base_p95"),
    ]
    return sorted(found + onsets(breaks, last, rules, counted), key=lambda a: a.started_at)


def _lifecycle(frame: pl.DataFrame, rules: Rules, rule: str, value: str, base: str) -> list[Alert]:
    """One rule's alerts per group: each opens at a breaching window while none is open and
    resolves at the next window that does not breach and has enough requests to say so."""
    keys = list(rules.group_by)
    settles = (
        frame.filter(~pl.col(rule) & (pl.col("requests") >= rules.min_requests))
        .group_by(keys)
        .agg(pl.col("window").sort())
    )
    resolving = {tuple(r[:-1]): r[-1] for r in settles.rows()}
    busy: dict[tuple, datetime | None] = {}  # group ─► the open alert's resolution
    out = []
    for row in frame.filter(pl.col(rule)).sort("window").iter_rows(named=True):
        group = tuple(row[k] for k in keys)
        if group in busy and (busy[group] is None or row["window"] < busy[group]):
            continue
        alert = Alert(
            rule, dict(zip(keys, group, strict=True)), row["window"], row[value], row[base]
        )
        later = resolving.get(group, [])
        i = bisect.bisect_right(later, row["window"])
        if i < len(later):
            alert.state, alert.resolved_at = "resolved", later[i]
        busy[group] = alert.resolved_at
        out.append(alert)
    return out


def onsets(
    frame: pl.DataFrame, last: datetime | None, rules: Rules, windows_: pl.DataFrame
) -> list[Alert]:
    """Alerts for a cause that starts (``ONSETS``): it breaks at least ``min_breaks``
    requests in a window and the next, where the baseline windows had none. A TTL lapse
    must miss ``drop_rel`` of the requests in those two windows (as ``windows_`` counts
    them), and its baseline may have missed up to that share: a night can lapse now and
    then before its lapses become the rule. The alert starts at the onset and resolves at
    the first window (of stored traffic, up to ``last``) where the cause breaks none.
    ``frame``: per window, group and cause, the requests it broke and how many it broke
    in the ``baseline_windows`` before."""
    if not len(frame):
        return []
    step = timedelta(seconds=rules.window_s)
    keys = list(rules.group_by)
    counts = {(*k, w): n for *k, w, n in windows_.select(*keys, "window", "requests").rows()}

    def requests(group: tuple, first: datetime, n: int) -> int:
        return sum(counts.get((*group, first + i * step), 0) for i in range(n))

    out = []
    for key, rows in frame.group_by([*keys, "cause"], maintain_order=True):
        group = dict(zip([*keys, "cause"], key, strict=True))
        broken = {r["window"]: r["broken"] for r in rows.iter_rows(named=True)}
        share = rules.drop_rel if group["cause"] == "ttl_expired" else 0.0
        end = None  # of the last alert: the next starts after it
        for r in rows.iter_rows(named=True):
            onset, k = r["window"], rules.baseline_windows
            count = broken[onset] + broken.get(onset + step, 0)
            if (
                (end and onset < end)
                or r["before"] > share * requests(key[:-1], onset - k * step, k)
                or count < rules.min_breaks
                or count < share * requests(key[:-1], onset, 2)
            ):
                continue
            alert = Alert(ONSETS[group["cause"]], group, onset, float(count), 0.0)
            end = onset + step
            while end in broken:
                end += step
            if end <= last:
                alert.state, alert.resolved_at = "resolved", end
            out.append(alert)
    return out


def attribute(alert: Alert, evidence: Evidence, rules: Rules, table: dict) -> None:
    """Fill in where the alert's misses concentrate, its top causes (its own cause first,
    for an onset alert) and its cost per hour, from what the store found about it."""
    for dim, values in evidence.dimensions.items():
        # One value before and during the window explains nothing; one value that
        # carries twice the misses of any other does.
        if len(values) > 1 and values[0][1] and values[0][1] >= 2 * (values[1][1] or 0):
            alert.attribution[dim] = values[0][0]
    alert.top_causes = [list(c) for c in evidence.causes]
    if "cause" in alert.group:
        alert.top_causes.sort(key=lambda c: c[0] != alert.group["cause"])
    model = alert.group.get("request_model")
    missed_usd = providers.missed_cost_usd(table, model, evidence.missed or 0)
    alert.cost_per_hour = round(missed_usd * (3600 / rules.window_s), 4)


def slack_text(alert: Alert) -> str:
    """One line a chat channel can show."""
    group = ", ".join(f"{k}={v}" for k, v in alert.group.items())
    what = {
        "cached_drop": f"hit ratio {alert.baseline:.0%} → {alert.value:.0%}",
        "ttft_p95_rise": f"p95 TTFT {alert.baseline:.0f} → {alert.value:.0f} ms",
        "prefix_break": f"{alert.value:.0f} requests broke their prefix in its first two "
        "windows, none in the windows before",
        "ttl_lapse": f"{alert.value:.0f} requests found their prefix expired in its first two "
        "windows, the TTL having run out between requests",
    }[alert.rule]
    cause = alert.top_causes[0][0] if alert.top_causes else "unexplained"
    return (
        f"[{alert.state}] {alert.rule} on {group}: {what} since {alert.started_at:%H:%M} "
        f"UTC; top cause {cause}; ~${alert.cost_per_hour:.2f}/h"
    )
