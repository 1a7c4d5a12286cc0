"""Alerts: evaluate the rules over the stored requests (the only writer of the alerts
table) and list what is stored, one row per incident, each with the one line of text
that the CLI, the API and the webhook all show."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from analysis import alert_judge, providers
from analysis import alerts as rules_mod
from collector.store import alerts as queries
from collector.store.database import Store, save_alerts


def find(
    cur: duckdb.DuckDBPyConnection, rules: rules_mod.Rules | None = None, table: dict | None = None
) -> list[rules_mod.Alert]:
    """Every incident over the stored requests, oldest first, with its lifecycle,
    signals, where it concentrates, its top causes and its cost; reads only."""
    rules = rules or rules_mod.Rules()
    table = table or providers.load_table()
    counted = queries.alert_windows(cur, rules.window_s, rules.group_by)
    by_cause = queries.alert_causes(cur, rules.window_s, rules.group_by)
    found = alert_judge.judge(counted, by_cause, rules, table)
    for alert, evidence in zip(found, evidences(cur, found, by_cause, rules), strict=True):
        rules_mod.attribute(alert, evidence, rules, table)
    return found


def evidences(
    cur: duckdb.DuckDBPyConnection,
    found: list[rules_mod.Alert],
    by_cause: pl.DataFrame,
    rules: rules_mod.Rules,
) -> list[rules_mod.Evidence]:
    """What each incident's group did (``queries.alert_evidence`` for each, in two
    queries for all): over its baseline and first window, and to its resolution."""
    if not found:
        return []
    keys, step = rules.group_by, timedelta(seconds=rules.window_s)
    schema = {k: by_cause.schema.get(k, pl.String) for k in keys}
    schema |= {"k": pl.Int64, "start": pl.Datetime("us"), "cause": pl.String}
    incidents, windows = [], []
    for k, alert in enumerate(found):
        since, start, _ = rules_mod.bounds(alert, rules)
        cause = None if alert.cause == rules_mod.UNEXPLAINED else alert.cause
        row = {**{g: alert.group.get(g) for g in keys}, "k": k, "start": start, "cause": cause}
        incidents.append({**row, "resolved_at": alert.resolved_at})
        windows += [{**row, "window": since + i * step} for i in range(rules.baseline_windows + 1)]
    windows_frame = pl.DataFrame(windows, schema=schema | {"window": pl.Datetime("us")})
    incidents_frame = pl.DataFrame(incidents, schema=schema | {"resolved_at": pl.Datetime("us")})
    dims = rules_mod.ATTRIBUTION
    rows = queries.evidence_dimensions(cur, windows_frame, keys, dims, rules.window_s)
    values: list[dict[str, list]] = [{d: [] for d in dims} for _ in found]
    missed: list[int | None] = [None] * len(found)
    whole = (1 << len(dims)) - 1
    for k, *dim_values, grouped, dim_missed, first_missed in rows:
        if grouped == whole:
            missed[k] = first_missed
            continue
        i = len(dims) - (whole ^ grouped).bit_length()  # grouping(): first is the top bit
        values[k][dims[i]].append((dim_values[i], dim_missed))
    causes: list[list[tuple]] = [[] for _ in found]
    for k, *cause in queries.evidence_causes(cur, incidents_frame, keys):
        causes[k].append(tuple(cause))
    for per_dim in values:
        for listed_values in per_dim.values():
            listed_values.sort(key=lambda v: (v[1] is None, -(v[1] or 0)))  # DESC NULLS LAST
    return [rules_mod.Evidence(*parts) for parts in zip(values, causes, missed, strict=True)]


def evaluate(
    store: Store, rules: rules_mod.Rules, cursor: duckdb.DuckDBPyConnection | None = None
) -> list[rules_mod.Alert]:
    """Evaluate every rule over the stored requests (reading through ``cursor`` when
    given, e.g. one a loop can interrupt) and replace the alerts table with the result;
    the incidents, oldest first."""
    cur = cursor or store.reader()
    try:
        found = find(cur, rules)
    finally:
        if cursor is None:
            cur.close()
    save_alerts(store, [a.row() for a in found])
    return found


def server_rules(collector: Any) -> rules_mod.Rules:
    """The rules a running server was started with."""
    if collector.alerts is not None:
        return collector.alerts.rules
    return rules_mod.Rules.load(collector.config.alert_rules)


def evaluate_server(collector: Any) -> list[rules_mod.Alert]:
    """Evaluate on a running server: through its alert loop when it runs one (which also
    posts newly firing incidents to the server's webhook, once each), else with the
    rules the server was started with."""
    if collector.alerts is not None:
        return collector.alerts.evaluate()
    return evaluate(collector.store, server_rules(collector))


def record(alert: rules_mod.Alert) -> dict[str, Any]:
    """An incident as plain data, with its text."""
    return dict(alert.to_dict(), text=rules_mod.slack_text(alert))


def listed(cur: duckdb.DuckDBPyConnection, state: str | None = None) -> pl.DataFrame:
    """The stored incidents, firing first then newest first, each with its text."""
    return page(cur, state)[0]


def page(
    cur: duckdb.DuckDBPyConnection,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[pl.DataFrame, int]:
    """A page of the stored incidents (all of them without ``limit``), firing first then
    newest first, each with its text; and how many match in all. ``since``/``until``
    bound their start."""
    frame, total = queries.listed(cur, state, since, until, limit, offset)
    texts = [rules_mod.slack_text(_alert(row)) for row in frame.iter_rows(named=True)]
    return frame.with_columns(pl.Series("text", texts, dtype=pl.String)), total


def _alert(row: dict[str, Any]) -> rules_mod.Alert:
    """A stored alerts row back as the Alert it was saved from."""
    return rules_mod.Alert(
        rule=row["rule"],
        group=json.loads(row["group_key"] or "{}"),
        started_at=row["started_at"],
        value=row["value"],
        baseline=row["baseline"],
        state=row["state"],
        resolved_at=row["resolved_at"],
        attribution=json.loads(row["attribution"] or "{}"),
        top_causes=json.loads(row["top_causes"] or "[]"),
        cost_per_hour=row["cost_per_hour"] or 0.0,
        cause=row.get("cause") or rules_mod.UNEXPLAINED,
        signals=json.loads(row.get("signals") or "[]"),
        sparkline=json.loads(row.get("sparkline") or "[]"),
    )
