"""The incidents injected into generated traffic: what breaks, where, from when to when.

Windows sit at fixed fractions of the day, one at a time per route. Besides
the incidents, two service behaviours are always on (``ALWAYS``): the support
bot's title requests under the provider minimum, and the research service's
3-way fan-out runs. An incident's ``cause`` is what its edit or its
infrastructure event breaks the cache with; the true cause of each request is
decided from the simulator's cache state (``analysis.truth``), not from this
table: a request inside a window may well be a ``no_miss``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Always-on behaviours, by route: (name, the cause they produce when they bite).
ALWAYS = {
    "/support": ("short_title_requests", "below_minimum"),
    "/research": ("fanout_runs", "concurrent_fanout"),
}


@dataclass(frozen=True)
class Incident:
    """One injected cache breaker and its ground truth."""

    name: str
    cause: str  # the cause code an explanation should give
    route: str
    start: float  # seconds from the start of the traffic
    end: float
    replica: str | None = None


_TABLE = (  # name, cause, route, start and end as fractions of the day
    ("quiet_night_ttl", "ttl_expired", "/support", 0.02, 0.16),
    ("quiet_night_ttl", "ttl_expired", "/rag", 0.02, 0.16),
    ("deploy_timestamp", "dynamic_value", "/support", 0.40, 0.47),
    ("scale_out_round_robin", "routing", "/agent", 0.30, 0.37),
    ("dynamic_tool_subsets", "tools_changed", "/agent", 0.50, 0.56),
    ("stripped_reasoning", "reasoning_dropped", "/agent", 0.62, 0.68),
    ("request_id_in_schema", "dynamic_value", "/agent", 0.74, 0.80),
    ("fanout_before_warm", "concurrent_fanout", "/rag", 0.55, 0.61),
    # Issue #15's incidents
    ("ab_prompt_flag", "system_changed", "/agent", 0.40, 0.46),
    ("sdk_unsorted_keys", "key_order", "/agent", 0.23, 0.29),
    ("tool_registry_order", "tools_reordered", "/agent", 0.56, 0.61),
    ("context_truncation", "history_rewritten", "/agent", 0.86, 0.92),
    ("retriever_ties", "context_reordered", "/rag", 0.30, 0.36),
    ("model_canary", "model_changed", "/rag", 0.70, 0.76),
    ("launch_surge", "eviction_or_unknown", "/support", 0.84, 0.87),
    ("provider_outage", "ttl_expired", "/research", 0.45, 0.49),
    ("template_whitespace", "whitespace", "/rag", 0.82, 0.88),
)


def incidents(hours: float) -> list[Incident]:
    """The standard incidents, placed at fixed fractions of the day."""
    h = hours * 3600
    return [
        Incident(name, cause, route, round(a * h), round(b * h))
        for name, cause, route, a, b in _TABLE
    ]


def active(table: list[Incident], route: str, t: float) -> Incident | None:
    """The incident active on a route at t, if any."""
    return next((i for i in table if i.route == route and i.start <= t < i.end), None)
