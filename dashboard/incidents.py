"""Alert rows as incidents: one per regression, whichever shape the server answers.

A server that groups alerts answers one row per incident (``signals``, ``cause``,
``sparkline``...); an older one answers one row per alert (``rule``, ``value``,
``baseline``), several for one regression. Both become the same plain incidents
here, the older rows merged by group and minute of onset, so the pages draw one shape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

UNITS = {
    "cached_drop": lambda v: f"{v:.1%}",  # hit ratio
    "ttft_p95_rise": lambda v: f"{v:,.0f} ms",
    "prefix_break": lambda v: f"{v:,.0f} broken",  # requests whose prefix broke
    "ttl_lapse": lambda v: f"{v:,.0f} expired",  # requests whose prefix expired
}


def unit(rule: str, value: float | None) -> str:
    """A signal's value in its rule's unit."""
    if value is None:
        return "–"
    return UNITS.get(rule, lambda v: f"{v:,.2f}")(value)


def _json(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value


def _minute(ts: datetime | None) -> Any:
    return ts.replace(second=0, microsecond=0) if isinstance(ts, datetime) else ts


def incidents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain incidents: id, group (dict), label, state, started_at, resolved_at, signals
    [{rule, value, baseline}], cause, top_causes [[cause, n, cost]], cost_per_hour,
    attribution (dict), sparkline [numbers]; firing first, then newest first."""
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        group = _json(row.get("group_key"), {})
        if "signals" in row:
            signals = _json(row.get("signals"), [])
            key: tuple = ("incident", row.get("id"))
        else:  # one alert per row: its rule is the one signal
            signals = [{k: row.get(k) for k in ("rule", "value", "baseline")}]
            key = (json.dumps(group, sort_keys=True), _minute(row.get("started_at")))
        causes = _json(row.get("top_causes"), [])
        found = merged.get(key)
        if found is None:
            merged[key] = {
                "id": row.get("id"),
                "group": group,
                "label": ", ".join(f"{k}={v}" for k, v in group.items()) or "(all traffic)",
                "state": row.get("state"),
                "started_at": row.get("started_at"),
                "resolved_at": row.get("resolved_at"),
                "signals": list(signals),
                "cause": row.get("cause") or (causes[0][0] if causes else None),
                "top_causes": causes,
                "cost_per_hour": row.get("cost_per_hour") or 0.0,
                "attribution": _json(row.get("attribution"), {}),
                "sparkline": [v for v in _json(row.get("sparkline"), []) if v is not None],
            }
            continue
        found["signals"].extend(signals)
        if row.get("state") == "firing":
            found["state"], found["resolved_at"] = "firing", None
        found["cost_per_hour"] = max(found["cost_per_hour"], row.get("cost_per_hour") or 0.0)
        found["top_causes"] = found["top_causes"] or causes
        found["cause"] = found["cause"] or (causes[0][0] if causes else None)
    order = sorted(merged.values(), key=lambda i: _sort_time(i["started_at"]), reverse=True)
    return sorted(order, key=lambda i: i["state"] != "firing")


def _sort_time(ts: Any) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else 0.0


def signals_text(signals: list[dict[str, Any]]) -> str:
    """The signals on one line: rule value (baseline)."""
    return ", ".join(
        f"{s.get('rule')} {unit(s.get('rule', ''), s.get('value'))}"
        + (
            f" (was {unit(s.get('rule', ''), s['baseline'])})"
            if s.get("baseline") is not None
            else ""
        )
        for s in signals
    )
