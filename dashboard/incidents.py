"""Alert rows as the pages draw them: the server answers one row per incident (one
change on one group, with its ``signals``, ``cause`` and ``sparkline``); here its JSON
columns become plain values."""

from __future__ import annotations

import json
from typing import Any

UNITS = {
    "cached_drop": lambda v: f"{v:.1%}",  # hit ratio
    "ttft_p95_rise": lambda v: f"{v:,.0f} ms",
    "prefix_break": lambda v: f"{v:,.0f} broken",  # requests whose prefix broke
    "ttl_lapse": lambda v: f"{v:,.0f} expired",  # requests whose prefix expired
    "misses": lambda v: f"{v:,.1f} missed",  # a cause's misses (a signal's own unit)
}


def unit(signal: dict[str, Any], key: str) -> str:
    """A signal's ``key`` ("value" or "baseline") in its unit: the signal's own, else
    its rule's."""
    value = signal.get(key)
    if value is None:
        return "–"
    name = signal.get("unit") or signal.get("rule") or ""
    return UNITS.get(name, lambda v: f"{v:,.2f}")(value)


def _json(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value


def incidents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain incidents, in the server's order (firing first, then newest first): id,
    group (dict), label, state, started_at, resolved_at, signals [{rule, value, unit?,
    baseline}], cause, top_causes [[cause, n, cost]], cost_per_hour, attribution
    (dict), sparkline [numbers]."""
    found = []
    for row in rows:
        group = _json(row.get("group_key"), {})
        causes = _json(row.get("top_causes"), [])
        found.append(
            {
                "id": row.get("id"),
                "group": group,
                "label": ", ".join(f"{k}={v}" for k, v in group.items()) or "(all traffic)",
                "state": row.get("state"),
                "started_at": row.get("started_at"),
                "resolved_at": row.get("resolved_at"),
                "signals": _json(row.get("signals"), []),
                "cause": row.get("cause") or (causes[0][0] if causes else None),
                "top_causes": causes,
                "cost_per_hour": row.get("cost_per_hour") or 0.0,
                "attribution": _json(row.get("attribution"), {}),
                "sparkline": [v for v in _json(row.get("sparkline"), []) if v is not None],
            }
        )
    return found


def signals_text(signals: list[dict[str, Any]]) -> str:
    """The signals on one line: rule value (baseline)."""
    return ", ".join(
        f"{s.get('rule')} {unit(s, 'value')}"
        + (f" (was {unit(s, 'baseline')})" if s.get("baseline") is not None else "")
        for s in signals
    )
