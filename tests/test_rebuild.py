"""Other libraries' captured prompts, rebuilt and fingerprinted at ingest, give the
fingerprint our own instrumentation gives the same call."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collector import attributes as A
from collector import captured, mapping, rebuild, records
from collector.decoded import Record
from tests import cases, conventions

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT = (
    A.PREFIX_HASH.name,
    A.TOOLS_HASH.name,
    A.TOOLS_COUNT.name,
    A.BLOCK_HASHES.name,
    A.TOTAL_TOKENS.name,
    A.BREAKPOINTS.name,
    A.ENCODING.name,
)


def _spec() -> dict:
    """cases' conversation (system prompt, 3 tools, user/assistant/tool turns), as
    every message-list convention can carry it: no chat reasoning_content (no library
    records it) and arguments as OpenAI models emit them (compact)."""
    spec = cases.base_spec()
    call = spec["turns"][1]
    call["reasoning"] = None
    cid, name, args = call["call"]
    call["call"] = (cid, name, json.dumps(json.loads(args), separators=(",", ":")))
    return spec


def chat_body() -> dict:
    return cases.build("openai_chat", _spec())


def anthropic_body() -> dict:
    spec = cases.base_spec()
    body = cases.build("anthropic", spec)
    body["system"] = body["system"][0]["text"]  # no cache_control: lists do not carry it
    return body


def ours(body: dict) -> dict:
    """What request_record (the instrumentation's step) sets for ``body``."""
    return records.request_record({"time": 1, "request": body}).attributes


def rebuilt(attrs: dict) -> dict:
    out = dict(attrs)
    captured.fingerprint_captured(out)
    return out


def _segments(attrs: dict, paths: bool = True) -> list:
    segs = json.loads(attrs[A.SEGMENTS.name])
    return segs if paths else [s[1:] for s in segs]


@pytest.mark.parametrize("convention", sorted(conventions.CHAT))
def test_a_chat_call_in_any_convention_fingerprints_as_ours(convention):
    body = chat_body()
    want, got = ours(body), rebuilt(conventions.CHAT[convention](body))
    assert {k: got.get(k) for k in FINGERPRINT} == {k: want[k] for k in FINGERPRINT}
    assert _segments(got) == _segments(want)
    assert [s[1] for s in _segments(got)][:4] == ["tool", "tool", "tool", "system"]
    assert got[A.CONTENT.name] == want[A.CONTENT.name]


@pytest.mark.parametrize("convention", sorted(conventions.ANTHROPIC))
def test_an_anthropic_call_in_any_convention_fingerprints_as_ours(convention):
    body = anthropic_body()
    want, got = ours(body), rebuilt(conventions.ANTHROPIC[convention](body))
    exact = convention in ("openinference_body", "logfire_body")
    _same_but_lost_markers(got, want, exact)
    # a one-text-block message comes back as a string: same text, path without [0]
    assert _segments(got, exact) == _segments(want, exact)
    assert got[A.CONTENT.name] == want[A.CONTENT.name]


def _same_but_lost_markers(got: dict, want: dict, full_body: bool) -> None:
    """The same fingerprint; an Anthropic message list without cache_control markers may
    have lost them: its breakpoints are unknown (absent), a full body's are known."""
    keys = [k for k in FINGERPRINT if full_body or k != A.BREAKPOINTS.name]
    assert {k: got.get(k) for k in keys} == {k: want[k] for k in keys}
    assert full_body or A.BREAKPOINTS.name not in got


def test_an_anthropic_list_that_kept_its_markers_keeps_its_breakpoints():
    body = cases.build("anthropic", cases.base_spec())
    body["messages"][2]["content"][0]["cache_control"] = {"type": "ephemeral"}  # tool result
    got = rebuilt(conventions.ANTHROPIC["openllmetry_legacy"](body))  # its blocks as JSON
    # the tool result's marker is kept; the system's went with its blocks joined into a text
    assert json.loads(got[A.BREAKPOINTS.name]) == json.loads(ours(body)[A.BREAKPOINTS.name])[1:]
    assert A.BREAKPOINTS.name not in rebuilt(conventions.ANTHROPIC["semconv"](body))


def test_a_full_body_keeps_anthropic_breakpoints():
    body = cases.build("anthropic", cases.base_spec())  # system block with cache_control
    want = ours(body)
    assert json.loads(want[A.BREAKPOINTS.name])
    for convention in ("openinference_body", "logfire_body"):
        got = rebuilt(conventions.ANTHROPIC[convention](body))
        assert got[A.BREAKPOINTS.name] == want[A.BREAKPOINTS.name]
        assert got[A.BLOCK_HASHES.name] == want[A.BLOCK_HASHES.name]


def test_spaced_arguments_parsed_by_a_library_change_only_the_tail():
    """A library that parses arguments loses their spacing: the prefix still matches."""
    spec = _spec()
    spec["turns"][1]["call"] = ("call_1", "get_order", '{"order_id": "1182"}')
    body = cases.build("openai_chat", spec)
    want, got = ours(body), rebuilt(conventions.semconv_chat(body))
    assert got[A.PREFIX_HASH.name] == want[A.PREFIX_HASH.name]
    pairs = list(zip(_segments(want), _segments(got), strict=True))
    assert [w[0] for w, g in pairs if w[4] != g[4]] == ["messages[2].tool_calls"]  # hashes
    legacy = rebuilt(conventions.openllmetry_chat(body))  # keeps the string as sent
    assert _segments(legacy) == _segments(want)


def test_openai_v2_events_rebuild_a_conversation():
    body = chat_body()
    body.pop("tools")
    events = []
    for msg in body["messages"]:
        event = {k: msg[k] for k in ("content",) if msg.get("content")}
        if msg.get("tool_calls"):
            event = {"tool_calls": msg["tool_calls"]}
        if msg["role"] == "tool":
            event["id"] = msg["tool_call_id"]
        events.append((f"gen_ai.{msg['role']}.message", event))
    got = rebuild.from_message_events(events, "openai", "gpt-4o")
    assert ours(got)[A.BLOCK_HASHES.name] == ours(body)[A.BLOCK_HASHES.name]


def _record(attrs: dict) -> Record:
    return Record(signal="span", trace_id="ab" * 16, span_id="cd" * 8, name="chat gpt-4o",
                  start_ns=10**18, end_ns=10**18 + 10**9, attributes=attrs)  # fmt: skip


def test_the_row_holds_the_fingerprint_and_the_rendering_not_the_raw_prompt():
    body = chat_body()
    row, content = mapping.map_record(_record(conventions.semconv_chat(body)))
    want = ours(body)
    assert row["prefix_hash"] == want[A.PREFIX_HASH.name]
    assert row["tools_count"] == 3 and row["segments"] == want[A.SEGMENTS.name]
    assert content == want[A.CONTENT.name]
    extra = json.loads(row["attributes"])
    assert extra == {A.REBUILT_FROM.name: "gen_ai.input.messages"}


@pytest.mark.parametrize("convention", sorted(conventions.CHAT))
def test_keeping_only_hashes_keeps_no_prompt_text(convention):
    attrs = conventions.CHAT[convention](chat_body())
    row, content = mapping.map_record(_record(attrs), keep_content=False)
    assert content is None and row["prefix_hash"]
    assert "Acme" not in (row["attributes"] or "")


def test_unusable_content_is_dropped_when_only_hashes_are_kept():
    attrs = {"gen_ai.provider.name": "openai", "gen_ai.input.messages": "[{not json Acme"}
    kept, _ = mapping.map_record(_record(attrs))
    assert "Acme" in kept["attributes"] and kept["prefix_hash"] is None  # as before
    dropped, _ = mapping.map_record(_record(attrs), keep_content=False)
    assert dropped["attributes"] is None


def test_our_own_fingerprint_is_never_replaced():
    attrs = {**ours(chat_body()), **conventions.semconv_anthropic(anthropic_body())}
    assert rebuilt(attrs)[A.PREFIX_HASH.name] == ours(chat_body())[A.PREFIX_HASH.name]


@pytest.mark.parametrize(
    "attrs",
    [
        {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.2.role": "user"},  # index 1 missing
        {"gen_ai.prompt.999999.role": "user"},
        {"gen_ai.prompt.0.content": "no role"},
        {
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "__REDACTED__",
        },
        {"input.value": "__REDACTED__", "input.mime_type": "application/json"},
        {"gen_ai.input.messages": "not json"},
        {"gen_ai.input.messages": json.dumps([{"parts": []}])},
        {"gen_ai.input.messages": json.dumps({"role": "user"})},
        {"request_data": json.dumps({"model": "gpt-4o", "stream": True})},  # Logfire Responses
        {"input.value": json.dumps({"messages": []}), "openinference.span.kind": "CHAIN"},
    ],
)
def test_incomplete_content_is_not_fingerprinted(attrs):
    assert rebuild.request_body(attrs) is None
    assert A.PREFIX_HASH.name not in rebuilt(attrs)


_NAMES = st.sampled_from(
    [
        "gen_ai.input.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "input.value",
        "request_data",
        "gen_ai.prompt.0.role",
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.1.role",
        "gen_ai.prompt.0.tool_calls.0.arguments",
        "gen_ai.prompt.99999999.role",
        "llm.request.functions.0.parameters",
        "llm.request.functions.0.input_schema",
        "llm.input_messages.0.message.role",
        "llm.input_messages.0.message.content",
        "llm.input_messages.0.message.contents.0.message_content.type",
        "llm.input_messages.0.message.tool_calls.0.tool_call.function.arguments",
        "llm.input_messages.0.message.tool_call_id",
        "llm.tools.0.tool.json_schema",
    ]
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_PART_TYPES = ["text", "tool_call", "tool_call_response", "reasoning", "uri", "blob", "x"]
_PART = st.fixed_dictionaries(
    {"type": st.sampled_from(_PART_TYPES)},
    optional={k: _JSONISH for k in ("content", "id", "name", "arguments", "response", "uri")},
)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"])},
        optional={"parts": st.lists(_PART, max_size=3) | _JSONISH},
    ),
    max_size=4,
).map(json.dumps)
_VALUES = (
    _JSONISH | _JSONISH.map(json.dumps) | _MESSAGES | st.sampled_from(["[{", "{}", "[]", "[ 1]"])
)


@settings(max_examples=400, deadline=None)
@given(
    attrs=st.dictionaries(_NAMES, _VALUES, max_size=6),
    provider=st.sampled_from([None, "openai", "anthropic"]),
    mime=st.sampled_from([None, "application/json"]),
)
def test_hostile_shapes_never_raise(attrs, provider, mime):
    if mime:
        attrs["input.mime_type"] = mime
    if provider:
        attrs["gen_ai.provider.name"] = provider
    rebuild.request_body(attrs, provider, None)
    try:
        mapping.map_record(_record(copy.deepcopy(attrs)))
        mapping.map_record(_record(attrs), keep_content=False)
    except mapping.Rejected:
        pass


@settings(max_examples=100, deadline=None)
@given(
    messages=_MESSAGES,
    tools=_JSONISH.map(json.dumps),
    provider=st.sampled_from(["openai", "anthropic"]),
)
def test_semconv_lists_of_any_shape_never_raise(messages, tools, provider):
    attrs = {"gen_ai.input.messages": messages, "gen_ai.tool.definitions": tools}
    found = rebuild.request_body(attrs, provider)
    rebuilt({**attrs, "gen_ai.provider.name": provider})
    assert found is None or isinstance(found[0], dict)


_FIELDS = st.sampled_from(
    [
        "gen_ai.prompt.{i}.role",
        "gen_ai.prompt.{i}.content",
        "gen_ai.prompt.{i}.tool_call_id",
        "gen_ai.prompt.{i}.tool_calls.{j}.id",
        "gen_ai.prompt.{i}.tool_calls.{j}.name",
        "gen_ai.prompt.{i}.tool_calls.{j}.arguments",
        "llm.request.functions.{i}.name",
        "llm.request.functions.{i}.parameters",
        "llm.request.functions.{i}.input_schema",
        "llm.input_messages.{i}.message.role",
        "llm.input_messages.{i}.message.content",
        "llm.input_messages.{i}.message.tool_call_id",
        "llm.input_messages.{i}.message.contents.{j}.message_content.type",
        "llm.input_messages.{i}.message.contents.{j}.message_content.text",
        "llm.input_messages.{i}.message.tool_calls.{j}.tool_call.id",
        "llm.input_messages.{i}.message.tool_calls.{j}.tool_call.function.arguments",
        "llm.tools.{i}.tool.json_schema",
    ]
)
_INDEX = st.sampled_from(["0", "0", "0", "1", "00", "x", "999999999"])
_FLAT_KEYS = st.builds(lambda f, i, j: f.format(i=i, j=j), _FIELDS, _INDEX, _INDEX)
_FLAT_VALUES = (
    st.sampled_from(["user", "system", "assistant", "tool", "text", "reasoning", "tool_use"])
    | _VALUES
)


@settings(max_examples=600, deadline=None)
@example(
    attrs={"gen_ai.prompt.0.role": "assistant", "gen_ai.prompt.0.tool_calls.0.arguments": "["},
    provider="anthropic",
)
@given(
    attrs=st.dictionaries(_FLAT_KEYS, _FLAT_VALUES, max_size=12),
    provider=st.sampled_from(["openai", "anthropic"]),
)
def test_flattened_attributes_of_any_shape_never_raise(attrs, provider):
    attrs["gen_ai.system"] = provider
    found = rebuild.request_body(attrs, provider)
    assert found is None or isinstance(found[0], dict)
    mapping.map_record(_record(attrs))


@pytest.mark.parametrize("capture", [True, False])
def test_ingest_files_rebuild_too_and_keep_content_only_when_asked(capture):
    from tests.otlp_build import to_json, traces

    attrs = conventions.semconv_chat(chat_body())
    line = json.dumps(to_json(traces([{"attributes": attrs}], seed=3))).encode()
    report = records.FileReport()
    ((mapped, _),) = list(records.read_lines(iter([(1, line)]), report, capture))
    (row,) = mapped.rows
    assert row["prefix_hash"] == ours(chat_body())[A.PREFIX_HASH.name]
    assert bool(mapped.contents) is capture


def test_a_lone_surrogate_in_captured_text_is_fingerprinted_and_stored_mended():
    parts = [{"type": "text", "content": "order \ud800 1182"}]
    attrs = {"gen_ai.provider.name": "openai"}
    attrs["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": parts}])
    row, content = mapping.map_record(_record(attrs))
    assert row["prefix_hash"] and content == "<|user|>\norder \ufffd 1182\n"


LIBRARY_FIXTURES = sorted((ROOT / "sample_data" / "libraries").glob("*.json"))


@pytest.mark.parametrize("path", LIBRARY_FIXTURES, ids=lambda p: p.stem)
def test_spans_recorded_from_the_real_libraries_fingerprint_as_ours(path):
    """Fixtures of tests/record_libraries.py: each real library around the real SDK."""
    found = json.loads(path.read_text())
    want = ours(found["body"])
    with_content = 0
    for span in found["spans"]:
        attrs = span["attributes"]
        got = rebuilt(attrs)
        if not rebuild.has_content(attrs):  # e.g. the anthropic SDK's own span
            assert A.PREFIX_HASH.name not in got
            continue
        with_content += 1
        full = found["sdk"] == "openai" or got[A.REBUILT_FROM.name] in rebuild.FULL_BODIES
        _same_but_lost_markers(got, want, full)
        assert got[A.CONTENT.name] == want[A.CONTENT.name]
        if "input.value" in attrs:  # OpenInference's flattened messages say the same
            flat = rebuilt({k: v for k, v in attrs.items() if k != "input.value"})
            assert flat[A.REBUILT_FROM.name] == "llm.input_messages"
            assert flat[A.BLOCK_HASHES.name] == want[A.BLOCK_HASHES.name]
    assert with_content == 1


def test_every_recorded_library_is_replayed():
    assert {p.stem for p in LIBRARY_FIXTURES} >= {
        "openinference-openai",
        "openinference-anthropic",
        "openllmetry-openai",
        "openllmetry-anthropic",
        "logfire-openai",
        "logfire-anthropic",
    }


def test_partial_content_is_dropped_too_when_only_hashes_are_kept():
    attrs = {"gen_ai.system": "openai", "gen_ai.prompt.1.content": "Acme", "llm.tools.2.x": "Acme"}
    kept, _ = mapping.map_record(_record(attrs))
    assert kept["attributes"].count("Acme") == 2 and kept["prefix_hash"] is None
    dropped, _ = mapping.map_record(_record(attrs), keep_content=False)
    assert dropped["attributes"] is None
