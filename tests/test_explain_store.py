"""Explaining what a database holds: the CLI, the explain pass, resume after a stop or
a restart, priming from stored explanations, the background explainer."""

from __future__ import annotations

import json

import pytest

from analysis import fingerprint
from analysis.explain import Explainer
from tests.cli_run import cachediag as run
from tests.explain_build import SYSTEM, body, explain, row


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
    from collector.explain_loop import Background

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

    from collector.explain_loop import Background

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


def test_cli_explains_a_database_and_shows_one_request_with_its_diff(tmp_path):
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

    assert run("ingest", str(path), "--db", db).exit_code == 0
    summary = run("explain", "--db", db)
    assert summary.exit_code == 0 and "dynamic_value" in summary.stdout
    one = run("explain", "--db", db, "--request", "r1", "--format", "json")
    data = json.loads(one.stdout)
    assert data["cause"] == "dynamic_value" and data["predecessor_id"] == "r0"
    assert data["diff"]["cause"] == "dynamic_value" and data["diff"]["first_diff_token"] > 0
    text = run("explain", "--db", db, "--request", "r1")
    assert "timestamp '2026-11-22T10:00:00Z' → '2026-11-22T10:05:00Z'" in text.stdout
    missing = run("explain", "--db", db, "--request", "nope")
    assert missing.exit_code == 2 and "no explanation" in missing.stderr

    import duckdb

    def cause():
        with duckdb.connect(db) as con:
            return con.execute("SELECT cause FROM explanations WHERE id = 'r1'").fetchone()[0]

    with duckdb.connect(db) as con:
        con.execute("UPDATE explanations SET cause = 'marker' WHERE id = 'r1'")
    assert run("explain", "--db", db).exit_code == 0
    assert cause() == "marker"  # only what has no explanation is explained
    assert run("explain", "--db", db, "--all").exit_code == 0
    assert cause() == "dynamic_value"  # --all explains everything again


@pytest.mark.parametrize("pause_gc", [True, False])
def test_explain_pass_pauses_the_garbage_collector_only_when_asked(tmp_path, pause_gc):
    import gc

    from collector.explanations import explain_new

    store = _store(tmp_path, [row(f"r{i}", 1_763_800_000 + i, body()) for i in range(3)])
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


def _in_order(rows):
    """The explanations of ``rows`` explained in time order, as the store keeps them."""
    ordered = sorted(rows, key=lambda r: (r["ts"], r["id"]))
    return {e.id: (e.cause, e.predecessor_id) for e in explain(*ordered)}


def _causes(store):
    found = store.con.execute("SELECT id, cause, predecessor_id FROM explanations").fetchall()
    return {rid: (cause, pred) for rid, cause, pred in found}


def test_background_explains_again_from_a_row_committed_after_rows_it_precedes(tmp_path):
    """Concurrent exports commit out of time order: a session's first turn stored after
    its next ones (already explained as cold starts) makes them be explained again."""
    from collector.explain_loop import Background

    rows = _turns(4) + _turns(2, session="s2", t0=1_763_800_100)
    store = _store(tmp_path, rows[2:])  # s1-2, s1-3 and s2's turns first
    background = Background(store)
    assert background.flush(60)
    assert _causes(store)["s1-2"][0] == "cold_start"  # s1-0 and s1-1 are not stored yet
    for late in (rows[1], rows[0]):  # one commit each, newest first
        _insert(store, [late])
        background.poke()
        assert background.flush(60)
    assert background.rewinds == 2 and background.explained == len(rows)
    assert _causes(store) == _in_order(rows)
    assert background.close() is True
    store.close()


def test_without_a_flush_a_rewind_waits_for_the_gap_and_then_takes_every_late_row(tmp_path):
    """Live exporters commit out of order all the time: a rewind right after another one
    waits (REWIND_GAP_S), and the next flush explains every late row at once."""
    from collector.explain_loop import Background

    rows = _turns(4) + _turns(2, session="s2", t0=1_763_800_100)
    store = _store(tmp_path, rows[2:])
    background = Background(store)
    assert background.flush(60)
    _insert(store, [rows[1]])
    background.poke()
    assert background.flush(60) and background.rewinds == 1  # a flush rewinds at once
    background._idle.clear()
    _insert(store, [rows[0]])
    background.poke()  # no flush: within the gap, this rewind waits
    assert background._idle.wait(60)
    assert background.rewinds == 1 and "s1-0" not in _causes(store)
    assert background.flush(60) and background.rewinds == 2
    assert _causes(store) == _in_order(rows)
    assert background.close() is True
    store.close()


def test_resume_explains_again_from_a_request_older_than_the_explained_ones(tmp_path):
    """The same after a restart: a request without an explanation that is older than
    explained ones (committed late, just before a stop)."""
    from collector.explanations import explain_new, resume

    rows = _turns(3)
    store = _store(tmp_path, rows[1:])
    explain_new(store, Explainer())
    _insert(store, rows[:1])
    high, counts = resume(store, Explainer())
    assert high == 2 and counts.total() == 3  # all three, from s1-0 on
    assert _causes(store) == _in_order(rows)
    store.close()
