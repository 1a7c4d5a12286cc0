"""A provider model: prefix caches on replicas behind a router, and the TTFT they give.

Each replica keeps the KV blocks it has seen, named by their chained hashes
(the same chains ``analysis.fingerprint`` computes), in an LRU with a TTL and
a capacity. A request is served by the replica the router picks; it reuses
the longest run of leading blocks that replica still holds and has finished
computing (a parallel fan-out that lands before the first prefill is done
misses), trimmed to the provider's rules (minimum cacheable length,
granularity). Time to first
token grows with the uncached prompt tokens. Cached tokens always come from
this cache, never from a random draw, so what-if replays are meaningful.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis import providers

ROUTERS = ("round_robin", "random", "sticky", "prefix_affinity")


@dataclass(frozen=True)
class ProviderModel:
    """How the simulated provider caches, routes and prefills."""

    replicas: int = 2
    router: str = "round_robin"  # round_robin | random | sticky | prefix_affinity
    ttl_s: float = 300.0  # idle time after which a cached block is gone
    capacity_blocks: int = 500_000  # blocks each replica keeps (LRU beyond that)
    block_size: int = 64  # tokens per block, as in the fingerprints
    min_tokens: int = 1024  # prompts shorter than this are never cached
    granularity: int = 128  # cached prefixes grow in steps of this many tokens
    affinity_blocks: int = 4  # leading blocks prefix-affinity routing hashes
    base_ms: float = 120.0  # TTFT of an empty prompt
    prefill_ms_per_token: float = 0.04  # per uncached prompt token
    cached_ms_per_token: float = 0.002  # per cached prompt token
    noise_ms: float = 25.0  # mean of the exponential queueing noise
    seed: int = 0

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise ValueError(
                f"unknown router {self.router!r}; expected one of {', '.join(ROUTERS)}"
            )
        if self.replicas < 1:
            raise ValueError("at least one replica")

    @classmethod
    def of(
        cls, provider: str, model: str | None = None, block_size: int = 64, **settings: Any
    ) -> ProviderModel:
        """A provider's cache rules as ``providers.toml`` gives them (TTL, minimum,
        increment), with any other setting given here."""
        table = providers.load_table()
        return cls(
            ttl_s=float(table["profiles"][provider].get("ttl_s", cls.ttl_s)),
            min_tokens=providers.minimum_tokens(table, provider, model),
            granularity=providers.increment(table, provider, block_size),
            block_size=block_size,
            **settings,
        )


@dataclass(frozen=True)
class Served:
    """What the provider did with one request."""

    replica: int
    cached_tokens: int
    ttft_ms: float


@dataclass
class _Replica:
    capacity: int
    ttl_s: float
    # block hash ─► (last use, ready at): a block is reusable once its prefill finished
    blocks: OrderedDict[int, tuple[float, float]] = field(default_factory=OrderedDict)

    def reusable(self, hashes: Sequence[int], now: float) -> int:
        """How many leading blocks are held, alive and already computed."""
        count = 0
        for h in hashes:
            seen = self.blocks.get(h)
            if seen is None or now - seen[0] > self.ttl_s or seen[1] > now:
                break
            count += 1
        return count

    def store(self, hashes: Sequence[int], now: float, ready: float) -> None:
        for h in hashes:
            old = self.blocks.get(h)
            alive = old is not None and now - old[0] <= self.ttl_s
            self.blocks[h] = (now, min(old[1], ready) if alive else ready)
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


class Simulator:
    """Serve requests in time order through the provider model."""

    def __init__(self, model: ProviderModel) -> None:
        self.model = model
        self.replicas = [
            _Replica(model.capacity_blocks, model.ttl_s) for _ in range(model.replicas)
        ]
        self._rng = random.Random(model.seed)
        self._next = 0

    def _stable(self, key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")

    def route(self, hashes: Sequence[int], session_key: str | None) -> int:
        """The replica a request lands on."""
        n, router = self.model.replicas, self.model.router
        if router == "sticky" and session_key:
            return self._stable(session_key) % n
        if router == "prefix_affinity" and len(hashes) >= 1:
            head = ",".join(str(h) for h in hashes[: self.model.affinity_blocks])
            return self._stable(head) % n
        if router == "random":
            return self._rng.randrange(n)
        self._next = (self._next + 1) % n
        return self._next

    def cacheable(self, blocks: int, total_tokens: int) -> int:
        """Tokens a run of ``blocks`` leading blocks yields under the provider's rules."""
        m = self.model
        tokens = min(blocks * m.block_size, total_tokens)
        return providers.prefix_rule(tokens, m.min_tokens, m.granularity)

    def serve(
        self,
        now: float,
        hashes: Sequence[int],
        total_tokens: int,
        session_key: str | None = None,
        replica: int | None = None,
    ) -> Served:
        """Serve one request at time ``now`` (seconds); ``replica`` forces the route."""
        index = self.route(hashes, session_key) if replica is None else replica
        target = self.replicas[index % self.model.replicas]
        cached = self.cacheable(target.reusable(hashes, now), total_tokens)
        m = self.model
        noise = self._rng.expovariate(1 / m.noise_ms) if m.noise_ms > 0 else 0.0
        ttft = (
            m.base_ms
            + (total_tokens - cached) * m.prefill_ms_per_token
            + cached * m.cached_ms_per_token
            + noise
        )
        target.store(hashes, now, now + ttft / 1000)
        return Served(index % self.model.replicas, cached, round(ttft, 3))
