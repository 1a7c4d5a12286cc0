"""The volatile-value detector: its fast scan finds what one scan of its pattern finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import volatile

PIECES = (
    "2026-11-22T10:00:00Z",
    "2026-11-22 10:00 UTC",
    "Nov 22, 2026",
    "22nd November 2026",
    "1/2/2026",
    "Monday",
    "10:32 PM",
    "request #1234",
    "turn: 5",
    "#77",
    "req_8f3a9c21b7",
    "req_abcdef-gh1",
    "550e8400-e29b-41d4-a716-446655440000",
    "abcdefab-abcd-abcd-abcd-abcdefabcdef",
    "deadbeef1234cafe",
    "1763769600",
    "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNpZ25hdHVyZQ1==",
    "ſeq 5",
    "3.14",
    "policy",
    "day",
    '"',
    "{",
    "}",
    "(",
    ";",
    "请",
    "é",
    "-",
    "/",
    "_",
    " ",
    "\n",
    "x",
    "7",
)
texts = st.lists(st.sampled_from(PIECES), max_size=16).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_the_scan_of_runs_finds_what_one_scan_of_the_whole_text_finds(text):
    whole = list(volatile._COMBINED.finditer(text))
    assert [(v.start, v.end) for v in volatile.find(text)] == [m.span() for m in whole]
    assert volatile.mask(text) == volatile._COMBINED.sub(volatile.MASK, text)


def test_kinds_and_a_text_without_values():
    found = volatile.find('{"at": "2026-11-22T10:00:00Z", "id": "req_8f3a9c21b7"}')
    assert [v.kind for v in found] == ["timestamp", "id"]
    prose = "Refunds are accepted within thirty days of delivery."
    assert volatile.mask(prose) is prose and volatile.find(prose) == []
