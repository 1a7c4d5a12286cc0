"""What-if: stored traffic replayed through a simulated provider with other routing,
TTL, replicas or warmup, per route, beside what was observed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from collector.store import queries

DEFAULT_TTL_S = 600


@dataclass(frozen=True)
class WhatIf:
    """The simulated provider, the days the traffic spans, and per route the observed
    and simulated outcomes."""

    model: Any  # analysis.simulate.ProviderModel
    warmup: bool
    days: float
    routes: dict[str, tuple[Any, Any]]  # route -> (observed, simulated) whatif.Outcome

    def rows(self) -> list[dict[str, Any]]:
        """One row per route."""
        return [
            {
                "route": route,
                "requests": seen.requests,
                "observed_hit_ratio": seen.hit_ratio,
                "simulated_hit_ratio": sim.hit_ratio,
                "observed_p95_ttft_ms": seen.p95_ttft_ms,
                "simulated_p95_ttft_ms": sim.p95_ttft_ms,
                "observed_missed_usd": seen.missed_cost_usd,
                "simulated_missed_usd": sim.missed_cost_usd,
            }
            for route, (seen, sim) in sorted(self.routes.items())
        ]


def whatif(
    cur: duckdb.DuckDBPyConnection,
    router: str = "sticky",
    ttl_s: float = DEFAULT_TTL_S,
    replicas: int | None = None,
    warmup: bool = False,
) -> WhatIf:
    """Replay the stored traffic; ``replicas`` defaults to as many as the traffic used
    (the most replicas any route ran on)."""
    from analysis.simulate import ProviderModel
    from analysis.whatif import compare

    used, first, last = cur.execute(
        "SELECT max(n), min(t0), max(t1) FROM (SELECT route, count(DISTINCT replica) AS n, "
        "min(ts) AS t0, max(ts) AS t1 FROM requests GROUP BY route)"
    ).fetchall()[0]
    model = ProviderModel(replicas=replicas or max(used or 1, 1), router=router, ttl_s=ttl_s)
    routes = compare(queries.traffic(cur), model, warmup)
    days = max((last - first).total_seconds() / 86400, 1 / 24) if first else 1.0
    return WhatIf(model, warmup, days, routes)
