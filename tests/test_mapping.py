"""Spans from every instrumentation in the wild become the same request row."""

from __future__ import annotations

import json

import pytest

from analysis import fingerprint
from collector import mapping
from collector.otlp import Record
from collector.store import REQUEST_SCHEMA


def _record(attrs, events=(), status=0, body=None, name="chat gpt-4o"):
    return Record(
        "span",
        "ab" * 16,
        "cd" * 8,
        "",
        name,
        3,
        1_000_000_000,
        2_000_000_000,
        status,
        "",
        dict(attrs),
        {"service.name": "svc"},
        list(events),
        body,
    )


def _row(attrs, **kw):
    found = mapping.map_record(_record(attrs, **kw))
    assert found is not None
    return found[0]


def test_row_has_exactly_the_store_columns():
    assert set(_row({"gen_ai.system": "openai"})) == set(REQUEST_SCHEMA)


CONVENTIONS = {
    "semconv": {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 1536,
    },
    "semconv_old": {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 2000,
        "gen_ai.usage.completion_tokens": 10,
        "gen_ai.usage.cache_read_input_tokens": 1536,
    },
    "openllmetry": {
        "gen_ai.system": "openai",
        "llm.request.model": "gpt-4o",
        "llm.usage.prompt_tokens": 2000,
        "llm.usage.completion_tokens": 10,
        "gen_ai.usage.cache_read_input_tokens": 1536,
        "llm.request.type": "chat",
    },
    "openinference": {
        "llm.provider": "openai",
        "llm.model_name": "gpt-4o",
        "llm.token_count.prompt": 2000,
        "llm.token_count.completion": 10,
        "llm.token_count.prompt_details.cache_read": 1536,
    },
    "openlit": {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 10,
        "gen_ai.usage.prompt_tokens_details.cached_tokens": 1536,
    },
    "raw_usage": {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "output.value": json.dumps(
            {
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 1536},
                }
            }
        ),
    },
}


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_every_convention_maps_to_the_same_usage(name):
    row = _row(CONVENTIONS[name])
    assert (row["provider"], row["request_model"]) == ("openai", "gpt-4o")
    assert (row["prompt_tokens"], row["cached_tokens"], row["output_tokens"]) == (2000, 1536, 10)
    assert row["operation"] == "chat"
    assert row["attributes"] is None  # everything was claimed


def test_anthropic_input_tokens_exclude_the_cache():
    row = _row(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.cache_read_input_tokens": 4000,
            "gen_ai.usage.cache_creation_input_tokens": 300,
        }
    )
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        4312,
        4000,
        300,
    )
    semconv = _row(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 4312,
            "gen_ai.usage.cache_read.input_tokens": 4000,
        }
    )
    assert semconv["prompt_tokens"] == 4312  # already all input: left alone


def test_ours_ttft_and_fingerprint_attributes():
    row = _row(
        {
            "gen_ai.system": "openai",
            "cachediag.route": "/chat",
            "cachediag.replica": "r2",
            "cachediag.session_key": "u1",
            "cachediag.prefix_hash": "abc",
            "cachediag.tools_count": 3,
            "cachediag.block_hashes": [1, -2],
            "cachediag.ttft_ms": 250.0,
            "gen_ai.conversation.id": "c9",
            "custom.flag": True,
        }
    )
    assert (row["route"], row["replica"], row["session_key"]) == ("/chat", "r2", "u1")
    assert (row["prefix_hash"], row["tools_count"]) == ("abc", 3)
    assert fingerprint.unpack_hashes(row["block_hashes"]) == [1, -2]
    assert (row["ttft_ms"], row["conversation_id"]) == (250.0, "c9")
    assert json.loads(row["attributes"]) == {"custom.flag": True}


def test_ttft_from_semconv_seconds_or_a_first_token_event():
    assert (
        _row({"gen_ai.system": "x", "gen_ai.response.time_to_first_chunk": 0.5})["ttft_ms"] == 500.0
    )
    row = _row({"gen_ai.system": "x"}, events=[("gen_ai.content.first_token", 1_300_000_000)])
    assert row["ttft_ms"] == 300.0


def test_errors_and_provider_verdicts_are_kept():
    row = _row(
        {
            "gen_ai.system": "openai",
            "error.type": "RateLimitError",
            "cachediag.usage": json.dumps(
                {"prompt_tokens": 5, "prompt_cache_diagnostics": {"reason": "tools_changed"}}
            ),
        },
        status=2,
    )
    assert row["is_error"] and row["error_type"] == "RateLimitError"
    assert json.loads(row["provider_verdict"]) == {
        "prompt_cache_diagnostics": {"reason": "tools_changed"}
    }


def test_spans_that_are_not_llm_calls_are_skipped():
    assert mapping.map_record(_record({"db.system": "postgresql"})) is None
    assert mapping.map_record(_record({})) is None


def test_logs_without_ids_get_a_stable_content_id():
    rec = Record(
        "log",
        "",
        "",
        "",
        "",
        0,
        5,
        5,
        0,
        "",
        {"gen_ai.system": "openai"},
        {},
        [],
        {"usage": {"prompt_tokens": 7}},
    )
    first, _ = mapping.map_record(rec)
    second, _ = mapping.map_record(rec)
    assert first["id"] == second["id"] and first["id"].startswith("log-")
    assert first["prompt_tokens"] == 7
