"""What-if: replay stored traffic through the provider model with other settings.

The same block-hash chains the requests carried go through
``analysis.simulate`` with the router, TTL or replica count asked for
(optionally warming every replica with each new stable prefix, as a deploy
hook would), per route, and come out as hit ratio, p95 TTFT and the cost of
missed tokens beside what was observed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from statistics import quantiles

from analysis import fingerprint, providers
from analysis.segmaps import segment_map
from analysis.simulate import ProviderModel, Simulator

WARMUP_LEAD_S = 5.0  # a warmup request runs this long before the traffic it serves


@dataclass
class Outcome:
    """Totals of one side of the comparison."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    missed_cost_usd: float = 0.0
    ttfts: list[float] = field(default_factory=list)

    def add(self, prompt: int, cached: int, ttft: float | None, cost_per_token: float) -> None:
        self.requests += 1
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.missed_cost_usd += (prompt - cached) * cost_per_token
        if ttft is not None:
            self.ttfts.append(ttft)

    @property
    def hit_ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def p95_ttft_ms(self) -> float | None:
        if len(self.ttfts) < 2:
            return self.ttfts[0] if self.ttfts else None
        return quantiles(self.ttfts, n=100, method="inclusive")[94]


def _stable_blocks(segments: str | list | None, block_size: int) -> int:
    """Full blocks inside the tools + system part (what a warmup request would cache)."""
    end = 0
    for _path, kind, _start, stop, *_hashes in segment_map(segments):
        if kind not in ("tool", "system"):
            break
        end = stop
    return end // block_size


def compare(
    rows: Iterable[dict], model: ProviderModel, warmup: bool = False, table: dict | None = None
) -> dict[str, tuple[Outcome, Outcome]]:
    """Per route: (observed, simulated) outcomes; rows must come in time order."""
    table = table or providers.load_table()
    sims: dict[str, Simulator] = {}
    warmed: set[tuple[str, str]] = set()
    out: dict[str, tuple[Outcome, Outcome]] = defaultdict(lambda: (Outcome(), Outcome()))
    for row in rows:
        route = row.get("route") or "(none)"
        sim = sims.setdefault(route, Simulator(replace(model, seed=model.seed + len(sims))))
        hashes = fingerprint.unpack_hashes(row.get("block_hashes"))
        prompt = int(row.get("prompt_tokens") or row.get("total_tokens") or 0)
        now = row["ts"].timestamp() if isinstance(row["ts"], datetime) else float(row["ts"])
        key = (route, row.get("prefix_hash") or "")
        if warmup and key not in warmed and hashes:
            warmed.add(key)
            head = hashes[: _stable_blocks(row.get("segments"), model.block_size)]
            for replica in range(model.replicas):
                sim.serve(now - WARMUP_LEAD_S, head, len(head) * model.block_size, replica=replica)
        served = sim.serve(now, hashes, prompt, row.get("session_key"))
        per_token = providers.missed_cost_usd(table, row.get("request_model"))
        observed, simulated = out[route]
        observed.add(
            prompt, min(int(row.get("cached_tokens") or 0), prompt), row.get("ttft_ms"), per_token
        )
        simulated.add(prompt, min(served.cached_tokens, prompt), served.ttft_ms, per_token)
    return dict(out)
