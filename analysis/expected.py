"""What the cache could have served of a request, in the provider's own tokens.

Our token positions come from a client-side tokenizer and template; the provider
counts the same prompt with its own, from 3 % fewer to 7 % more tokens. A position
inside a request is scaled by that request's ratio of the provider's reported prompt
tokens to ours: exact at the request's end, where a session's next turn finds its
cache entry, and interpolated inside it. The provider's rule then applies
(``analysis.providers``): its minimum and unit, or, for Anthropic, only the
cache_control breakpoints.
"""

from __future__ import annotations

from typing import Any

import msgspec

from analysis import providers

MAX_MEMO = 100_000  # remembered answers of what a provider caches of a shared prefix
# Of the tokens the cache could have served: how far the interpolated scale may be off
# inside a request (the ratio of two tokenizers varies a little from part to part).
SLACK = 0.02

_POINTS = msgspec.json.Decoder(tuple[int, ...]).decode


def ratio(provider_tokens: Any, our_tokens: int) -> float | None:
    """The provider's tokens per token of ours for one request; None when either is unknown."""
    if provider_tokens and our_tokens:
        return int(provider_tokens) / our_tokens
    return None


def points(raw: Any) -> tuple[int, ...] | None:
    """Stored breakpoints (JSON or a list) as token positions; None when not recorded."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return _POINTS(raw)
        except msgspec.DecodeError:
            return None
    return tuple(int(p) for p in raw)


def read_points(written: tuple | None, reading: tuple | None) -> tuple | None:
    """Where the provider can serve this request from: the positions the earlier request
    wrote entries at (its breakpoints), up to this one's last breakpoint (nothing is read
    past it). None when either was not recorded (then only the minimum applies)."""
    if written is None or reading is None:
        return None
    last = max(reading, default=-1)
    return tuple(p for p in written if p <= last)


def shared_tokens(pred: Any, seen: Any, common_blocks: int, block: int) -> int:
    """Leading tokens (ours) the two requests share: the full blocks their chains share,
    or further, to the end of the last segment both have unchanged (the blocks stop short
    of a segment that ends inside a block: the end of the earlier request, usually)."""
    shared = common_blocks * block
    a, b = pred.marks, seen.marks
    if a and b:
        if b[: len(a)] == a:
            equal = len(a)
        else:
            pairs = enumerate(zip(a, b, strict=False))
            equal = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
        if equal:
            shared = max(shared, int(pred.ends[equal - 1]))
    return min(shared, length(pred, block), length(seen, block))


def length(seen: Any, block: int) -> int:
    """A request's length in our tokens (its full blocks when the count is unknown)."""
    return seen.tokens or len(seen.hashes) // 8 * block


def shortfall(could: int, reported: int, unit: int) -> int:
    """The tokens the cache did not serve of what it could; 0 when that is no more than
    one provider unit (or the scale's slack): a miss cause needs a real shortfall."""
    missing = could - reported
    return missing if missing > max(unit, could * SLACK) else 0


def uncacheable(
    table: dict, rules: str, minimum: int, row: dict, seen: Any
) -> tuple[str, str] | None:
    """The verdict on a request of which the provider caches nothing, else None: under the
    minimum (its prompt, or up to its last breakpoint), or without any breakpoint."""
    if providers.uses_breakpoints(table, rules) and seen.breakpoints is not None:
        if not seen.breakpoints:
            return "no_miss", "no cache_control breakpoint: the provider caches none of it"
        extent = round(seen.breakpoints[-1] * (seen.scale or 1.0))
    else:
        extent = int(row.get("prompt_tokens") or seen.tokens)
    if extent < minimum:
        return "below_minimum", f"{extent} cacheable tokens; the minimum is {minimum}"
    return None


class Terms:
    """The providers' rules as the explainer asks them, per request: looked up once each
    (minimums, prices) or memoized (what a shared prefix yields)."""

    def __init__(self, table: dict) -> None:
        self.table = table
        self._minimums: dict[tuple, int] = {}
        self._prices: dict[str | None, float] = {}
        self._cached: dict[tuple, int] = {}  # cacheable's answers

    def minimum(self, rules: str, model: str | None) -> int:
        key = (rules, model)
        if key not in self._minimums:
            self._minimums[key] = providers.minimum_tokens(self.table, rules, model)
        return self._minimums[key]

    def unit(self, rules: str, block: int, scale: float) -> int:
        """The smallest shortfall that is a miss: one provider unit (or one of our blocks,
        in the provider's tokens)."""
        return max(providers.increment(self.table, rules, block), round(block * scale))

    def extra_per_token(self, model: str | None) -> float:
        """Dollars a token costs above its cached price, per model."""
        if model not in self._prices:
            self._prices[model] = providers.missed_cost_usd(self.table, model)
        return self._prices[model]

    def cacheable(
        self, rules: str, model: str | None, ours: int, scale: float, points: tuple | None
    ) -> int:
        """What the provider caches of ``ours`` shared leading tokens (our count), in its
        own tokens: at its breakpoints when it caches only there (``points``: where the
        earlier request wrote entries, ours), else by its minimum and unit (memoized)."""
        shared = round(ours * scale)
        minimum = self.minimum(rules, model)
        step = int(self.table["profiles"][rules].get("increment", 64) or 64)
        if points is not None and providers.uses_breakpoints(self.table, rules):
            scaled = [round(p * scale) for p in points]
            return providers.cacheable_tokens(
                self.table, rules, model, shared, scaled, step, minimum
            )
        key = (rules, model, shared)
        found = self._cached.get(key)
        if found is None:
            if len(self._cached) > MAX_MEMO:
                self._cached.clear()
            found = self._cached[key] = providers.cacheable_tokens(
                self.table, rules, model, shared, None, step, minimum
            )
        return found
