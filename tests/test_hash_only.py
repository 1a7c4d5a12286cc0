"""Hash-only explanations: what kind of change broke a part, from rows without content.

Every stream here is stored as the default (content capture off) stores it: block
hashes and the segment map as the instrumentation encodes it, no text. Each row is
checked to carry nothing but paths, kinds, token offsets and hashes.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analysis import causes, fingerprint, prompt, tokens
from analysis.differ import common_prefix_length
from analysis.segmaps import segment_map, shape_cause
from collector import attributes as A
from tests.cases import FORMATS, SEGMENT, pair
from tests.explain_build import SYSTEM, TOK, TOOLS, body, explain

HEX = re.compile(r"[0-9a-f]{16}")
DOCS = [
    f'<document id="kb{i}">Policy note {i}: {w} items ship in {i + 2} days.</document>'
    for i, w in enumerate(("Heavy", "Fragile", "Oversized"))
]


def hash_row(
    rid: str,
    ts: float,
    request: dict,
    cached: int | None = None,
    session: str = "s1",
    tok=TOK,
) -> dict:
    """A stored row of ``request`` without its content: what the explainer reads."""
    parsed = prompt.parse(request)
    fp = fingerprint.fingerprint(parsed, tok, memo=fingerprint.TokenMemo())
    attrs = A.fingerprint_attributes(fp)
    return {
        "id": rid,
        "ts": ts,
        "session_key": session,
        "request_model": parsed.model,
        "provider": "anthropic" if parsed.format == "anthropic" else "openai",
        "route": "/chat",
        "replica": "r1",
        "block_hashes": attrs[A.BLOCK_HASHES.name],
        "block_size": fp.block_size,
        "total_tokens": fp.total_tokens,
        "prompt_tokens": fp.total_tokens,
        "cached_tokens": fp.total_tokens // 128 * 128 if cached is None else cached,
        "segments": attrs[A.SEGMENTS.name],
        "content": None,
        "encoding": fp.encoding,
    }


def without_canonical(row: dict) -> dict:
    """The row as stored before the canonical hashes: five fields a segment."""
    old = [list(s[:5]) for s in segment_map(row["segments"])]
    return {**row, "segments": json.dumps(old)}


def assert_no_content(row: dict) -> None:
    assert row["content"] is None
    for path, kind, start, end, *hashes in segment_map(row["segments"]):
        assert isinstance(start, int) and isinstance(end, int) and re.fullmatch(r"[\w.\[\]]+", path)
        assert kind in ("tool", "system", "message", "reasoning", "tool_call", "tool_result")
        assert len(hashes) == 6 and HEX.fullmatch(hashes[0])
        assert all(h == "" or HEX.fullmatch(h) for h in hashes[1:])


def _with_call(arguments: str) -> dict:
    out = body(turns=("Look it up?", "And now?"))
    out["messages"][2]["tool_calls"] = [
        {"id": "c1", "type": "function", "function": {"name": "tool_0", "arguments": arguments}}
    ]
    return out


def _anthropic(blocks: list[str]) -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "tools": [
            {"name": f"t{i}", "description": f"Tool {i}.", "input_schema": {}} for i in (0, 1)
        ],
        "system": [{"type": "text", "text": t} for t in [SYSTEM, *blocks]],
        "messages": [{"role": "user", "content": "Which applies?"}],
    }


def _tools_with(i: int, **function: object) -> list[dict]:
    """The test tools, with some fields of tool ``i``'s function replaced."""
    edited = {**TOOLS[i], "function": {**TOOLS[i]["function"], **function}}
    return [*TOOLS[:i], edited, *TOOLS[i + 1 :]]


SWAPPED = {"b": {"type": "integer"}, "a": {"type": "string"}}  # the tools' properties, keys swapped


def _stamp(value: str) -> dict:
    return body(system=f"Now: {value}.\n" + SYSTEM)


# name: (request A, request B before its appended turn, hash-only cause, segment, old cause)
CASES = {
    "inserted_timestamp": (
        body(),
        _stamp("2026-11-22T10:05:00Z"),
        "dynamic_value",
        "messages[0].content",
        "system_changed",
    ),
    "timestamp": (
        _stamp("2026-11-22T10:00:00Z"),
        _stamp("2026-11-22T10:05:00Z"),
        "dynamic_value",
        "messages[0].content",
        "system_changed",
    ),
    "request_id": (
        body(system=SYSTEM + "\nTrace req_8f3a9c21b7 for support."),
        body(system=SYSTEM + "\nTrace req_77d0e1aa42 for support."),
        "dynamic_value",
        "messages[0].content",
        "system_changed",
    ),
    "dated_tool_description": (
        body(tools=_tools_with(0, description="As of 2026-11-22.")),
        body(tools=_tools_with(0, description="As of 2026-11-23.")),
        "dynamic_value",
        "tools[0]",
        "tools_changed",
    ),
    "schema_keys": (
        body(),
        body(tools=_tools_with(1, parameters={"properties": SWAPPED, "type": "object"})),
        "key_order",
        "tools[1]",
        "tools_changed",
    ),
    "call_argument_keys": (
        _with_call('{"order": "1182", "verbose": true}'),
        _with_call('{"verbose": true, "order": "1182"}'),
        "key_order",
        "messages[2].tool_calls",
        "history_rewritten",
    ),
    "whitespace": (
        body(system=SYSTEM + "\nBe brief.  Be kind."),
        body(system=SYSTEM + "\nBe brief. Be kind.\n"),
        "whitespace",
        "messages[0].content",
        "system_changed",
    ),
    "tagged_documents": (
        body(system=SYSTEM + "\n\n" + "\n".join(DOCS)),
        body(system=SYSTEM + "\n\n" + "\n".join([DOCS[2], DOCS[0], DOCS[1]])),
        "context_reordered",
        "messages[0].content",
        "system_changed",
    ),
    "paragraph_chunks": (
        body(system=SYSTEM + "\n\nChunk one.\n\nChunk two.\n\nChunk three."),
        body(system=SYSTEM + "\n\nChunk three.\n\nChunk one.\n\nChunk two."),
        "context_reordered",
        "messages[0].content",
        "system_changed",
    ),
    "document_parts": (
        _anthropic(DOCS),
        _anthropic([DOCS[1], DOCS[0], DOCS[2]]),
        "context_reordered",
        "system[1]",
        "context_reordered",  # parts reordered whole: their exact hashes already tell
    ),
    "tools_reordered": (
        body(),
        body(tools=list(reversed(TOOLS))),
        "tools_reordered",
        "tools[0]",
        "tools_reordered",
    ),
}


def _stream(name: str) -> list[dict]:
    """Three requests of one session: A, A with one more turn (served), then B."""
    first, changed, *_ = CASES[name]
    grown, later = copy.deepcopy(first), copy.deepcopy(changed)
    for request in (grown, later):
        request["messages"] += [
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": "Thanks?"},
        ]
    later["messages"] += [{"role": "assistant", "content": "Noted."}]
    return [hash_row("a", 0, first), hash_row("b", 15, grown), hash_row("c", 30, later, cached=0)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stream_without_content_names_the_kind_of_change(name):
    rows = _stream(name)
    for r in rows:
        assert_no_content(r)
    out = explain(*rows)
    assert out[1].cause == "no_miss"
    assert (out[2].cause, out[2].segment) == CASES[name][2:4]
    assert out[2].predecessor_id == "b" and out[2].missed_tokens > 1000


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_new_conversation_that_opens_like_another_but_for_one_change(name):
    """No block shared (or fewer than could be): the route's latest request opens with
    the same parts in a canonical form, so the cache could have served them."""
    first, changed, cause, segment, _ = CASES[name]
    later = copy.deepcopy(changed)
    later["messages"][-1]["content"] = "Something else entirely?"
    out = explain(hash_row("a", 0, first), hash_row("b", 20, later, cached=0, session="s2"))
    assert (out[1].cause, out[1].segment, out[1].predecessor_id) == (cause, segment, "a")
    assert out[1].missed_tokens > 1000


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_new_conversation_served_its_shared_prefix_is_no_miss(name):
    first, _, *_ = CASES[name]
    later = copy.deepcopy(first)
    later["messages"][-1]["content"] = "Order 8812 arrived on 2026-11-22: where is 8813?"
    shared = hash_row("b", 20, later, session="s2")
    assert explain(hash_row("a", 0, first), shared)[1].cause == "no_miss"


def test_a_value_in_the_newest_part_alone_is_payload_not_a_breaker():
    first = body(turns=("Status of order 8812 on 2026-11-22?",))
    second = body(turns=("Status of order 9930 on 2026-11-23?",))
    rows = hash_row("a", 0, first), hash_row("b", 20, second, session="s2")
    assert explain(*rows)[1].cause == "no_miss"


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_stored_before_the_canonical_hashes_explain_as_they_did(name):
    out = explain(*map(without_canonical, _stream(name)))
    assert out[2].cause == CASES[name][4]


def test_one_old_row_against_a_new_one_falls_back_to_the_part_that_changed():
    first, second, third = _stream("timestamp")
    assert explain(first, without_canonical(second), third)[2].cause == "system_changed"
    assert explain(first, second, without_canonical(third))[2].cause == "system_changed"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cause", sorted(set(SEGMENT) - {"identical", "model_changed"}))
def test_hashes_alone_say_what_the_content_says(cause, fmt):
    """Every shape cause of the shared cases, in every format: from segment maps alone,
    the cause (and segment) that analysis.causes finds in the text."""
    a, b = (prompt.parse(x) for x in pair(cause, fmt))
    from_text = causes.classify(a, b, common_prefix_length(a.text, b.text))
    maps = [
        segment_map(A.fingerprint_attributes(fingerprint.fingerprint(p, TOK))[A.SEGMENTS.name])
        for p in (a, b)
    ]
    assert (
        shape_cause(*maps)[:2]
        == (from_text.code, from_text.segment)
        == (cause, SEGMENT[cause][fmt])
    )


# --- the canonical hashes themselves -----------------------------------------------------------

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
FIELDS = ("masked", "json", "space", "items", "unstamped")


def _segment(body_text: str) -> prompt.Segment:
    return prompt.Segment("messages[0].content", "system", f"<|system|>\n{body_text}\n", 11)


def _same(a: str, b: str) -> set[str]:
    """The canonical forms in which two bodies still match (their exact hashes differ)."""
    sa, sb = _segment(a), _segment(b)
    assert fingerprint.text_hash(sa.text) != fingerprint.text_hash(sb.text)
    ca, cb = fingerprint.canonical_hashes(sa), fingerprint.canonical_hashes(sb)
    exact_a, exact_b = fingerprint.text_hash(sa.text), fingerprint.text_hash(sb.text)
    return {f for f, x, y in zip(FIELDS, ca, cb, strict=True) if (x or exact_a) == (y or exact_b)}


@st.composite
def parts(draw):
    """A body of prose, a timestamp, a JSON object and tagged documents, in parts."""
    prose = draw(st.lists(st.sampled_from(WORDS), min_size=3, max_size=8))
    stamp = draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)))
    keys = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=5, unique=True))
    values = draw(st.lists(st.integers(0, 999), min_size=len(keys), max_size=len(keys)))
    docs = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=5, unique=True))
    return {
        "prose": prose,
        "stamp": stamp,
        "obj": dict(zip(keys, values, strict=True)),
        "docs": docs,
    }


def _render(p: dict) -> str:
    docs = "\n".join(f'<doc id="{w}">All about {w}.</doc>' for w in p["docs"])
    stamp = p["stamp"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{' '.join(p['prose'])}. Now: {stamp}. Settings: {json.dumps(p['obj'])}\n{docs}"


@settings(max_examples=120, deadline=None)
@given(parts(), st.data())
def test_each_canonical_hash_absorbs_its_own_change_and_no_other(p, data):
    change = data.draw(st.sampled_from(("stamp", "keys", "space", "order", "word")))
    q = copy.deepcopy(p)
    if change == "stamp":
        q["stamp"] = data.draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)))
        expected = {"masked", "unstamped"}
    elif change == "keys":
        q["obj"] = dict(data.draw(st.permutations(list(p["obj"].items()))))
        expected = {"json", "items"}  # the order-free form has its JSON canonical too
    elif change == "space":
        k = data.draw(st.integers(0, len(p["prose"]) - 2))
        q["prose"][k] += data.draw(st.sampled_from(("  ", " \t", "\n ")))[:-1]
        expected = {"space"}
    elif change == "order":
        q["docs"] = data.draw(st.permutations(p["docs"]))
        expected = {"items"}
    else:
        k = data.draw(st.integers(0, len(p["prose"]) - 1))
        q["prose"][k] = data.draw(st.sampled_from(WORDS).filter(lambda w: w != p["prose"][k]))
        expected = set()
    a, b = _render(p), _render(q)
    assume(a != b)
    assert _same(a, b) == expected


@settings(max_examples=60, deadline=None)
@given(parts(), st.sampled_from(("Current time: ", "Today is ", "Request id: req_", "")))
def test_a_line_labelling_a_volatile_value_added_is_absorbed_by_unstamped_alone(p, label):
    plain = _render(p)
    value = p["stamp"].isoformat() if "id" not in label else "8f3a9c21b7e4"
    stamped = f"{label}{value}\n{plain}"
    assert _same(plain, stamped) == {"unstamped"}


def test_an_edited_line_beside_a_date_is_not_a_dynamic_value():
    a = "Policy updated 2025-01-01: refunds are accepted within 30 days of delivery.\nBe kind."
    b = "Policy updated 2025-02-01: refunds are accepted within 14 days of delivery.\nBe kind."
    assert _same(a, b) == set()


def test_the_instrumentation_ingest_and_replay_carry_the_same_segment_map():
    """In-service (and replay, which emits through the instrumentation) and at ingest of a
    logged record, a request's segment map is the same, canonical hashes included."""
    from opentelemetry.sdk.trace import TracerProvider

    from collector import instrument
    from collector.records import request_record

    request = CASES["timestamp"][0]
    provider = TracerProvider()
    try:
        in_service = instrument.setup(tracer_provider=provider).attributes(request)
    finally:
        provider.shutdown()
    logged = request_record({"time": 0, "request": request}, capture=False).attributes
    expected = hash_row("x", 0, request, tok=tokens.resolve(request["model"]))["segments"]
    assert in_service[A.SEGMENTS.name] == logged[A.SEGMENTS.name] == expected
    assert any(s[5] for s in segment_map(expected))  # the timestamp's masked hash
