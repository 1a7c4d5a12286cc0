"""A provider model: prefix caches on replicas behind a router, and the TTFT they give.

Each replica keeps cache entries in an LRU with a TTL and a capacity. Under the
block rule (OpenAI, DeepSeek, Gemini, vLLM) an entry is a KV block named by
its chained hash (the chains ``analysis.fingerprint`` computes); a request
reuses the longest run of leading blocks its replica still holds and has
finished computing (a parallel fan-out that lands before the first prefill is
done misses), trimmed to the provider's minimum and increment. Under
Anthropic's rule (``breakpoints``) entries exist only for prefixes that end at
a ``cache_control`` breakpoint; a read serves the longest such prefix whose
entry the replica holds, past the model's minimum, and nothing past the last
breakpoint. Time to first token grows with the uncached prompt tokens.
Cached tokens always come from this cache, never from a random draw, so
what-if replays are meaningful.

The provider counts tokens its own way: ``token_factor`` and
``token_overhead`` turn our count into its ``prompt_tokens``, and its rules
(minimum, increment) apply to its tokens; cached tokens are in its tokens too.

For ground truth the simulator also keeps ``ever`` (every entry any replica
ever stored: the ideal cache that never loses anything) and ``shadow`` (those
plus the entries of requests' clean bodies, see ``analysis.truth``), and says
why the first entry past what was served was not served (``Served.lost``).
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from analysis import providers

ROUTERS = ("round_robin", "random", "sticky", "prefix_affinity")


@dataclass(frozen=True)
class ProviderModel:
    """How the simulated provider caches, routes and prefills."""

    replicas: int = 2
    router: str = "round_robin"  # round_robin | random | sticky | prefix_affinity
    ttl_s: float = 300.0  # idle time after which a cached block is gone
    capacity_blocks: int = 500_000  # entries each replica keeps (LRU beyond that)
    block_size: int = 64  # tokens per block, as in the fingerprints
    min_tokens: int = 1024  # prompts shorter than this are never cached
    granularity: int = 128  # cached prefixes grow in steps of this many tokens
    affinity_blocks: int = 4  # leading blocks prefix-affinity routing hashes
    base_ms: float = 120.0  # TTFT of an empty prompt
    prefill_ms_per_token: float = 0.04  # per uncached prompt token
    cached_ms_per_token: float = 0.002  # per cached prompt token
    noise_ms: float = 25.0  # mean of the exponential queueing noise
    seed: int = 0
    breakpoints: bool = False  # entries only at cache_control breakpoints (Anthropic)
    token_factor: float = 1.0  # the provider's tokens per token of ours
    token_overhead: int = 0  # template tokens the provider adds to every prompt

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
        increment, breakpoints), with any other setting given here."""
        table = providers.load_table()
        rules = {
            "ttl_s": float(table["profiles"][provider].get("ttl_s", cls.ttl_s)),
            "min_tokens": providers.minimum_tokens(table, provider, model),
            "granularity": providers.increment(table, provider, block_size),
            "breakpoints": providers.uses_breakpoints(table, provider),
        }
        return cls(block_size=block_size, **{**rules, **settings})


@dataclass(frozen=True)
class Served:
    """What the provider did with one request (tokens are the provider's)."""

    replica: int
    cached_tokens: int
    ttft_ms: float
    prompt_tokens: int = 0
    ideal_tokens: int = 0  # what the ideal cache (every entry ever stored) would serve,
    # when the simulator keeps truth (otherwise the cached tokens)
    lost: str | None = None  # why the first entry past what was served was not served


@dataclass
class _Replica:
    capacity: int
    ttl_s: float
    # entry ─► (last use, ready at): an entry is reusable once its prefill finished
    blocks: OrderedDict[int, tuple[float, float]] = field(default_factory=OrderedDict)
    gone: dict[int, str] | None = None  # entry ─► "expired" | "evicted", when tracked

    def usable(self, key: int, now: float) -> bool:
        seen = self.blocks.get(key)
        return seen is not None and now - seen[0] <= self.ttl_s and seen[1] <= now

    def reusable(self, hashes: Sequence[int], now: float) -> int:
        """How many leading blocks are held, alive and already computed."""
        count = 0
        for h in hashes:
            if not self.usable(h, now):
                break
            count += 1
        return count

    def state(self, key: int, now: float) -> str | None:
        """alive | inflight | expired | evicted, or None when never held here."""
        seen = self.blocks.get(key)
        if seen is None:
            return self.gone.get(key) if self.gone is not None else None
        if now - seen[0] > self.ttl_s:
            return "expired"
        return "inflight" if seen[1] > now else "alive"

    def store(self, hashes: Iterable[int], now: float, ready: float) -> None:
        for h in hashes:
            old = self.blocks.get(h)
            alive = old is not None and now - old[0] <= self.ttl_s
            self.blocks[h] = (now, min(old[1], ready) if alive else ready)
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            key, (used, _) = self.blocks.popitem(last=False)
            if self.gone is not None:
                self.gone[key] = "evicted" if now - used <= self.ttl_s else "expired"


def _lost(states: list[str | None], here: int) -> str:
    """The infrastructure cause of an entry the serving replica could not read."""
    if "inflight" in states:
        return "concurrent_fanout"
    if "alive" in states:
        return "routing"
    for state in (states[here], *states):
        if state == "expired":
            return "ttl_expired"
        if state == "evicted":
            return "eviction_or_unknown"
    return "eviction_or_unknown"  # held only by a replica that is gone


class Simulator:
    """Serve requests in time order through the provider model."""

    def __init__(self, model: ProviderModel, truth: bool = False) -> None:
        """``truth`` keeps what ground truth needs (``ever``, ``shadow``, what each replica
        lost and why): memory that grows with every distinct entry, so off by default."""
        self.model, self.truth = model, truth
        self.replicas = [self._replica() for _ in range(model.replicas)]
        self._rng = random.Random(model.seed)
        self._next = 0
        self.ever: set[int] = set()
        self.shadow: set[int] = set()

    def scale(self, replicas: int, router: str) -> None:
        """Change the replica count and router; replicas past the count keep their cache
        but take no requests (and count for nothing) until scaled back."""
        self.model = replace(self.model, replicas=replicas, router=router)
        while len(self.replicas) < replicas:
            self.replicas.append(self._replica())

    def _replica(self) -> _Replica:
        m = self.model
        return _Replica(m.capacity_blocks, m.ttl_s, gone={} if self.truth else None)

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

    def provider_tokens(self, ours: int) -> int:
        """Our token count (or position) in the provider's tokens."""
        m = self.model
        return round(ours * m.token_factor) + m.token_overhead if ours > 0 else 0

    def cacheable(self, blocks: int, total_tokens: int) -> int:
        """Tokens a run of ``blocks`` leading blocks yields under the provider's rules."""
        m = self.model
        tokens = min(blocks * m.block_size, total_tokens)
        cap = self.provider_tokens(total_tokens)
        return min(
            providers.prefix_rule(self.provider_tokens(tokens), m.min_tokens, m.granularity), cap
        )

    def units(
        self, hashes: Sequence[int], breakpoints: Sequence[tuple[int, int]] | None
    ) -> list[tuple[int, int]]:
        """The entries a request can read and write, (key, our token end) each: its blocks,
        or under the breakpoint rule its breakpoints ((end, key) given by the caller)."""
        if self.model.breakpoints:
            return [(key, end) for end, key in breakpoints or ()]
        size = self.model.block_size
        return [(h, (i + 1) * size) for i, h in enumerate(hashes)]

    def readable(self, units: Sequence[tuple[int, int]], total: int, held) -> tuple[int, int]:
        """(provider tokens served, index of the first unit not served) when ``held(key)``
        says which entries can be read."""
        if self.model.breakpoints:
            best, first = 0, 0
            for j, (key, end) in enumerate(units):
                tokens = self.provider_tokens(end)
                if tokens >= max(self.model.min_tokens, 1) and held(key):
                    best, first = tokens, j + 1
            return best, first
        run = 0
        for key, _ in units:
            if not held(key):
                break
            run += 1
        return self.cacheable(run, total), run

    def ideal(self, units: Sequence[tuple[int, int]], total: int, known: set[int]) -> int:
        """Provider tokens served from a cache holding exactly ``known``."""
        return self.readable(units, total, known.__contains__)[0]

    def serve(
        self,
        now: float,
        hashes: Sequence[int],
        total_tokens: int,
        session_key: str | None = None,
        replica: int | None = None,
        breakpoints: Sequence[tuple[int, int]] | None = None,
    ) -> Served:
        """Serve one request at time ``now`` (seconds); ``replica`` forces the route;
        ``breakpoints`` are (our token end, entry key) of its cache_control breakpoints."""
        m = self.model
        index = (self.route(hashes, session_key) if replica is None else replica) % m.replicas
        target = self.replicas[index]
        units = self.units(hashes, breakpoints)
        cached, first = self.readable(units, total_tokens, lambda k: target.usable(k, now))
        ideal = self.ideal(units, total_tokens, self.ever) if self.truth else cached
        lost = None
        if ideal > cached and first < len(units):
            key = self._missing(units, first, ideal)
            states = [r.state(key, now) for r in self.replicas[: m.replicas]]
            lost = _lost(states, index)
        prompt = self.provider_tokens(total_tokens)
        noise = self._rng.expovariate(1 / m.noise_ms) if m.noise_ms > 0 else 0.0
        ttft = (
            m.base_ms
            + (prompt - cached) * m.prefill_ms_per_token
            + cached * m.cached_ms_per_token
            + noise
        )
        keys = [key for key, _ in units]
        target.store(keys, now, now + ttft / 1000)
        if self.truth:
            self.ever.update(keys)
            self.shadow.update(keys)
        return Served(index, cached, round(ttft, 3), prompt, ideal, lost)

    def _missing(self, units: Sequence[tuple[int, int]], first: int, ideal: int) -> int:
        """The entry past what was served that the ideal cache would have served from."""
        if not self.model.breakpoints:
            return units[first][0]
        for key, end in reversed(units):
            if key in self.ever and self.provider_tokens(end) == ideal:
                return key
        return units[first][0]
