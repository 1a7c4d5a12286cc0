"""Which earlier request a request is compared with: per model, past a change of one
kind in its session, not across conversations that share only a key, and, past the
TTL, the fresher request that still held the prefix."""

from __future__ import annotations

import pytest

from tests.explain_build import SYSTEM, TOOLS, body, explain, row

MORE = " Tell me everything about it, with the prices, the dates and the places." * 8
TURNS = tuple(q + MORE for q in ("Plan the trip?", "Which city?", "And the hotel?"))


def test_another_models_request_holding_the_prefix_does_not_hide_the_models_own():
    first = row("a", 0, body(), session="s1")
    other = row("x", 5, body(model="gpt-4.1"), session="s2")  # same blocks, another cache
    later = row("b", 10, body(turns=("Something else?",)), session="s3")
    out = explain(first, other, later)
    assert (out[2].predecessor_id, out[2].cause) == ("a", "no_miss")


def test_a_turn_continues_the_request_whose_conversation_it_carries_on():
    """An A/B flag drawn per request: turn 3 (variant A) extends turn 1 exactly, but the
    cache held turn 2 (variant B), whose conversation it carries on."""
    variant_b = "Variant B. " + SYSTEM
    turns = (TURNS[0], TURNS[1] + MORE * 3, TURNS[2])  # turn 2 is worth caching
    one = row("t1", 0, body(turns=turns[:1]))
    two = row("t2", 10, body(system=variant_b, turns=turns[:2]), cached=0)
    three = row("t3", 20, body(turns=turns), cached=one["total_tokens"] // 128 * 128)
    out = explain(one, two, three)
    assert (out[2].predecessor_id, out[2].cause) == ("t2", "system_changed")
    assert out[2].missed_tokens > 0


@pytest.mark.parametrize("edited, cause", [(False, "no_miss"), (True, "history_rewritten")])
def test_a_new_conversation_under_the_same_key_is_not_a_rewrite(edited, cause):
    old = row("a", 0, body(turns=TURNS))
    if edited:  # the old conversation with its first question edited: a rewrite
        turns = ("Plan the whole trip?" + MORE, *TURNS[1:], "Done?")
    else:  # another conversation from its first turn on
        turns = tuple(q + MORE for q in ("Track my order?", "It is late?", "Refund?"))
    new = row("b", 30, body(turns=turns), cached=2048)
    assert explain(old, new)[1].cause == cause


@pytest.mark.parametrize("replica, cause", [("r2", "routing"), ("r1", "eviction_or_unknown")])
def test_past_the_ttl_a_fresher_request_holding_the_prefix_decides(replica, cause):
    turn = row("a", 0, body(turns=TURNS[:1]), replica="r1")
    fresh = row("o", 900, body(turns=("Other?",)), replica=replica, session="other")
    late = row("b", 1000, body(turns=TURNS[:2]), cached=0, replica="r1")
    out = explain(turn, fresh, late)
    assert out[2].cause == cause and out[2].missed_tokens > 1000
    assert explain(turn, late)[1].cause == "ttl_expired"  # nothing fresher held it


def test_a_new_conversation_with_another_selection_of_the_tools_misses_them():
    first = row("a", 0, body(), session="s1")
    subset = row("b", 10, body(tools=TOOLS[1:3], turns=("Other?",)), cached=0, session="s2")
    out = explain(first, subset)
    assert (out[1].cause, out[1].predecessor_id) == ("tools_changed", "a")
    assert out[1].missed_tokens > 0


def test_a_route_serving_two_tool_sets_blames_neither():
    """Two agents on one route and model, sharing one tool: a new conversation of each
    finds an earlier one with its own tools exactly, and is served."""
    agent_one, agent_two = TOOLS[:3], TOOLS[2:]
    rows = [
        row("a1", 0, body(tools=agent_one), session="s1"),
        row("b1", 5, body(tools=agent_two), session="s2"),
        row("a2", 10, body(tools=agent_one, turns=("Other?",)), session="s3"),
        row("b2", 15, body(tools=agent_two, turns=("More?",)), session="s4"),
    ]
    assert [e.cause for e in explain(*rows)][2:] == ["no_miss", "no_miss"]
