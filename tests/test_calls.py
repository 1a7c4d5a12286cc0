"""One row per LLM call: non-call spans are no rows, logs and stream tails enrich the call
they belong to, nested spans of one call merge; every rule in both arrival orders, in one
export and in separate commits."""

from __future__ import annotations

import json

import pytest

from collector import ingest
from collector.store.database import Store
from tests.otlp_build import logs, traces

PB = "application/x-protobuf"
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
OUTER, INNER, OTHER = bytes.fromhex("b7ad6b7169203331"), b"\x11" * 8, b"\x22" * 8
T0 = 1_763_800_000_000_000_000

# What OpenLLMetry's anthropic instrumentation writes on its span (input tokens include the
# cache reads and writes), and the anthropic SDK's own span inside it.
OPENLLMETRY = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.usage.input_tokens": 5002,
    "gen_ai.usage.output_tokens": 120,
    "gen_ai.usage.cache_read_input_tokens": 1754,
    "gen_ai.usage.cache_creation_input_tokens": 0,
    "llm.usage.total_tokens": 5122,
    "traceloop.association.properties.session_id": "conv-7",
}
SDK_SPAN = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.usage.input_tokens": 5002,
    "gen_ai.usage.output_tokens": 120,
    "gen_ai.usage.cache_read.input_tokens": 1754,
    "gen_ai.usage.cache_write.input_tokens": 0,
}


def _span(span_id, attrs, parent=b"", name="chat claude-sonnet-4-5", start=T0, **kw):
    return {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent": parent,
        "name": name,
        "start": start,
        "end": start + 2 * 10**9,
        "attributes": attrs,
        **kw,
    }


def _traces(*spans):
    return ("traces", traces(list(spans)).SerializeToString())


def _logs(*records):
    return ("logs", logs(list(records)).SerializeToString())


def _store(store, *exports, together=False):
    """Map and commit exports, each in its own transaction (or all in one)."""
    prepared = [ingest.prepare(sig, PB, None, body, 1 << 30) for sig, body in exports]
    if together:
        import polars as pl

        frame = pl.concat([p.frame for p in prepared])
        parts = [p.parts for p in prepared if p.parts is not None]
        contents = [c for p in prepared for c in p.contents]
        store.insert(frame, contents, pl.concat(parts) if parts else None)
    else:
        for p in prepared:
            store.insert(p.frame, p.contents, p.parts)
    return prepared


def _rows(store):
    cur = store.con.execute("SELECT * FROM requests ORDER BY id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db.duckdb"))
    yield s
    s.close()


ORDERS = ["in_order", "reversed", "together"]


def _arrive(store, exports, order):
    if order == "together":
        return _store(store, *exports, together=True)
    return _store(store, *(exports if order == "in_order" else exports[::-1]))


# --- which spans are calls -----------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs, name",
    [
        ({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}, "invoke_agent a"),
        ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"}, "execute_tool t"),
        ({"gen_ai.operation.name": "create_agent"}, "create_agent a"),
        (
            {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"}
            | {"gen_ai.usage.input_tokens": 8},
            "embeddings e",
        ),
        (  # an agent span that sums its calls' usage is still no call
            {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 9},
            "invoke_agent helper",
        ),
        ({"openinference.span.kind": "CHAIN", "llm.model_name": "gpt-4o"}, "chain"),
        ({"openinference.span.kind": "TOOL", "tool.name": "t"}, "tool"),
        ({"openinference.span.kind": "AGENT"}, "agent"),
        ({"openinference.span.kind": "RETRIEVER"}, "retrieve"),
        ({"llm.request.type": "embedding", "llm.request.model": "e"}, "openai.embeddings"),
    ],
)
def test_genai_work_that_is_no_call_is_counted_and_never_a_row(store, attrs, name):
    (prepared,) = _store(store, _traces(_span(OUTER, attrs, name=name)))
    assert (prepared.other, prepared.skipped, len(prepared.frame)) == (1, 0, 0)
    assert _rows(store) == []


@pytest.mark.parametrize(
    "attrs, name",
    [
        ({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, "chat m"),
        ({"gen_ai.operation.name": "text_completion"}, "text_completion m"),
        ({"gen_ai.operation.name": "generate_content"}, "generate_content gemini"),
        ({"openinference.span.kind": "LLM", "llm.model_name": "m"}, "ChatCompletion"),
        ({"llm.request.type": "completion", "llm.request.model": "m"}, "openai.completion"),
        ({"gen_ai.system": "openai"}, "chat gpt-4o"),  # the operation named by the span
        ({"gen_ai.request.model": "m", "gen_ai.usage.output_tokens": 3}, "call"),
    ],
)
def test_llm_calls_are_rows(store, attrs, name):
    (prepared,) = _store(store, _traces(_span(OUTER, attrs, name=name)))
    assert (prepared.other, len(prepared.frame)) == (0, 1)
    assert len(_rows(store)) == 1


def test_a_span_without_genai_attributes_is_skipped(store):
    (prepared,) = _store(store, _traces(_span(OUTER, {"http.method": "POST"}, name="POST")))
    assert (prepared.skipped, prepared.other) == (1, 0)


# --- logs enrich, never replace ------------------------------------------------------------

# openai-v2 in event mode: the call's span, and event log records of it exported before it
CALL_SPAN = _span(
    OUTER,
    {
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 10,
    },
    name="chat gpt-4o",
)
EVENTS = [
    {
        "trace_id": TRACE,
        "span_id": OUTER,
        "name": "gen_ai.user.message",
        "attributes": {"gen_ai.system": "openai", "gen_ai.conversation.id": "conv-1"},
        "body": {"content": "hello"},
    },
    {
        "trace_id": TRACE,
        "span_id": OUTER,
        "name": "gen_ai.choice",
        "attributes": {"gen_ai.system": "openai"},
        "body": {"index": 0, "finish_reason": "stop", "message": {"content": "hi"}},
    },
]


@pytest.mark.parametrize("order", ORDERS)
def test_logs_of_a_span_enrich_its_row_in_any_order(store, order):
    _arrive(store, [_logs(*EVENTS), _traces(CALL_SPAN)], order)
    (row,) = _rows(store)
    assert row["id"] == TRACE.hex() + OUTER.hex()
    assert (row["signal"], row["request_model"]) == ("span", "gpt-4o")
    assert (row["prompt_tokens"], row["output_tokens"]) == (2000, 10)
    assert row["conversation_id"] == "conv-1"  # known by a log record only
    assert store.con.execute("SELECT count(*) FROM call_parts").fetchone()[0] == 0


def test_a_log_record_without_its_span_is_no_row_until_the_span_comes(store):
    _store(store, _logs(*EVENTS))
    assert _rows(store) == []
    assert store.con.execute("SELECT count(*) FROM call_parts").fetchone()[0] == 2


@pytest.mark.parametrize("order", ORDERS)
def test_a_complete_log_record_and_its_span_are_one_row_the_span_winning(store, order):
    details = {  # OpenLIT's operation-details record: a whole call by itself
        "trace_id": TRACE,
        "span_id": OUTER,
        "name": "gen_ai.client.inference.operation.details",
        "attributes": {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1999,
            "gen_ai.usage.output_tokens": 10,
            "cachediag.route": "/chat",
        },
    }
    _arrive(store, [_logs(details), _traces(CALL_SPAN)], order)
    (row,) = _rows(store)
    assert (row["signal"], row["request_model"], row["prompt_tokens"]) == ("span", "gpt-4o", 2000)
    assert row["route"] == "/chat"


def test_a_log_record_of_other_genai_work_is_counted_and_no_row(store):
    record = {
        "attributes": {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5,
        }
    }
    (prepared,) = _store(store, _logs(record))
    assert (prepared.other, _rows(store)) == (1, [])


def test_a_complete_log_record_alone_is_a_row(store):
    record = {
        "attributes": {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5,
        }
    }
    _store(store, _logs(record))
    (row,) = _rows(store)
    assert row["signal"] == "log"


# --- one call, two spans -------------------------------------------------------------------


def _nested():
    outer = _span(OUTER, OPENLLMETRY, name="anthropic.chat")
    inner = _span(
        INNER,
        SDK_SPAN,
        parent=OUTER,
        name="anthropic.messages.create",
        start=T0 + 10**6,
        events=[("gen_ai.content.completion.chunk", T0 + 10**6 + 300 * 10**6)],
    )
    return _traces(outer), _traces(inner)


@pytest.mark.parametrize("order", ORDERS)
def test_the_sdk_span_inside_an_instrumentation_span_is_one_row(store, order):
    _arrive(store, list(_nested()), order)
    (row,) = _rows(store)
    assert row["id"] == TRACE.hex() + OUTER.hex()  # the outer span's identity
    assert row["name"] == "anthropic.chat"
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        5002,
        1754,
        0,
    )
    assert row["conversation_id"] == "conv-7"  # the outer span's
    assert row["ttft_ms"] == pytest.approx(300.0)  # the inner span's


def test_nested_spans_of_different_models_are_two_calls(store):
    inner = _span(INNER, SDK_SPAN | {"gen_ai.request.model": "claude-haiku-4-5"}, parent=OUTER)
    inner["attributes"].pop("gen_ai.response.model")
    _store(store, _traces(_span(OUTER, OPENLLMETRY)), _traces(inner))
    assert len(_rows(store)) == 2


def test_a_call_under_an_agent_span_stays_its_own_row(store):
    agent = _span(
        OUTER,
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "claude-sonnet-4-5"},
        name="invoke_agent a",
    )
    _store(store, _traces(agent), _traces(_span(INNER, SDK_SPAN, parent=OUTER)))
    (row,) = _rows(store)
    assert row["span_id"] == INNER.hex()


def test_the_content_of_a_merged_span_follows_its_row(store):
    outer, _ = _nested()
    inner = _span(INNER, SDK_SPAN | {"cachediag.content": "rendered"}, parent=OUTER)
    _store(store, _traces(inner), outer)
    (row,) = _rows(store)
    assert store.con.execute("SELECT id, content FROM request_content").fetchall() == [
        (row["id"], "rendered")
    ]


def test_a_merge_drops_the_explanation_and_gives_the_row_a_new_rowid(store):
    outer, inner = _nested()
    _store(store, inner)
    (first,) = store.con.execute("SELECT id, rowid FROM requests").fetchall()
    store.con.execute("INSERT INTO explanations (id, cause) VALUES (?, 'cold_start')", [first[0]])
    _store(store, outer)
    (merged,) = store.con.execute("SELECT id, rowid FROM requests").fetchall()
    assert merged[1] > first[1]  # the explain loop sees it as new
    assert store.con.execute("SELECT count(*) FROM explanations").fetchone()[0] == 0


def test_a_resent_span_is_stored_once_and_not_rewritten(store):
    outer, inner = _nested()
    _store(store, outer, inner)
    before = store.con.execute("SELECT id, rowid FROM requests").fetchall()
    assert store.insert(*_prepared(outer)) == 0
    assert store.insert(*_prepared(inner)) == 0
    assert store.con.execute("SELECT id, rowid FROM requests").fetchall() == before


def _prepared(export):
    p = ingest.prepare(export[0], PB, None, export[1], 1 << 30)
    return p.frame, p.contents, p.parts


# --- Logfire's streamed call: a span without usage, then the stream's record beside it ------

LOGFIRE_SPAN = {
    "logfire.msg_template": "Message with {request_data[model]!r}",
    "logfire.span_type": "span",
    "gen_ai.system": "anthropic",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "request_data": json.dumps({"model": "claude-sonnet-4-5", "stream": True}),
}
LOGFIRE_TAIL = LOGFIRE_SPAN | {
    "logfire.msg_template": "streaming response from {request_data[model]!r} took {duration:.2f}s",
    "logfire.span_type": "log",
    "duration": 1.5,
    "response_data": json.dumps(
        {
            "combined_chunk_content": "hi",
            "chunk_count": 2,
            "usage": {
                "input_tokens": 3248,
                "cache_read_input_tokens": 1754,
                "cache_creation_input_tokens": 0,
                "output_tokens": 12,
            },
        }
    ),
}


@pytest.mark.parametrize("order", ORDERS)
def test_logfire_stream_tail_gives_its_usage_to_the_call(store, order):
    span = _span(OUTER, LOGFIRE_SPAN, parent=OTHER, name="Message with 'claude-sonnet-4-5'")
    tail = _span(
        INNER, LOGFIRE_TAIL, parent=OTHER, name="streaming response from", start=T0 + 3 * 10**9
    )
    _arrive(store, [_traces(span), _traces(tail)], order)
    (row,) = _rows(store)
    assert row["span_id"] == OUTER.hex()
    assert (row["prompt_tokens"], row["cached_tokens"], row["output_tokens"]) == (5002, 1754, 12)


def test_after_a_restart_records_still_find_their_call(tmp_path):
    path = str(tmp_path / "db.duckdb")
    first = Store(path)
    _store(first, _traces(CALL_SPAN))
    first.close()
    again = Store(path)  # the index of recent traces is read back from the file
    try:
        _store(again, _logs(*EVENTS))
        (row,) = _rows(again)
        assert row["conversation_id"] == "conv-1"
    finally:
        again.close()
