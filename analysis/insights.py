"""Insights: recurring costs that are the route's normal, not regressions.

A cause that keeps costing money on a group outside every incident of it (the
nightly TTL lapses of a sparse route, fan-out that never warms, routine
compaction) raises no alert: the baseline knows it. It is reported here instead,
per group and cause, with its cost per day, the hours it falls in, the fix that
would remove it and what that fix would save per day. For infrastructure causes
the saving is computed by replaying the stored traffic of the route through the
what-if simulator (``analysis.whatif``) with and without the fix (a 1 h TTL, sticky
routing, a warm-up before fan-out), capped at the cause's cost; a shape cause is
the client's own edit, so fixing it saves all of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from analysis.simulate import ProviderModel
from analysis.whatif import compare

NIGHT = {22, 23, 0, 1, 2, 3, 4, 5}
SHARE = 0.8  # the hours that carry this share of a cost are the ones named
FIXES = {  # what would remove each cause: "<cause> cost $X/day; <fix> would save $Y/day"
    "ttl_expired": "a 1 h TTL (extended retention) or a keep-alive within the TTL",
    "routing": "routing each session (or prefix) to the same replica",
    "concurrent_fanout": "one request to warm the shared prefix before the fan-out",
    "eviction_or_unknown": "more cache capacity, or fewer prompts competing for it",
    "dynamic_value": "moving the changing value after the cached prefix",
    "tools_reordered": "sending the tools in a fixed order",
    "tools_changed": "keeping the tool list fixed within a session",
    "key_order": "serialising schemas with sorted keys",
    "whitespace": "rendering the template with fixed whitespace",
    "system_changed": "keeping the system prompt fixed within a session",
    "history_rewritten": "appending to the history instead of rewriting it",
    "reasoning_dropped": "sending earlier turns' reasoning back unchanged",
    "context_reordered": "keeping retrieved documents in a stable order",
    "model_changed": "keeping a session on one model",
}
LABELS = {
    "ttl_expired": "TTL lapses",
    "routing": "misses on another replica",
    "concurrent_fanout": "fan-out misses",
    "eviction_or_unknown": "evictions",
    "dynamic_value": "changing values in the prefix",
    "history_rewritten": "history rewrites",
}
# Infrastructure causes and the what-if setting that removes them.
SIMULATED = {
    "ttl_expired": {"ttl_s": 3600.0},
    "routing": {"router": "sticky"},
    "concurrent_fanout": {"warmup": True},
}


@dataclass
class Recurring:
    """A cause that costs money on a group outside its incidents."""

    group: dict[str, Any]
    cause: str
    cost_per_day: float
    hours: list[int]
    saving_per_day: float = 0.0
    fix: str = ""

    def when(self) -> str:
        """When it falls: nightly, all day, or the hours (UTC) that carry most of it."""
        night = len(set(self.hours) & NIGHT)
        if night == len(self.hours):
            return "nightly "
        if night >= 0.6 * len(self.hours):
            return "mostly nightly "
        if len(self.hours) >= 12:
            return ""
        return f"{min(self.hours):02d}-{max(self.hours) + 1:02d} UTC "

    def text(self) -> str:
        where = ", ".join(f"{v}" for v in self.group.values())
        cause = LABELS.get(self.cause, self.cause.replace("_", " "))
        line = f"{self.when()}{cause} on {where} cost ${self.cost_per_day:.2f}/day"
        if self.fix:
            line += f"; {self.fix} would save ${self.saving_per_day:.2f}/day"
        return line

    def row(self) -> dict[str, Any]:
        return {
            "group_key": self.group,
            "cause": self.cause,
            "cost_per_day": round(self.cost_per_day, 4),
            "saving_per_day": round(self.saving_per_day, 4),
            "fix": self.fix,
            "hours": self.hours,
            "text": self.text(),
        }


def _inside(found: Iterable[Any], step: timedelta, last: datetime) -> dict[tuple, list]:
    """Per (group, cause): the [start, end) spans of its incidents."""
    spans: dict[tuple, list] = defaultdict(list)
    for alert in found:
        key = (tuple(alert.group.values()), alert.cause)
        spans[key].append((alert.started_at, alert.resolved_at or last + step))
    return spans


def recurring(
    by_cause: pl.DataFrame,
    found: Iterable[Any],
    keys: list[str],
    window_s: int,
    min_usd: float,
    days: float,
) -> list[Recurring]:
    """The groups and causes whose misses outside their incidents cost ``min_usd`` a day
    or more over the ``days`` of stored traffic, costliest first; ``by_cause``: per
    window, group and cause, requests and usd."""
    if not len(by_cause):
        return []
    step = timedelta(seconds=window_s)
    spans = _inside(found, step, by_cause["window"].max())
    costs: dict[tuple, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for row in by_cause.select("window", *keys, "cause", "usd").iter_rows():
        window, group, cause, usd = row[0], tuple(row[1:-2]), row[-2], row[-1] or 0.0
        if any(a <= window < b for a, b in spans.get((group, cause), ())):
            continue
        costs[(group, cause)][window.hour] += usd
    out = []
    for (group, cause), hours in costs.items():
        total = sum(hours.values())
        if total / days < min_usd:
            continue
        named, running = [], 0.0
        for hour, usd in sorted(hours.items(), key=lambda h: -h[1]):
            if running >= SHARE * total:
                break
            named.append(hour)
            running += usd
        out.append(
            Recurring(dict(zip(keys, group, strict=True)), cause, total / days, sorted(named))
        )
    return sorted(out, key=lambda r: -r.cost_per_day)


def saving(found: Recurring, rows: list[dict], model: ProviderModel, days: float) -> None:
    """Fill in the fix of a recurring cost and what it would save a day: replayed through
    the what-if simulator with and without the fix (``rows``: the route's stored
    traffic in time order), or all of it for a shape cause."""
    found.fix = FIXES.get(found.cause, "")
    if found.cause not in SIMULATED:
        shape = found.cause in FIXES and found.cause != "eviction_or_unknown"
        found.saving_per_day = found.cost_per_day if shape else 0.0
        return
    settings = dict(SIMULATED[found.cause])
    warmup = bool(settings.pop("warmup", False))
    before = compare(rows, model)
    after = compare(rows, replace(model, **settings), warmup=warmup)
    saved = sum(b[1].missed_cost_usd for b in before.values()) - sum(
        a[1].missed_cost_usd for a in after.values()
    )
    found.saving_per_day = min(max(saved / days, 0.0), found.cost_per_day)
