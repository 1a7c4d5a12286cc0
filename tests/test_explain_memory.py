"""What the explainer keeps of a request stays small: the segment map as stored, no
captured content (read from the store when a shape cause needs it), and the remembered
requests bounded in bytes, forgotten from their sessions and the block index alike."""

from __future__ import annotations

import json

import pytest

from analysis import fingerprint, remembered
from analysis.explain import Explainer
from tests.explain_build import SYSTEM, body, explain, row


def _stored(r):
    """``r`` as a pass reads it from the store: JSON map, packed chain, no content."""
    return dict(
        r,
        segments=json.dumps(r["segments"]),
        block_hashes=fingerprint.pack_hashes(r["block_hashes"]),
        content=None,
        captured=r.get("content") is not None,
    )


def test_a_remembered_request_keeps_its_map_as_stored_and_no_content():
    r = row("a", 0, body(turns=("Hello?", "More?")), capture=True)
    loads = []
    read = remembered.ContentSource(lambda rid: loads.append(rid) or r["content"])
    seen = remembered.seen(_stored(r), read)
    assert isinstance(seen.segmap, str)  # undecoded
    assert seen.segments == tuple(map(tuple, r["segments"]))  # decoded when asked
    assert list(seen.ends) == [s[3] for s in r["segments"]]
    assert not isinstance(seen.content, str) and loads == []  # nothing read yet
    assert seen.content() == r["content"] and loads == ["a"]
    assert seen.size() < len(seen.segmap) + len(seen.hashes) + 1_500 < len(r["content"])


def test_content_is_read_only_for_a_shape_cause_and_gives_the_token_exact_answer():
    a = row("a", 0, body(), capture=True)
    b = row("b", 30, body(system=SYSTEM.replace("Rule 7:", "Rule seven:")), cached=0, capture=True)
    c = row("c", 60, body(system=SYSTEM.replace("Rule 7:", "Rule seven:"), turns=("Hi?",)))
    texts = {r["id"]: r["content"] for r in (a, b)}
    loads = []
    explainer = Explainer(content=lambda rid: loads.append(rid) or texts.get(rid))
    got = [explainer.explain(_stored(r)) for r in (a, b, c)]
    assert got == explain(a, b, c)  # as when the rows carry their content
    assert got[1].cause == "system_changed" and got[1].first_diff_token is not None
    assert sorted(loads) == ["a", "b"]  # b's shape cause; c extends b (no miss): none


def test_remembered_requests_are_bounded_in_bytes_and_forgotten_everywhere(monkeypatch):
    from analysis import explain as explain_module

    first = row("r0", 0, body(system="Variant 0. " + SYSTEM), session="s0")
    size = remembered.seen(_stored(first)).size()
    monkeypatch.setattr(explain_module, "MAX_BYTES", 3 * size + size // 2)
    explainer = Explainer()
    for i in range(8):  # distinct prefixes, all within the window
        r = row(f"r{i}", i, body(system=f"Variant {i}. " + SYSTEM), session=f"s{i}")
        explainer.explain(_stored(r))
        assert explainer._bytes <= explain_module.MAX_BYTES
    assert sorted(explainer._sessions) == ["s5", "s6", "s7"]
    generations = (explainer._blocks._young, explainer._blocks._old)
    held = {s.id for part in generations for model in part.values() for s in model.values()}
    assert held == {"r5", "r6", "r7"}  # the block index lets go of the forgotten too
    again = row("again", 9, body(system="Variant 0. " + SYSTEM), session="new")
    assert explainer.explain(_stored(again)).predecessor_id in {"r5", "r6", "r7"}  # not r0


@pytest.mark.parametrize("window_rows", [50_000, 2])
def test_the_pass_reads_captured_content_from_the_store(tmp_path, monkeypatch, window_rows):
    from collector.explanations import explain_new
    from collector.store import explaining
    from collector.store.database import Store

    monkeypatch.setattr(explaining, "WINDOW_ROWS", window_rows)
    monkeypatch.setattr(explaining, "CONTENT_WINDOW_ROWS", window_rows)
    edited = SYSTEM.replace("Rule 7:", "Rule seven:")
    rows = [
        row("a", 1_763_800_000, body(), capture=True),
        row("b", 1_763_800_030, body(system=edited), cached=0, capture=True),
        row("c", 1_763_800_060, body(system=edited, turns=("Hi?",)), cached=0),
    ]
    store = Store(str(tmp_path / "db.duckdb"))
    for r in rows:
        stored = dict(r, signal="span", start_ns=int(r["ts"] * 1e9))
        stored.pop("ts")
        stored["segments"] = json.dumps(stored["segments"])
        stored["block_hashes"] = fingerprint.pack_hashes(stored["block_hashes"])
        content = [(r["id"], r["content"])] if r["content"] else []
        store.insert(Store.frame([stored]), content)
    explain_new(store, Explainer())
    found = store.con.execute(
        "SELECT id, cause, first_diff_token FROM explanations ORDER BY id"
    ).fetchall()
    store.close()
    want = explain(*rows)
    assert found == [(e.id, e.cause, e.first_diff_token) for e in want]
    assert found[1][2] is not None  # token-exact: both renderings were read


@pytest.mark.parametrize("generation", [2, 3, 5], ids=lambda n: f"{n} requests a generation")
def test_the_block_index_holds_only_remembered_requests(monkeypatch, generation):
    from analysis import explain as explain_module

    def variant(i):
        return row(f"r{i}", i, body(system=f"Variant {i}. " + SYSTEM), session=f"s{i}")

    blocks = len(variant(0)["block_hashes"])
    monkeypatch.setattr(remembered, "MAX_BLOCKS", 2 * generation * blocks)
    monkeypatch.setattr(explain_module, "MAX_REQUESTS", 3)
    explainer = Explainer()
    for i in range(12):
        explainer.explain(_stored(variant(i)))
        kept = {seen.id for _, seen, _ in explainer._remembered}
        index = explainer._blocks
        generations = (index._young, index._old)
        held = {s.id for part in generations for model in part.values() for s in model.values()}
        assert held <= kept and kept == {f"r{k}" for k in range(max(i - 2, 0), i + 1)}
