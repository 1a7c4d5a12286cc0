"""What each instrumentation calls a column, with its unit, and Anthropic's input tokens by
the convention of the library that sent them (#16)."""

from __future__ import annotations

import json

import pytest

from collector import mapping
from collector.decoded import Record


def _record(attrs, events=()):
    return Record(
        signal="span",
        trace_id="ab" * 16,
        span_id="cd" * 8,
        name="chat m",
        kind=3,
        start_ns=1_000_000_000,
        end_ns=2_000_000_000,
        attributes=dict(attrs),
        resource={"service.name": "svc"},
        events=list(events),
    )


def _row(attrs, **kw):
    found = mapping.map_record(_record(attrs, **kw))
    assert found is not None
    return found[0]


# --- names other instrumentations use (#16) --------------------------------------------------


def test_cache_write_spelled_as_the_anthropic_sdk_does():
    row = _row({"gen_ai.system": "openai", "gen_ai.usage.cache_write.input_tokens": 7})
    assert row["cache_write_tokens"] == 7 and row["attributes"] is None


def test_server_time_to_first_token_is_seconds():
    row = _row({"gen_ai.system": "openai", "gen_ai.server.time_to_first_token": 0.25})
    assert row["ttft_ms"] == pytest.approx(250.0)


@pytest.mark.parametrize(
    "events",
    [
        [("First Token Stream Event", 1_120_000_000)],  # OpenInference
        [  # OpenLLMetry: one event per chunk, the first one counts
            ("gen_ai.content.completion.chunk", 1_300_000_000),
            ("gen_ai.content.completion.chunk", 1_120_000_000),
            ("gen_ai.content.completion.chunk", 1_500_000_000),
        ],
    ],
)
def test_time_to_first_token_from_span_events(events):
    assert _row({"gen_ai.system": "openai"}, events=events)["ttft_ms"] == pytest.approx(120.0)


def test_traceloop_session_id_is_the_conversation():
    attrs = {"gen_ai.system": "openai", "traceloop.association.properties.session_id": "s-1"}
    row = _row(attrs)
    assert row["conversation_id"] == "s-1" and row["attributes"] is None


def test_openinference_model_names():
    row = _row(
        {
            "openinference.span.kind": "LLM",
            "llm.request.model_name": "gpt-4o",
            "llm.response.model_name": "gpt-4o-2024-08-06",
        }
    )
    assert (row["request_model"], row["response_model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    row = _row({"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06"})
    assert (row["request_model"], row["response_model"]) == (None, "gpt-4o-2024-08-06")


def test_logfire_response_data_gives_the_usage():
    usage = {"input_tokens": 3248, "cache_read_input_tokens": 1754, "output_tokens": 12}
    row = _row(
        {
            "logfire.msg_template": "Message with {request_data[model]!r}",
            "gen_ai.system": "anthropic",
            "response_data": json.dumps({"message": {"role": "assistant"}, "usage": usage}),
        }
    )
    assert (row["prompt_tokens"], row["cached_tokens"], row["output_tokens"]) == (5002, 1754, 12)


# --- Anthropic input tokens, by the convention of the library that sent them ------------------

_ANTHROPIC = {"gen_ai.system": "anthropic", "gen_ai.usage.cache_read.input_tokens": 1754}


@pytest.mark.parametrize(
    "library, marker, reported, stored",
    [
        # input_tokens passed through as Anthropic reports it (the cache excluded)
        ("openlit", {"telemetry.sdk.name": "openlit"}, 3248, 5002),
        ("logfire", {"logfire.span_type": "span"}, 3248, 5002),
        # the cache already added
        ("openllmetry", {"llm.request.type": "chat"}, 5002, 5002),
        ("openinference", {"openinference.span.kind": "LLM"}, 5002, 5002),
        ("cachediag", {"cachediag.prefix_hash": "p"}, 5002, 5002),
        # no marker: semconv (the count includes the cache), whatever the sizes say
        ("semconv", {}, 3248, 3248),
        ("semconv", {}, 5002, 5002),
        # ... unless the cache alone is more than the count: then it cannot include it
        ("semconv", {}, 1000, 2754),
    ],
)
def test_anthropic_input_tokens_by_library_convention(library, marker, reported, stored):
    row = _row(_ANTHROPIC | marker | {"gen_ai.usage.input_tokens": reported})
    assert row["prompt_tokens"] == stored, library


def test_the_convention_may_come_from_the_resource():
    record = _record(_ANTHROPIC | {"gen_ai.usage.input_tokens": 3248})
    record.resource["telemetry.sdk.name"] = "openlit"
    assert mapping.map_record(record)[0]["prompt_tokens"] == 5002


def test_other_providers_are_never_corrected():
    row = _row(
        {
            "gen_ai.system": "openai",
            "telemetry.sdk.name": "openlit",
            "gen_ai.usage.input_tokens": 2000,
            "gen_ai.usage.cache_read.input_tokens": 1536,
        }
    )
    assert row["prompt_tokens"] == 2000
