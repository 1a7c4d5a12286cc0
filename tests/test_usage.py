"""Every provider's usage object normalizes to all-input prompt tokens."""

from __future__ import annotations

import pytest

from analysis import usage


@pytest.mark.parametrize(
    "raw, want",
    [
        (
            {
                "prompt_tokens": 2000,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 10},
            },
            (2000, 1536, 10, 50),
        ),  # OpenAI Chat, vLLM
        (
            {
                "input_tokens": 3000,
                "output_tokens": 9,
                "input_tokens_details": {"cached_tokens": 2048},
            },
            (3000, 2048, None, 9),
        ),  # OpenAI Responses
        (
            {
                "input_tokens": 12,
                "cache_read_input_tokens": 4000,
                "cache_creation_input_tokens": 300,
                "output_tokens": 7,
            },
            (4312, 4000, 300, 7),
        ),  # Anthropic
        (
            {
                "prompt_tokens": 900,
                "prompt_cache_hit_tokens": 640,
                "prompt_cache_miss_tokens": 260,
                "completion_tokens": 4,
            },
            (900, 640, None, 4),
        ),  # DeepSeek
        (
            {"prompt_tokens": 1500, "cached_tokens": 1200, "completion_tokens": 3},
            (1500, 1200, None, 3),
        ),  # Kimi
        (
            {
                "usageMetadata": {
                    "promptTokenCount": 5000,
                    "cachedContentTokenCount": 4096,
                    "candidatesTokenCount": 20,
                }
            },
            (5000, 4096, None, 20),
        ),  # Gemini
        ({"usage": {"prompt_tokens": 10}}, (10, None, None, None)),  # a whole response
        ("not a dict", (None, None, None, None)),
    ],
)
def test_from_provider(raw, want):
    got = usage.from_provider(raw)
    assert (got.prompt_tokens, got.cached_tokens, got.cache_write_tokens, got.output_tokens) == want


def test_provider_verdicts_are_found_where_they_live():
    assert usage.verdict({"prompt_cache_diagnostics": {"reason": "tools_changed"}}) == {
        "prompt_cache_diagnostics": {"reason": "tools_changed"}
    }
    assert usage.verdict({"diagnostics": {"cache_miss_reason": "system_changed"}}) == {
        "cache_miss_reason": "system_changed"
    }
    assert usage.verdict({"usage": {}}) is None
