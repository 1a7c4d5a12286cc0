"""The alert rules judge plain frames: no database needed, none imported."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import polars as pl

from analysis import alerts

T0 = datetime(2025, 11, 22, 9, 0)


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


def test_a_drop_fires_and_resolves_from_counts_alone():
    no_breaks = pl.DataFrame()
    (alert,) = alerts.judge(_windows([0.9] * 5 + [0.1, 0.9]), no_breaks, None, alerts.Rules())
    assert (alert.rule, alert.started_at) == ("cached_drop", T0 + timedelta(minutes=75))
    assert alert.state == "resolved" and alert.resolved_at == T0 + timedelta(minutes=90)
    assert alerts.judge(_windows([0.9] * 7), no_breaks, None, alerts.Rules()) == []


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
    code = "import sys, analysis.alerts; sys.exit('duckdb' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
