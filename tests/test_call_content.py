"""Which captured rendering a call row keeps: the one its fingerprint came from, so the
explainer can read it against the row's segment map to the token (tests/test_calls.py has
the records and the store)."""

from __future__ import annotations

import json

import pytest

from analysis.segmaps import captured_prompt
from collector.store.database import Store
from tests.test_calls import (
    CALL_SPAN,
    EVENTS,
    ORDERS,
    OUTER,
    TRACE,
    _arrive,
    _logs,
    _rows,
    _traces,
)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db.duckdb"))
    yield s
    s.close()


def _agrees(store, row) -> bool:
    """Does the stored rendering of ``row`` match its segment map (explainable to the token)?"""
    (content,) = store.con.execute(
        "SELECT content FROM request_content WHERE id = ?", [row["id"]]
    ).fetchone()
    return captured_prompt(content, row["segments"], row["request_model"]) is not None


MESSAGES = [{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]


@pytest.mark.parametrize("order", ORDERS)
def test_the_rendering_kept_is_the_one_the_row_is_fingerprinted_from(store, order):
    """OpenLIT: the span's messages without tools, its operation-details log record's with
    them. The span's fingerprint wins, so its rendering must be the one kept, whichever
    came first (else the explainer finds no token: map and text disagree)."""
    messages = {"gen_ai.input.messages": json.dumps(MESSAGES)}
    tool = {"type": "function", "name": "get_order", "parameters": {"type": "object"}}
    details = {
        "trace_id": TRACE,
        "span_id": OUTER,
        "name": "gen_ai.client.inference.operation.details",
        "attributes": CALL_SPAN["attributes"]
        | messages
        | {"gen_ai.tool.definitions": json.dumps([tool])},
    }
    span = CALL_SPAN | {"attributes": CALL_SPAN["attributes"] | messages}
    _arrive(store, [_logs(details), _traces(span)], order)
    (row,) = _rows(store)
    assert (row["signal"], row["tools_count"]) == ("span", 0)
    assert _agrees(store, row)


@pytest.mark.parametrize("order", ORDERS)
def test_a_call_rebuilt_from_its_message_events_keeps_their_rendering(store, order):
    _arrive(store, [_logs(*EVENTS), _traces(CALL_SPAN)], order)
    (row,) = _rows(store)
    assert row["prefix_hash"] is not None
    assert _agrees(store, row)
