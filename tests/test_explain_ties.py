"""Requests with the same time are explained in one fixed order, (time, id), however they
were stored: by one pass, by the server's explainer as they commit, and after a restart."""

from __future__ import annotations

import pytest

from analysis.explain import Explainer
from tests.explain_build import SYSTEM, body, row
from tests.test_explain_store import _explanations, _insert, _store

T0 = 1_763_800_000


def _rows():
    """A conversation whose second turn was sent three times at once (same time, same
    body, missing the cache), beside another conversation's request at that time."""
    return [
        row("s-0", T0, body()),
        *(row(f"s-1{c}", T0 + 30, body(turns=("Hello?", "More?")), cached=0) for c in "abc"),
        row("o-1", T0 + 30, body(system="Other. " + SYSTEM), session="o"),
        row("s-2", T0 + 60, body(turns=("Hello?", "More?", "Again?"))),
    ]


ORDERS = {
    "in order": lambda rows: rows,
    "reversed": lambda rows: rows[::-1],
    "shuffled": lambda rows: [rows[i] for i in (4, 2, 0, 3, 5, 1)],
}


def _one_pass(tmp_path, rows, name="db.duckdb"):
    from collector.explanations import explain_new

    store = _store(tmp_path, rows, name)
    explain_new(store, Explainer())
    found = _explanations(store)
    store.close()
    return found


@pytest.mark.parametrize("order", ORDERS)
def test_one_pass_explains_ties_by_id_whatever_the_order_stored(tmp_path, order):
    expected = _one_pass(tmp_path, _rows(), "expected.duckdb")
    assert _one_pass(tmp_path, ORDERS[order](_rows())) == expected
    # (time, id): the first of the three is the one the other two repeat
    assert [expected[f"s-1{c}"][10] for c in "abc"] == ["s-0", "s-1a", "s-1b"]


@pytest.mark.parametrize("order", ORDERS)
def test_the_servers_explainer_explains_ties_as_one_pass_does(tmp_path, order):
    from collector.explain_loop import Background

    expected = _one_pass(tmp_path, _rows(), "expected.duckdb")
    store = _store(tmp_path, [])
    background = Background(store)
    for r in ORDERS[order](_rows()):  # one commit each, explained as they come
        _insert(store, [r])
        background.poke()
        assert background.flush(60)
    assert background.close() is True
    assert _explanations(store) == expected
    store.close()


@pytest.mark.parametrize("late", ["s-1a", "s-1c"])
def test_a_restart_primes_and_rewinds_ties_by_id(tmp_path, late):
    """Stored without one of the three, explained, stopped; the missing one comes, and
    a fresh explainer resumes: the same explanations as one pass over all of them."""
    from collector.explanations import explain_new, resume

    expected = _one_pass(tmp_path, _rows(), "expected.duckdb")
    rows = _rows()
    store = _store(tmp_path, [r for r in rows if r["id"] != late])
    explain_new(store, Explainer())
    _insert(store, [r for r in rows if r["id"] == late])
    resume(store, Explainer())
    assert _explanations(store) == expected
    store.close()
