"""Spans from every instrumentation in the wild become the same request row."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import fingerprint
from collector import ingest, mapping, otlp
from collector.decoded import Record
from collector.store.database import REQUEST_SCHEMA, Store


def _record(attrs, events=(), status=0, body=None, name="chat gpt-4o"):
    return Record(
        signal="span",
        trace_id="ab" * 16,
        span_id="cd" * 8,
        name=name,
        kind=3,
        start_ns=1_000_000_000,
        end_ns=2_000_000_000,
        status_code=status,
        attributes=dict(attrs),
        resource={"service.name": "svc"},
        events=list(events),
        body=body,
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
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.request.model_name": "gpt-4o",
        "llm.model_name": "gpt-4o-2024-08-06",  # the response model
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
        signal="log",
        start_ns=5,
        end_ns=5,
        attributes={"gen_ai.system": "openai"},
        body={"usage": {"prompt_tokens": 7}},
    )
    first, _ = mapping.map_record(rec)
    second, _ = mapping.map_record(rec)
    assert first["id"] == second["id"] and first["id"].startswith("log-")
    assert first["prompt_tokens"] == 7


# --- range checks before a row is stored ------------------------------------------------------

OUT_OF_RANGE = {
    "negative input tokens": {"gen_ai.usage.input_tokens": -(2**63)},
    "implausible output tokens": {"gen_ai.usage.output_tokens": mapping.MAX_TOKENS + 1},
    "negative cached tokens": {"gen_ai.usage.cache_read.input_tokens": -1},
    "infinite tokens": {"gen_ai.usage.input_tokens": float("inf")},
    "tools_count past int32": {"cachediag.tools_count": 2**31},
    "negative tools_count": {"cachediag.tools_count": -1},
    "block_size past int32": {"cachediag.block_size": 2**40},
    "zero block_size": {"cachediag.block_size": 0},
    "total tokens past the max": {"cachediag.total_tokens": 2**62},
    "infinite ttft": {"cachediag.ttft_ms": float("inf")},
    "nan ttft seconds": {"gen_ai.response.time_to_first_chunk": float("nan")},
    "usage json with inf": {"cachediag.usage": '{"prompt_tokens": 1e400}'},
    "usage json too deep": {"cachediag.usage": '{"a":' + "[" * 5000 + "]" * 5000 + "}"},
    "usage json deep": {"cachediag.usage": '{"a":' + "[" * 40 + "]" * 40 + "}"},
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_values_that_do_not_fit_reject_the_record(case):
    with pytest.raises(mapping.Rejected):
        mapping.map_record(_record({"gen_ai.system": "openai", **OUT_OF_RANGE[case]}))


@pytest.mark.parametrize("start", [2**63, 2**64 - 1, -1])
def test_start_times_past_the_timestamp_range_reject_the_record(start):
    record = _record({"gen_ai.system": "openai"})
    record.start_ns = start
    with pytest.raises(mapping.Rejected, match="start_ns"):
        mapping.map_record(record)


def test_values_at_the_limits_are_kept():
    row = _row(
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": mapping.MAX_TOKENS,
            "gen_ai.usage.output_tokens": 0,
            "cachediag.tools_count": 2**31 - 1,
            "cachediag.block_size": 1,
            "cachediag.segments": '[["tools[0]", "tool", 0, 3, "h"]]',
        }
    )
    assert (row["prompt_tokens"], row["tools_count"], row["block_size"]) == (2**31, 2**31 - 1, 1)
    Store.frame([row])  # fits the column types


def test_lone_surrogates_become_replacement_characters():
    record = _record({"gen_ai.system": "openai", "cachediag.route": "r\ud800", "odd\udfff": 1})
    record.resource = {"service.name": "svc\udc00"}
    record.name = "chat \ud83d"
    row, _ = mapping.map_record(record)
    assert (row["route"], row["service"], row["name"]) == ("r\ufffd", "svc\ufffd", "chat \ufffd")
    Store.frame([row])  # every string encodes as UTF-8
    json.loads(row["attributes"])


def test_a_rejected_record_does_not_spoil_its_batch(tmp_path):
    good = _record({"gen_ai.system": "openai", "gen_ai.usage.input_tokens": 5})
    bad = _record({"gen_ai.system": "openai", "gen_ai.usage.input_tokens": -(2**63)})
    bad.span_id, bad.name = "ef" * 8, "chat poison"
    prepared = ingest.from_records(otlp.Decoded([good, bad], rejected=1, error="earlier"))
    assert (len(prepared.frame), prepared.rejected, prepared.records) == (1, 2, 2)
    assert "poison" in prepared.error and "prompt_tokens" in prepared.error
    store = Store(str(tmp_path / "t.duckdb"))
    try:
        assert store.insert(prepared.frame, prepared.contents) == 1
        (total,) = store.con.execute("SELECT sum(prompt_tokens) FROM requests").fetchone()
        assert total == 5
    finally:
        store.close()


hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=6),
    st.lists(st.integers(), max_size=3),
)
_NAMES = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "cachediag.tools_count",
    "cachediag.block_size",
    "cachediag.total_tokens",
    "cachediag.ttft_ms",
    "cachediag.route",
    "cachediag.block_hashes",
    "cachediag.segments",
    "cachediag.usage",
    "gen_ai.response.time_to_first_chunk",
]


@settings(max_examples=400, deadline=None)
@given(
    attrs=st.dictionaries(st.sampled_from(_NAMES), hostile_values, max_size=6),
    start=st.integers(-(2**64), 2**65),
    end=st.integers(0, 2**64),
    service=hostile_values,
)
def test_any_attribute_values_give_a_storable_row_or_a_rejection(attrs, start, end, service):
    record = _record({"gen_ai.system": "openai", **attrs})
    record.start_ns, record.end_ns, record.resource = start, end, {"service.name": service}
    try:
        mapped = mapping.map_record(record)
    except mapping.Rejected:
        return
    Store.frame([mapped[0]])


def test_captured_content_is_kept_and_mended():
    _, content = mapping.map_record(_record({"gen_ai.system": "openai", "cachediag.content": "hi"}))
    assert content == "hi"
    _, content = mapping.map_record(_record({"gen_ai.system": "x", "cachediag.content": "\ud800"}))
    assert content == "\ufffd"
