"""Every cause, from a minimal stream of requests that produces it."""

from __future__ import annotations

import copy

import pytest

from analysis.explain import Explainer
from tests.explain_build import SYSTEM, TOOLS, body, explain, row


def test_cold_start_then_no_miss():
    first = row("a", 0, body(), cached=0)
    second = row("b", 30, body(turns=("Hello?", "More?")), cached=None)
    out = explain(first, second)
    assert [e.cause for e in out] == ["cold_start", "no_miss"]
    assert out[1].predecessor_id == "a" and out[1].missed_tokens == 0


@pytest.mark.parametrize(
    "name, change, capture, cause, segment",
    [
        (
            "timestamp",
            lambda b: b["messages"][0].update(content="Now: 2026-11-22T10:05:00Z\n" + SYSTEM),
            True,
            "dynamic_value",
            "messages[0].content",
        ),
        (
            "timestamp_no_content",
            lambda b: b["messages"][0].update(content="Now: 2026-11-22T10:05:00Z\n" + SYSTEM),
            False,
            "system_changed",
            "messages[0].content",
        ),
        (
            "tools_reordered",
            lambda b: b.update(tools=list(reversed(TOOLS))),
            False,
            "tools_reordered",
            "tools[0]",
        ),
        ("tools_changed", lambda b: b.update(tools=TOOLS[:2]), False, "tools_changed", "tools[2]"),
        (
            "key_order",
            lambda b: b["tools"][0]["function"]["parameters"].update(
                properties={"b": {"type": "integer"}, "a": {"type": "string"}}
            ),
            True,
            "key_order",
            "tools[0]",
        ),
        (
            "history",
            lambda b: b["messages"][1].update(content="Hello, edited?"),
            False,
            "history_rewritten",
            "messages[1].content",
        ),
        ("model", lambda b: b.update(model="gpt-4.1"), False, "model_changed", None),
    ],
)
def test_shape_causes(name, change, capture, cause, segment):
    stamped = "Now: 2026-11-22T10:00:00Z\n" + SYSTEM
    first = body(
        system=stamped if name.startswith("timestamp") else SYSTEM, turns=("Hello?", "More?")
    )
    second = copy.deepcopy(first)
    second["messages"].append({"role": "assistant", "content": "Sure."})
    second["messages"].append({"role": "user", "content": "Thanks?"})
    change(second)
    out = explain(
        row("a", 0, first, capture=capture), row("b", 20, second, cached=0, capture=capture)
    )
    assert (out[1].cause, out[1].segment) == (cause, segment)
    assert out[1].missed_tokens > 1000 and out[1].missed_cost_usd > 0
    if capture:
        assert out[1].first_diff_token is not None


def test_reasoning_dropped_from_segment_maps():
    first = body(turns=("Fix it?", "And this?"), reasoning="Think about the parser first.")
    second = body(turns=("Fix it?", "And this?", "Done?"))
    out = explain(row("a", 0, first), row("b", 20, second, cached=0))
    assert (out[1].cause, out[1].segment) == ("reasoning_dropped", "messages[2].reasoning_content")


@pytest.mark.parametrize(
    "gap, replica, session, rows_before, cause",
    [
        (30, "r2", "s1", [], "routing"),  # the predecessor's replica differs
        (30, "r1", None, ["r2"], "routing"),  # no key while two replicas serve
        (2000, "r1", "s1", [], "ttl_expired"),  # past OpenAI's 600 s
        (2000, "r2", "s1", [], "ttl_expired"),  # past it, every replica had lost the prefix
        (0.2, "r1", "s1", [], "concurrent_fanout"),  # same new prefix, 200 ms later
        (60, "r1", "s1", [], "eviction_or_unknown"),
    ],
)
def test_traffic_causes(gap, replica, session, rows_before, cause):
    history = [
        row(f"x{i}", -50 + i, body(system="Other. " + SYSTEM), replica=rep, session=f"o{i}")
        for i, rep in enumerate(rows_before)
    ]
    first = row("a", 0, body(), replica="r1", session=session)
    second = row(
        "b", gap, body(turns=("Hello?", "More?")), cached=0, replica=replica, session=session
    )
    out = explain(*history, first, second)
    assert out[-1].cause == cause
    assert out[-1].missed_tokens > 0 and out[-1].expected_cached > 0


def test_below_minimum():
    short = body(system="Be brief.", tools=[])
    out = explain(
        row("a", 0, short, cached=0),
        row("b", 10, body(system="Be brief.", tools=[], turns=("Hello?", "More?")), cached=0),
    )
    assert out[1].cause == "below_minimum"


def test_predecessor_by_longest_block_prefix_without_session():
    other = row("o", 0, body(system="Different. " + SYSTEM), session=None)
    mine = row("a", 1, body(), session=None)
    nxt = row("b", 5, body(turns=("Hello?", "More?")), session=None)
    out = explain(other, mine, nxt)
    assert out[2].predecessor_id == "a" and out[2].cause == "no_miss"


def test_state_forgets_requests_past_the_ttl_window_and_stays_bounded(monkeypatch):
    from analysis import explain as explain_module
    from analysis import remembered

    explainer = Explainer()
    first = row("a", 0, body())
    explainer.explain(first)
    later = row("z", explainer.window_s + 10, body(system="Other. " + SYSTEM), session="s2")
    explainer.explain(later)
    assert "s1" not in explainer._sessions  # past the window: forgotten
    again = row("y", 2 * explainer.window_s + 20, body(), session="s3")
    assert explainer.explain(again).cause == "cold_start"  # nor found by its blocks
    # z is a window older than y too: forgotten with its blocks, only y's are left
    assert len(explainer._blocks) == len(first["block_hashes"])

    monkeypatch.setattr(remembered, "MAX_BLOCKS", 3 * len(first["block_hashes"]))
    monkeypatch.setattr(explain_module, "MAX_REQUESTS", 4)
    bounded = Explainer()
    for i in range(10):  # distinct prefixes, all within the window
        bounded.explain(row(f"r{i}", i, body(system=f"Variant {i}. " + SYSTEM), session=f"s{i}"))
        assert len(bounded._blocks) <= remembered.MAX_BLOCKS
    assert "s9" in bounded._sessions and "s0" not in bounded._sessions
    assert len(bounded._sessions) == 4


@pytest.mark.parametrize(
    "turns",
    [("A new question, days later?",), ("Hello?", "More, edited?")],
    ids=["new conversation", "edited last message"],
)
def test_a_session_that_parts_only_in_its_newest_turn_is_not_a_rewrite(turns):
    """Same session key, and nothing but the newest turn differs: the cache owes the
    shared prefix, as to anyone, and the earlier turns were not the client's to keep."""
    earlier = row("a", 0, body(turns=("Hello?", "More?")))
    shared = row("x", 0, body(turns=()))["total_tokens"] // 128 * 128  # the system and tools
    later = row("b", 60, body(turns=turns), cached=shared)
    out = explain(earlier, later)[1]
    assert out.cause == "no_miss" and out.missed_tokens == 0 and out.predecessor_id == "a"


def test_provider_verdict_is_kept_beside_ours():
    first = row("a", 0, body())
    second = dict(
        row("b", 20, body(model="gpt-4.1"), cached=0),
        provider_verdict='{"prompt_cache_diagnostics": {"reason": "model_changed"}}',
    )
    out = explain(first, second)
    assert out[1].cause == "model_changed" and "model_changed" in out[1].provider_verdict


def test_an_explainer_primed_with_explained_requests_explains_the_next_as_if_it_had_run():
    earlier = [row("a", 0, body()), row("b", 30, body(turns=("Hello?", "More?")))]
    later = row("c", 60, body(turns=("Hello?", "More?", "And?")), cached=0)
    primed = Explainer()
    for r in earlier:
        primed.remember(r)
    out = primed.explain(later)
    assert out == explain(*earlier, later)[2] and out.predecessor_id == "b"


@pytest.mark.parametrize("cached, cause", [(None, "no_miss"), (0, "eviction_or_unknown")])
def test_fan_out_step_is_compared_with_the_request_it_extends(cached, cause):
    """One session key: A; B1, B2, B3 each extend A in parallel; C extends B2, not B3 (the
    latest), so nothing in its history was rewritten."""
    a = row("a", 0, body(turns=("Plan the trip?",)))
    fan = [
        row(f"b{k}", 5 + k / 10, body(turns=("Plan the trip?", f"Part {k}?"))) for k in (1, 2, 3)
    ]
    c = row("c", 30, body(turns=("Plan the trip?", "Part 2?", "Details?")), cached=cached)
    out = explain(a, *fan, c)
    assert "history_rewritten" not in [e.cause for e in out]
    assert (out[4].predecessor_id, out[4].cause) == ("b2", cause)


def test_session_keeps_a_bounded_list_of_recent_requests():
    from analysis.lineage import RECENT

    explainer = Explainer()
    for k in range(3 * RECENT):
        explainer.explain(row(f"b{k}", k, body(turns=("Plan?", f"Part {k}?"))))
    assert len(explainer._sessions.recent("s1")) == RECENT
    assert explainer._sessions["s1"].id == f"b{3 * RECENT - 1}"


def test_a_turn_after_a_canary_turn_extends_its_own_models_last_request():
    """A model canary drawn per request: turn 2 goes to the canary (model_changed); turn 3
    is back on the main model, whose cache holds turn 1: it extends turn 1, no miss."""
    turns = ("Plan the trip?", "Which city?", "And the hotel?")
    first = row("a", 0, body(turns=turns[:1]))
    canary = row("b", 10, body(turns=turns[:2], model="gpt-4.1"), cached=0)
    back = row("c", 20, body(turns=turns), cached=first["total_tokens"] // 128 * 128)
    out = explain(first, canary, back)
    assert out[1].cause == "model_changed"
    assert (out[2].predecessor_id, out[2].cause) == ("a", "no_miss")
