"""Expectations in the provider's own terms: its token count, its unit and minimum, Anthropic's
breakpoints, a horizon as long as the providers seen keep a prefix; and the invariant that a
miss cause always comes with missed tokens > 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import fingerprint, prompt, providers
from analysis.explain import NOT_MISSES, Explainer
from collector.explanations import explain_new
from collector.records import ingest_file, request_record
from collector.store.database import Store
from tests.explain_build import SYSTEM, TOK, body, explain, row

ROOT = Path(__file__).resolve().parent.parent
EPHEMERAL = {"type": "ephemeral"}


def claude(turns: tuple[str, ...], mark_last: bool = True) -> dict:
    """Anthropic Messages: a breakpoint after the system part, and (``mark_last``) one on
    the newest user message, moving forward turn by turn."""
    messages = []
    for i, text in enumerate(turns):
        block = {"type": "text", "text": text}
        if mark_last and i == len(turns) - 1:
            block["cache_control"] = EPHEMERAL
        messages.append({"role": "user", "content": [block]})
        if i < len(turns) - 1:
            messages.append({"role": "assistant", "content": f"Answer {i}: " + "fine. " * 40})
    system = [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
    return {"model": "claude-sonnet-4-5", "max_tokens": 512, "system": system, "messages": messages}


def counted(rid, ts, request, scale=1.0, cached=0, provider="openai", **kwargs) -> dict:
    """A stored row whose provider counts ``scale`` tokens for each of ours, with the
    breakpoints the fingerprint records."""
    out = row(rid, ts, request, cached=cached, provider=provider, **kwargs)
    fp = fingerprint.fingerprint(prompt.parse(request), TOK, memo=fingerprint.TokenMemo())
    out["prompt_tokens"] = round(fp.total_tokens * scale)
    out["breakpoints"] = json.dumps(list(fp.breakpoints))
    return out


@pytest.mark.parametrize("scale", [0.9, 0.95, 0.97, 1.0, 1.07])
def test_a_healthy_request_under_another_token_count_is_no_miss(scale):
    """The provider served exactly what it could of the previous turn, counted its way."""
    first = counted("a", 0, body(turns=("Hello?",) * 30), scale)
    could = providers.prefix_rule(first["prompt_tokens"], 1024, 128)
    second = counted("b", 30, body(turns=("Hello?",) * 31), scale, cached=could)
    out = explain(first, second)[1]
    assert (out.cause, out.missed_tokens, out.expected_cached) == ("no_miss", 0, could)


def test_a_shortfall_of_more_than_one_unit_is_still_a_miss():
    first = counted("a", 0, body(turns=("Hello?",) * 30), 0.95)
    could = providers.prefix_rule(first["prompt_tokens"], 1024, 128)
    second = counted("b", 30, body(turns=("Hello?",) * 31), 0.95, cached=could - 512)
    out = explain(first, second)[1]
    assert (out.cause, out.missed_tokens) == ("eviction_or_unknown", 512)


def _claude_pair(cached_at: str, scale: float = 1.05, mark_last: bool = True):
    long_question = "Please read the attached policy carefully and help me. " * 30
    first = counted("a", 0, claude((long_question,)), scale, provider="anthropic")
    points = json.loads(first["breakpoints"])
    assert len(points) == 2  # the system part's and the newest message's
    cached = {"last": first["prompt_tokens"], "system": round(points[0] * scale)}[cached_at]
    later = claude((long_question, "And the refund?"), mark_last)
    return first, counted("b", 30, later, scale, cached=cached, provider="anthropic")


def test_anthropic_reads_up_to_the_last_breakpoint_the_shared_prefix_reaches():
    first, second = _claude_pair("last")
    out = explain(first, second)[1]
    assert (out.cause, out.missed_tokens) == ("no_miss", 0)
    assert out.expected_cached == first["prompt_tokens"]  # exact at the earlier request's end


def test_anthropic_served_only_up_to_an_earlier_breakpoint_is_a_miss():
    first, second = _claude_pair("system")
    out = explain(first, second)[1]
    assert out.cause == "eviction_or_unknown"
    assert out.missed_tokens == first["prompt_tokens"] - second["cached_tokens"] > 0


def test_anthropic_caches_nothing_of_a_request_without_breakpoints_past_the_first():
    """Entries exist only at breakpoints: the system part's, when the next request marks
    nothing after it, is all there is to read — and it was read."""
    first, second = _claude_pair("system", mark_last=False)
    out = explain(first, second)[1]
    assert (out.cause, out.missed_tokens) == ("no_miss", 0)
    assert out.expected_cached == second["cached_tokens"]


TITLE = body(system="Write a five-word title for this chat. " * 12, tools=[], turns=("Hi!",))


@pytest.mark.parametrize("replica", ["r1", "r2"])
def test_a_title_request_under_the_minimum_is_below_minimum_and_misses_nothing(replica):
    """``below_minimum`` is a verdict, not a miss cause: nothing under the minimum is the
    cache's to serve, so its missed tokens are 0, like ``no_miss`` (invariant below)."""
    first = counted("a", 0, TITLE)
    assert 100 < first["prompt_tokens"] < 1024
    out = explain(first, counted("b", 30, TITLE, replica=replica))
    assert [(e.cause, e.expected_cached, e.missed_tokens) for e in out] == [
        ("below_minimum", 0, 0),
        ("below_minimum", 0, 0),
    ]


@pytest.mark.parametrize(
    "provider, gap, cause",
    [
        ("anthropic", 3500, "ttl_expired"),  # an hour on a 5-minute TTL: still remembered
        ("openai", 7200, "ttl_expired"),  # OpenAI may keep a prefix 24 h
        ("anthropic", 7300, "cold_start"),  # past the longest TTL Anthropic offers
    ],
)
def test_a_shared_prefix_is_remembered_as_long_as_the_provider_could_hold_it(provider, gap, cause):
    first = row("a", 0, body(), provider=provider, session="s1")
    second = row("b", gap, body(turns=("Hi there?",)), cached=0, provider=provider, session="s2")
    out = explain(first, second)[1]
    assert out.cause == cause
    assert (out.missed_tokens > 0) == (cause == "ttl_expired")


def test_the_horizon_follows_the_longest_ttl_of_the_providers_seen():
    explainer = Explainer()
    table = explainer.table
    assert explainer.window_s == max(providers.max_ttl_s(table, p) for p in table["profiles"])
    explainer.explain(row("a", 0, body(), provider="anthropic"))
    assert explainer.window_s == providers.max_ttl_s(table, "anthropic") == 3600
    explainer.explain(row("b", 1, body(), provider="openai", session="s2"))
    assert explainer.window_s == providers.max_ttl_s(table, "openai") == 86400


def test_breakpoints_travel_from_the_body_to_the_stored_row(tmp_path):
    record = request_record({"time": 0, "id": "x", "request": claude(("Hi?",))}, capture=False)
    store = Store(str(tmp_path / "db.duckdb"))
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"time": 0, "id": "x", "request": claude(("Hi?",))}) + "\n")
    ingest_file(store, str(path), capture=False)
    (stored,) = store.con.execute("SELECT breakpoints FROM requests").fetchone()
    store.close()
    assert json.loads(stored) == json.loads(record.attributes["cachediag.breakpoints"])
    assert len(json.loads(stored)) == 2


def test_every_miss_cause_of_the_sample_day_has_missed_tokens(tmp_path):
    """The invariant, over every row of the explained sample day: a miss cause always has
    missed tokens > 0, and a verdict that is no miss has none."""
    store = Store(str(tmp_path / "sample.duckdb"))
    ingest_file(store, str(ROOT / "sample_data" / "traffic.jsonl.gz"), capture=False)
    explain_new(store, Explainer())
    rows = store.con.execute("SELECT id, cause, missed_tokens FROM explanations").fetchall()
    store.close()
    assert len(rows) > 3000
    wrong = [r for r in rows if (r[1] in NOT_MISSES) == (r[2] > 0)]
    assert not wrong, wrong[:5]
    assert {r[1] for r in rows} - set(NOT_MISSES)  # the day has misses to check
