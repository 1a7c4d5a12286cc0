"""Requests without a session key: a turn whose opening changed is compared with the turn
before of its conversation, found by its turns, and the break is a miss of its own."""

from __future__ import annotations

from tests.explain_build import SYSTEM, body, explain, row

STAMPED = SYSTEM.replace("Rule 3:", "Rule 3 (as of 2026-11-30T10:07:00Z):", 1)
TURNS = ("Where is my order 1182?", "Can I return it?")


def test_a_timestamp_written_mid_sentence_is_a_miss_of_the_turn_before():
    one = row("t1", 0, body(turns=TURNS[:1]), session=None)
    two = row("t2", 10, body(system=STAMPED, turns=TURNS), cached=0, session=None)
    out = explain(one, two)[1]
    want = ("system_changed", "t1", "messages[0].content")
    assert (out.cause, out.predecessor_id, out.path) == want
    assert out.missed_tokens >= one["total_tokens"] // 128 * 128 - 128  # the turn before


def test_with_content_captured_the_first_differing_token_is_named():
    one = row("t1", 0, body(turns=TURNS[:1]), session=None, capture=True)
    two = row("t2", 10, body(system=STAMPED, turns=TURNS), cached=0, session=None, capture=True)
    out = explain(one, two)[1]
    assert out.cause in ("dynamic_value", "system_changed") and out.missed_tokens > 0
    assert out.first_diff_token is not None and out.first_diff_token > 0


def test_another_conversation_with_another_opening_stays_no_miss():
    """Other turns: not the conversation carried on, so only the shared prefix counts."""
    one = row("t1", 0, body(turns=TURNS[:1]), session=None)
    other = row("t2", 10, body(system=STAMPED, turns=("Track my parcel?",)), cached=0, session=None)
    assert explain(one, other)[1].cause == "no_miss"


def test_an_exact_sharer_of_the_opening_wins_over_the_same_turns_elsewhere():
    """Two system prompts on one route, both asked the same first question: each turn is
    compared with the request holding its own opening exactly (served: no miss)."""
    a = row("a", 0, body(turns=TURNS[:1]), session=None)
    b = row("b", 5, body(system=STAMPED, turns=TURNS[:1]), session=None)
    again = row("c", 10, body(turns=TURNS), session=None, cached=a["cached_tokens"])
    out = explain(a, b, again)
    assert (out[2].cause, out[2].predecessor_id) == ("no_miss", "a")


def test_a_session_key_keeps_its_own_rules():
    one = row("t1", 0, body(turns=TURNS[:1]), session="s1")
    two = row("t2", 10, body(system=STAMPED, turns=TURNS), cached=0, session="s2")
    assert explain(one, two)[1].cause == "no_miss"  # another key: another conversation
