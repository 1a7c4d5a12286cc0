"""Provider cache rules and prices: shared tokens ─► cacheable, missed, dollars.

The rules and prices live in ``providers.toml`` beside this module; a file of
the same shape overrides any part of them (``--prices`` or CACHEDIAG_PRICES).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

PRICES_ENV = "CACHEDIAG_PRICES"  # path of a TOML file overriding providers.toml
PROVIDERS = ("openai", "anthropic", "deepseek", "gemini", "generic")


@dataclass(frozen=True)
class Implication:
    """What the divergence means for the cache and the bill of request B."""

    provider: str
    minimum: int
    cacheable_tokens: int
    missed_tokens: int
    missed_cost_usd: float
    input_usd_per_mtok: float
    cached_usd_per_mtok: float


_NUMBERS = ("ttl_s", "max_ttl_s", "minimum", "increment")


class PricesError(ValueError):
    """A price file that is not TOML of providers.toml's shape; the message says where."""


def load_table(override: str | None = None) -> dict[str, Any]:
    """The built-in table, merged with an override file when given (checked, so that a
    wrong value is a PricesError here rather than a failure in the middle of a diff)."""
    text = resources.files("analysis").joinpath("providers.toml").read_text()
    table = tomllib.loads(text)
    if override:
        with open(override, "rb") as handle:
            try:
                extra = tomllib.load(handle)
            except UnicodeDecodeError:
                raise PricesError("not UTF-8 text; expected TOML like providers.toml") from None
            except tomllib.TOMLDecodeError as exc:
                raise PricesError(f"invalid TOML ({exc})") from None
        _merge(table, extra)
        _check(table)
    return table


def _number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PricesError(f"{where} must be a number >= 0, not {value!r}")


def _check(table: dict[str, Any]) -> None:
    profiles, prices = table.get("profiles"), table.get("prices")
    if not isinstance(profiles, dict) or not isinstance(prices, dict):
        raise PricesError("'profiles' and 'prices' must be tables, as in providers.toml")
    for name, rules in profiles.items():
        if not isinstance(rules, dict):
            raise PricesError(f"profiles.{name} must be a table")
        for key in _NUMBERS:
            if key in rules:
                _number(rules[key], f"profiles.{name}.{key}")
        by_model = rules.get("minimum_by_model", {})
        if not isinstance(by_model, dict):
            raise PricesError(f"profiles.{name}.minimum_by_model must be a table")
        for model, value in by_model.items():
            _number(value, f"profiles.{name}.minimum_by_model.{model}")
    if "default" not in prices:
        raise PricesError("prices.default is missing")
    for model, entry in prices.items():
        if not isinstance(entry, dict) or not {"input", "cached"} <= entry.keys():
            raise PricesError(f"prices.{model} must be {{ input = N, cached = N }}")
        for key in ("input", "cached"):
            _number(entry[key], f"prices.{model}.{key}")


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def provider_for(fmt: str, model: str | None) -> str:
    """The provider whose cache rules apply to a request."""
    name = (model or "").lower()
    if fmt == "anthropic" or name.startswith("claude"):
        return "anthropic"
    for provider in ("deepseek", "gemini"):
        if provider in name:
            return provider
    if fmt.startswith("openai") and (
        not name or name.startswith(("gpt", "o1", "o3", "o4", "chatgpt"))
    ):
        return "openai"
    return "generic"


def _by_prefix(mapping: dict[str, Any], model: str | None, default: Any) -> Any:
    name = (model or "").lower().rsplit("/", 1)[-1]
    keys = [k for k in mapping if name.startswith(k.lower())]
    return mapping[max(keys, key=len)] if keys else default


def minimum_tokens(table: dict, provider: str, model: str | None) -> int:
    rules = table["profiles"][provider]
    return int(_by_prefix(rules.get("minimum_by_model", {}), model, rules.get("minimum", 0)))


def increment(table: dict, provider: str, block_size: int) -> int:
    """Tokens a provider's cached prefixes grow by (the block size for "generic")."""
    step = int(table["profiles"][provider].get("increment", 0))
    return step or (block_size if provider == "generic" else 1)


def uses_breakpoints(table: dict, provider: str) -> bool:
    """Does the provider cache only prefixes that end at a cache_control breakpoint?"""
    return bool(table["profiles"][provider].get("breakpoints"))


def ttl_s(table: dict, provider: str) -> float:
    """Idle seconds a provider keeps a cached prefix by default."""
    return float(table["profiles"][provider].get("ttl_s", 300))


def max_ttl_s(table: dict, provider: str) -> float:
    """The longest a provider may keep a prefix (its longest retention option)."""
    rules = table["profiles"][provider]
    return float(rules.get("max_ttl_s", rules.get("ttl_s", 300)))


def prefix_rule(shared: int, minimum: int, step: int) -> int:
    """The cacheable part of ``shared`` leading tokens under a provider's rule: nothing
    under ``minimum`` tokens, then steps of ``step`` tokens (from the minimum, when the
    minimum is not itself a multiple of the step)."""
    if shared < max(minimum, 1):
        return 0
    step = max(step, 1)
    base = minimum if minimum % step else 0
    return base + (shared - base) // step * step


def cacheable_tokens(
    table: dict,
    provider: str,
    model: str | None,
    shared: int,
    breakpoints: list[int] | None,
    block_size: int,
    minimum: int | None = None,
) -> int:
    """How many of ``shared`` leading tokens the provider can serve from its cache.

    ``breakpoints`` (token positions of cache_control markers) apply to providers
    that cache only up to one; None when they are not known (spans carry no
    markers), and then only the minimum applies. ``minimum`` saves looking it up.
    """
    if minimum is None:
        minimum = minimum_tokens(table, provider, model)
    if uses_breakpoints(table, provider) and breakpoints is not None:
        fits = [bp for bp in breakpoints if minimum <= bp <= shared]
        return max(fits, default=0)
    return prefix_rule(shared, minimum, increment(table, provider, block_size))


def price(table: dict, model: str | None) -> dict[str, float]:
    """USD per million input tokens, ``input`` and ``cached``, for a model."""
    found = _by_prefix(table["prices"], model, table["prices"]["default"])
    return {"input": float(found["input"]), "cached": float(found["cached"])}


def missed_cost_usd(table: dict, model: str | None, tokens: float = 1) -> float:
    """What ``tokens`` prompt tokens of a model cost above their cached price: the bill of
    a cache miss (one token's, by default)."""
    found = price(table, model)
    return tokens * (found["input"] - found["cached"]) / 1e6


def implications(
    table: dict,
    provider: str,
    model: str | None,
    shared: int,
    total_b: int,
    breakpoints: list[int],
    block_size: int,
) -> Implication:
    """Cacheable tokens of B, the tokens it pays full price for, and their extra cost."""
    cacheable = cacheable_tokens(table, provider, model, shared, breakpoints, block_size)
    found = price(table, model)
    missed = max(total_b - cacheable, 0)
    return Implication(
        provider,
        minimum_tokens(table, provider, model),
        cacheable,
        missed,
        round(missed_cost_usd(table, model, missed), 6),
        found["input"],
        found["cached"],
    )
