"""The alert rules judge plain frames: no database needed, none imported."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import polars as pl
import pytest

from analysis import alert_judge, alerts
from analysis.incident_rules import poisson_tail

T0 = datetime(2025, 11, 22, 9, 0)
NO_CAUSES = pl.DataFrame()


def _windows(ratios: list[float]) -> pl.DataFrame:
    """Per 15-minute window of one group: 20 requests of 4,000 tokens at a hit ratio."""
    return pl.DataFrame(
        {
            "window": [T0 + timedelta(minutes=15 * i) for i in range(len(ratios))],
            "route": "/chat",
            "request_model": "gpt-4o",
            "requests": 20,
            "prompt": 80_000,
            "cached": [int(80_000 * r) for r in ratios],
            "p95": 200.0,
            "samples": 20,
        }
    )


def _causes(counts: dict[int, int], cause: str = "dynamic_value") -> pl.DataFrame:
    """Per window index: requests ``cause`` broke, a cent each."""
    return pl.DataFrame(
        {
            "window": [T0 + timedelta(minutes=15 * i) for i in counts],
            "route": "/chat",
            "request_model": "gpt-4o",
            "cause": cause,
            "requests": list(counts.values()),
            "usd": [0.01 * n for n in counts.values()],
        }
    )


def test_an_unexplained_drop_fires_and_resolves_from_counts_alone():
    rules = alerts.Rules()
    (alert,) = alert_judge.judge(_windows([0.9] * 5 + [0.1, 0.9]), NO_CAUSES, rules)
    assert (alert.rule, alert.started_at, alert.cause) == (
        "cached_drop",
        T0 + timedelta(minutes=75),
        "unexplained",
    )
    assert alert.state == "resolved" and alert.resolved_at == T0 + timedelta(minutes=90)
    assert alert_judge.judge(_windows([0.9] * 7), NO_CAUSES, rules) == []


def test_a_new_cause_is_an_incident_its_usual_rate_is_not():
    rules, counted = alerts.Rules(), _windows([0.9] * 12)
    (alert,) = alert_judge.judge(counted, _causes({8: 6, 9: 6}), rules)
    assert (alert.cause, alert.rule, alert.started_at) == (
        "dynamic_value",
        "prefix_break",
        T0 + timedelta(minutes=120),
    )
    assert alert.resolved_at == T0 + timedelta(minutes=150)  # two windows at baseline
    assert alert.signals[0]["value"] == 6 and alert.signals[0]["baseline"] < 0.5
    assert alert.cost_per_hour > 0.2 and alert.sparkline[4] == pytest.approx(0.24)
    usual = _causes({i: 6 for i in range(12)})
    assert alert_judge.judge(counted, usual, rules) == []


def test_money_gates_a_cause_that_costs_nothing():
    free = _causes({8: 6, 9: 6}).with_columns(usd=pl.lit(0.0))
    assert alert_judge.judge(_windows([0.9] * 12), free, alerts.Rules()) == []


def test_poisson_tail():
    assert poisson_tail(0, 1.0) == 1.0 and poisson_tail(3, 0.0) == 0.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - 0.1353352832)
    assert poisson_tail(3, 0.1) < 2e-4


def test_attribution_and_cost_come_from_the_evidence():
    alert = alerts.Alert("cached_drop", {"route": "/chat", "request_model": "gpt-4o"}, T0, 0.1, 0.9)
    evidence = alerts.Evidence(
        {"replica": [("r2", 9000), ("r1", 1000)], "prompt_version": [("v1", 5000), ("v2", 4000)]},
        [("dynamic_value", 12, 9000)],
        1_000_000,
    )
    table = {"prices": {"default": {"input": 2.5, "cached": 1.25}}}
    alerts.attribute(alert, evidence, alerts.Rules(), table)
    assert alert.attribution == {"replica": "r2"}  # v1 does not carry twice v2's misses
    assert alert.top_causes == [["dynamic_value", 12, 9000]]
    assert alert.cost_per_hour == 5.0  # $1.25 a window, four windows an hour


def test_the_rules_import_no_database():
    code = (
        "import sys, analysis.alerts, analysis.alert_judge, analysis.insights; "
        "sys.exit('duckdb' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
