"""Provider usage objects, normalized: prompt tokens always mean all input tokens.

Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's,
DeepSeek's, Kimi's and Gemini's prompt counts include the cached part. After
normalization ``cached_tokens / prompt_tokens`` is the hit ratio for every
provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    """Token usage of one request, normalized across providers."""

    prompt_tokens: int | None = None  # all input tokens, cached included
    cached_tokens: int | None = None  # read from the prompt cache
    cache_write_tokens: int | None = None  # written to the prompt cache
    output_tokens: int | None = None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _first(*values: Any) -> int | None:
    for value in values:
        got = _int(value)
        if got is not None:
            return got
    return None


def from_provider(usage: Any) -> Usage:
    """Normalize a provider's usage object (or a response holding one)."""
    if not isinstance(usage, dict):
        return Usage()
    if isinstance(usage.get("usage"), dict):
        usage = usage["usage"]
    elif isinstance(usage.get("usageMetadata"), dict):
        usage = usage["usageMetadata"]
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        return _anthropic(usage)
    if "promptTokenCount" in usage:  # Gemini: cached part included
        return Usage(
            _int(usage.get("promptTokenCount")),
            _first(usage.get("cachedContentTokenCount"), 0),
            None,
            _int(usage.get("candidatesTokenCount")),
        )
    if "prompt_cache_hit_tokens" in usage:  # DeepSeek
        hit, miss = (
            _int(usage.get("prompt_cache_hit_tokens")),
            _int(usage.get("prompt_cache_miss_tokens")),
        )
        total = _first(
            usage.get("prompt_tokens"), (hit or 0) + (miss or 0) if miss is not None else None
        )
        return Usage(total, hit, None, _int(usage.get("completion_tokens")))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    return Usage(
        _first(usage.get("prompt_tokens"), usage.get("input_tokens")),
        _first(_dig(details, "cached_tokens"), usage.get("cached_tokens")),
        _first(_dig(details, "cache_write_tokens"), usage.get("cache_write_tokens")),
        _first(usage.get("completion_tokens"), usage.get("output_tokens")),
    )


def _anthropic(usage: dict) -> Usage:
    read = _first(usage.get("cache_read_input_tokens"), 0)
    write = _first(usage.get("cache_creation_input_tokens"), 0)
    uncached = _int(usage.get("input_tokens"))
    total = None if uncached is None else uncached + read + write
    return Usage(total, read, write, _int(usage.get("output_tokens")))


def verdict(response: Any) -> Any:
    """The provider's own cache-miss diagnostics, when the response carries them."""
    if not isinstance(response, dict):
        return None
    for key in ("prompt_cache_diagnostics", "cache_miss_reason"):
        if key in response:
            return {key: response[key]}
    for inner in ("diagnostics", "usage"):
        found = verdict(response.get(inner)) if isinstance(response.get(inner), dict) else None
        if found:
            return found
    return None


def provider_shape(provider: str, total: int, cached: int, output: int) -> dict[str, int | dict]:
    """Usage as the provider reports it (what ``from_provider`` reads back): Anthropic's
    input excludes the cache reads, DeepSeek counts hits and misses, the rest (OpenAI's
    shape) nest the cached tokens in the prompt's details."""
    if provider == "anthropic":
        return {
            "input_tokens": total - cached,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": output,
        }
    if provider == "deepseek":
        return {
            "prompt_tokens": total,
            "prompt_cache_hit_tokens": cached,
            "prompt_cache_miss_tokens": total - cached,
            "completion_tokens": output,
        }
    return {
        "prompt_tokens": total,
        "completion_tokens": output,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
