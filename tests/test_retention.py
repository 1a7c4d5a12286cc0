"""The cache lifetime a request asks for: read from its body, carried to its row, and
what it changes in the explanation of a late turn."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis import retention
from collector.mapping import map_record
from collector.records import request_record
from collector.store.database import Store
from tests.explain_build import body, explain, row


def _anthropic(ttl: object) -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "Rules.", "cache_control": {"ttl": ttl}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {}}]}
        ],
    }


@pytest.mark.parametrize(
    "request_body, seconds",
    [
        ({"model": "gpt-5", "messages": [], "prompt_cache_retention": "24h"}, 86400),
        ({"model": "gpt-5", "messages": [], "prompt_cache_retention": "in_memory"}, None),
        ({"model": "gpt-5", "input": "hi", "prompt_cache_retention": "24h"}, 86400),
        ({"model": "gpt-5", "messages": []}, None),
        (_anthropic("1h"), 3600),
        (_anthropic("5m"), 300),
        (_anthropic(None), None),
        ({**_anthropic("5m"), "cache_control": {"type": "ephemeral", "ttl": "1h"}}, 3600),
    ],
)
def test_the_lifetime_a_body_asks_for(request_body, seconds):
    assert retention.asked(request_body) == seconds


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_any_shape_of_body_gives_a_lifetime_or_none(value):
    shaped = {"messages": value, "system": value, "tools": value, "cache_control": value}
    for candidate in ({}, shaped, {"prompt_cache_retention": value}):
        found = retention.asked(candidate)
        assert found is None or (isinstance(found, int) and found > 0)


def test_the_lifetime_travels_from_the_body_to_the_row(tmp_path):
    record = request_record(
        {
            "time": "2026-11-30T10:00:00Z",
            "id": "r1",
            "request": {"model": "gpt-5", "messages": [], "prompt_cache_retention": "24h"},
        }
    )
    mapped, _ = map_record(record)
    assert mapped["retention_s"] == 86400
    store = Store(str(tmp_path / "db.duckdb"))
    columns = [c[0] for c in store.con.execute("DESCRIBE requests").fetchall()]
    store.close()
    assert "retention_s" in columns


@pytest.mark.parametrize("asked, cause", [(None, "ttl_expired"), (86400, "eviction_or_unknown")])
def test_a_turn_half_an_hour_later_is_judged_against_the_lifetime_asked_for(asked, cause):
    first = {**row("a", 0, body()), "retention_s": asked}
    later = {**row("b", 1800, body(turns=("Hello?", "More?")), cached=0), "retention_s": asked}
    assert explain(first, later)[1].cause == cause
