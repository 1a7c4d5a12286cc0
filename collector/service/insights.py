"""Insights: the recurring costs of each group's normal (``analysis.insights``), each with
its fix and what the what-if simulator says the fix would save; reads only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import duckdb
import polars as pl

from analysis import alert_judge, insights, providers
from analysis import alerts as rules_mod
from analysis.simulate import ProviderModel
from collector.service import whatif
from collector.store import alerts as queries

# Newest requests of a group a saving is replayed over: the simulator serves a few
# thousand a second, and a server finds insights while it answers everything else.
SAVING_ROWS = 5_000


def _model(provider: str | None, model: str | None, replicas: int, cause: str) -> ProviderModel:
    """The simulated provider as the traffic saw it: the provider's TTL and minimum,
    round-robin routing when the misses were routing, else sticky."""
    router = "round_robin" if cause == "routing" else "sticky"
    table = providers.load_table()
    if provider in table.get("profiles", {}):
        # the replay carries no breakpoints: entries at block boundaries, as elsewhere
        return ProviderModel.of(
            provider, model, replicas=replicas, router=router, breakpoints=False
        )
    return ProviderModel(replicas=replicas, router=router)


def find(
    cur: duckdb.DuckDBPyConnection,
    rules: rules_mod.Rules | None = None,
    table: dict | None = None,
    simulate: bool = True,
) -> list[dict[str, Any]]:
    """Recurring costs, costliest first: group_key, cause, cost_per_day, saving_per_day,
    fix, hours and text. ``simulate`` False skips the what-if replays (no savings for
    infrastructure causes)."""
    rules = rules or rules_mod.Rules()
    table = table or providers.load_table()
    counted = queries.alert_windows(cur, rules.window_s, rules.group_by)
    by_cause = queries.alert_causes(cur, rules.window_s, rules.group_by)
    found = alert_judge.judge(counted, by_cause, rules, table)
    if not len(counted):
        return []
    span = counted["window"].max() - counted["window"].min()
    days = max(span.total_seconds() / 86400 + rules.window_s / 86400, 1 / 24)
    keys, least = list(rules.group_by), rules.min_insight_usd_per_day
    out = insights.recurring(by_cause, found, keys, rules.window_s, least, days)
    for item in out:
        if not simulate and item.cause in insights.SIMULATED:
            item.fix = insights.FIXES[item.cause]
            continue
        rows, provider, replicas = queries.group_traffic(cur, item.group, rules.group_by)
        model = _model(provider, item.group.get("request_model"), replicas, item.cause)
        sample, span = _newest(rows, days)
        insights.saving(item, sample, model, span)
    return [item.row() for item in out]


class _Paced(list):
    """Rows that, replayed, pause every YIELD_EVERY of them as the what-if worker does,
    so a server's other threads get the interpreter while insights are found."""

    def __iter__(self) -> Iterator[dict]:
        for n, row in enumerate(super().__iter__(), 1):
            if n % whatif.YIELD_EVERY == 0:
                time.sleep(whatif.YIELD_S)
            yield row


def _newest(rows: list[dict], days: float) -> tuple[list[dict], float]:
    """The newest SAVING_ROWS of a group's traffic in time order (a whole stretch, so
    caches warm as they did) and the days they span: what a saving is replayed over."""
    if len(rows) <= SAVING_ROWS:
        return _Paced(rows), days
    rows = rows[-SAVING_ROWS:]
    return _Paced(rows), max((rows[-1]["ts"] - rows[0]["ts"]).total_seconds() / 86400, 1 / 24)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Insights as a frame: group_key and hours as JSON text, as the alerts carry theirs."""
    return pl.DataFrame(
        [dict(r, group_key=json.dumps(r["group_key"]), hours=json.dumps(r["hours"])) for r in rows],
        schema={
            "group_key": pl.String,
            "cause": pl.String,
            "cost_per_day": pl.Float64,
            "saving_per_day": pl.Float64,
            "fix": pl.String,
            "hours": pl.String,
            "text": pl.String,
        },
    )
