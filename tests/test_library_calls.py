"""What running the real libraries showed (tests/test_library_conversations.py), rule by
rule: the SDK's own span beside an instrumentation's, openai-v2's message events split
over exports, Logfire 5's usage, OpenLIT's block-list system text, in any arrival order."""

from __future__ import annotations

import json

import pytest

from collector import attributes as A
from collector import mapping
from collector.decoded import Record
from collector.store.database import Store
from tests.test_calls import ORDERS, TRACE, _arrive, _logs, _rows, _span, _store, _traces

PARENT, LIBRARY, SDK = b"\x33" * 8, b"\x44" * 8, b"\x55" * 8
T0 = 1_763_800_000_000_000_000
# OpenLLMetry's anthropic span and the SDK's own, both children of the service's span
LIBRARY_SPAN = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.id": "msg_1",
    "gen_ai.usage.input_tokens": 1930,
    "gen_ai.usage.output_tokens": 13,
    "traceloop.association.properties.session_id": "conv-1",
}
SDK_SPAN = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5",
    "gen_ai.response.id": "msg_1",
    "gen_ai.usage.input_tokens": 1930,
    "gen_ai.usage.cache_read.input_tokens": 1889,
    "gen_ai.usage.cache_write.input_tokens": 0,
    "gen_ai.response.time_to_first_chunk": 0.135,
}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db.duckdb"))
    yield s
    s.close()


def _siblings(sdk_attrs=SDK_SPAN, sdk_start=T0 + 10**8):
    library = _span(LIBRARY, LIBRARY_SPAN, parent=PARENT, name="anthropic.chat")
    sdk = _span(SDK, sdk_attrs, parent=PARENT, name="anthropic.messages.create", start=sdk_start)
    return [_traces(library), _traces(sdk)]


@pytest.mark.parametrize("order", ORDERS)
def test_the_sdk_span_beside_an_instrumentation_span_is_one_row(store, order):
    _arrive(store, _siblings(), order)
    (row,) = _rows(store)
    assert row["id"] == TRACE.hex() + LIBRARY.hex()  # the earlier span
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        1930,
        1889,
        0,
    )
    assert row["ttft_ms"] == pytest.approx(135) and row["conversation_id"] == "conv-1"


def test_two_calls_under_one_span_stay_two_rows(store):
    other = {**SDK_SPAN, "gen_ai.response.id": "msg_2"}  # another call of the same parent
    _store(store, *_siblings(other))
    assert {r["span_id"] for r in _rows(store)} == {LIBRARY.hex(), SDK.hex()}


def test_calls_with_one_response_id_far_apart_in_time_stay_two_rows(store):
    _store(store, *_siblings(sdk_start=T0 + 60 * 10**9))  # a fake provider's fixed id
    assert len(_rows(store)) == 2


SYSTEM = "You are the support assistant. " * 400  # past the cache minimum
MESSAGES = [
    ("gen_ai.system.message", {"content": SYSTEM}),
    ("gen_ai.user.message", {"content": "Where is order 7?"}),
    ("gen_ai.assistant.message", {"content": "It shipped."}),
    ("gen_ai.user.message", {"content": "And order 8?"}),
]
CALL = {
    "gen_ai.system": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1500,
    "gen_ai.usage.output_tokens": 9,
}


def _events(messages, start=T0):
    return _logs(
        *(
            {
                "trace_id": TRACE,
                "span_id": LIBRARY,
                "name": name,
                "time": start + i,
                "attributes": {"gen_ai.system": "openai"},
                "body": body,
            }  # fmt: skip
            for i, (name, body) in enumerate(messages)
        )
    )


def _events_body() -> dict:
    messages = [{"role": n.split(".")[1], "content": b["content"]} for n, b in MESSAGES]
    return {"model": "gpt-4o", "messages": messages}


@pytest.mark.parametrize("order", ORDERS)
def test_a_call_whose_prompt_came_as_events_is_fingerprinted(store, order):
    from collector.bodies import fingerprint_body

    _arrive(store, [_events(MESSAGES), _traces(_span(LIBRARY, CALL, name="chat gpt-4o"))], order)
    (row,) = _rows(store)
    _, want = fingerprint_body(_events_body())
    assert row["prefix_hash"] == want[A.PREFIX_HASH.name]
    assert row["total_tokens"] == want[A.TOTAL_TOKENS.name]
    assert json.loads(row["attributes"])[A.REBUILT_FROM.name] == "gen_ai.<role>.message"
    assert row["prompt_tokens"] == 1500


def test_events_split_over_exports_fingerprint_the_whole_prompt_once_all_came(store):
    from collector.bodies import fingerprint_body

    span = _traces(_span(LIBRARY, CALL, name="chat gpt-4o"))
    _store(store, _events(MESSAGES[:2]), span)
    first = _rows(store)[0]["total_tokens"]
    _store(store, _events(MESSAGES[2:], start=T0 + 2))
    (row,) = _rows(store)
    _, want = fingerprint_body(_events_body())
    assert first < row["total_tokens"] == want[A.TOTAL_TOKENS.name]


def test_events_without_content_kept_give_no_fingerprint_and_keep_no_text():
    record = Record(
        "log", TRACE.hex(), LIBRARY.hex(), name="gen_ai.user.message",
        attributes={"gen_ai.system": "openai"}, body={"content": "Acme order 7"},
    )  # fmt: skip
    kept, _ = mapping.map_record(record)
    assert "Acme" in kept["attributes"]
    dropped, _ = mapping.map_record(record, keep_content=False)
    assert "Acme" not in (dropped["attributes"] or "")


def _logfire(**usage) -> dict:
    return mapping.map_record(
        Record(
            "span",
            "t",
            "s",
            name="Message with 'claude-sonnet-4-5'",
            attributes={
                "gen_ai.provider.name": "anthropic",
                "logfire.span_type": "span",
                "gen_ai.request.model": "claude-sonnet-4-5",
                **usage,
            },
        )  # fmt: skip
    )[0]


def test_logfire_5_counts_the_cache_in_its_input_and_its_raw_usage_fills_zeros():
    raw = {"input_tokens": 41, "cache_read_input_tokens": 1889, "cache_creation_input_tokens": 0}
    row = _logfire(
        **{"gen_ai.usage.input_tokens": 1930, "gen_ai.usage.cache_read.input_tokens": 1889},
        **{"gen_ai.usage.raw": json.dumps({**raw, "output_tokens": 12})},
    )
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        1930,
        1889,
        0,
    )
    cache = {"gen_ai.usage.cache_read.input_tokens": 1889}
    old = _logfire(**{"gen_ai.usage.input_tokens": 41}, **cache)
    assert old["prompt_tokens"] == 1930  # semconv 1: Anthropic's input_tokens passed through


def test_openlit_system_text_as_a_block_list_is_read():
    from collector import captured

    text = [{"type": "text", "text": "Be brief. " * 300}]
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": text}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
    ]
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": text}]),
    }
    captured.fingerprint_captured(attrs)
    assert attrs[A.PREFIX_HASH.name] and A.BREAKPOINTS.name not in attrs  # markers lost
    assert attrs[A.CONTENT.name].count("Be brief.") == 300
