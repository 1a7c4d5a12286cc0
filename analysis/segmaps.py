"""Segment maps: the stored outline of a rendered request, and what two of them say.

A segment map lists a request's parts in rendering order as (path, kind, start,
end, hash, masked, json, space, items, unstamped): ``messages[3].content[1]``,
``message``, its token span, a hash of its text and the hashes of its text's
canonical forms ("" where a form is the text itself; see ``analysis.fingerprint``).
Rows stored before the canonical hashes have only the first five, and before the
unstamped hash only the first nine. Two maps tell, without the
content, where a prompt changed and which shape cause that is, in the order
``analysis.causes`` gives them; with the captured rendering, a map rebuilds the
Prompt the token-exact differ needs.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import msgspec

from analysis.causes import MAX_REORDERED
from analysis.prompt import Prompt, Segment

_MARKER = re.compile(r"(?m)^<\|[^|\n]*\|>\n")
FIXED = ("system", "tool")  # the kinds that open every request of a conversation
HASH = 4  # where the exact hash lies in a segment; the canonical hashes follow it
# What a match of one canonical hash says, first match first (as analysis.causes).
_SAME_PART = (
    ("whitespace", 7),
    ("key_order", 6),
    ("dynamic_value", 5),
    ("dynamic_value", 9),  # a line that only labels a volatile value, added or removed
    ("context_reordered", 8),
)


_DECODE = msgspec.json.Decoder(tuple[tuple, ...]).decode  # straight into tuples, 2.5x json's


def segment_map(raw: Any) -> tuple[tuple, ...]:
    """A stored segment map (JSON or list) as (path, kind, start, end, hash) tuples."""
    if isinstance(raw, str):
        try:
            return _DECODE(raw)
        except msgspec.DecodeError:
            return ()
    if isinstance(raw, tuple) and (not raw or isinstance(raw[0], tuple)):
        return raw  # decoded already
    return tuple(map(tuple, raw or ()))


_DECODED: dict[int, tuple[Any, tuple[tuple, ...]]] = {}  # id(raw) ─► (raw, its tuples)
_MEMO = 16


def decoded(raw: Any) -> tuple[tuple, ...]:
    """``segment_map(raw)``, the last few remembered: an explainer keeps maps undecoded
    (a stored map takes ~2 KB as JSON text, ~15 KB as tuples) and decodes the one at
    hand once, however often it is read. Keyed by identity (the entry holds ``raw``, so
    its id is not reused while it is there)."""
    found = _DECODED.get(id(raw))
    if found is not None and found[0] is raw:
        return found[1]
    value = segment_map(raw)
    if len(_DECODED) >= _MEMO:
        _DECODED.clear()
    _DECODED[id(raw)] = (raw, value)
    return value


def branched(a_marks: tuple, b_marks: tuple, b_segments: tuple) -> bool:
    """Does B part from A only inside B's own newest turn, or is it another conversation
    (marks: the segments' hashes)? A new conversation under the same key (from its first
    turn on, fewer than half of A's turns' parts in it: an answer like "OK." may recur),
    an edited last message, or a retry: nothing before that turn changed."""
    if b_marks[: len(a_marks)] == a_marks:
        return False  # B extends A (the common case)
    pairs = enumerate(zip(a_marks, b_marks, strict=False))
    i = next((k for k, (x, y) in pairs if x != y), None)
    if i is None or b_segments[i][1] in FIXED:
        return False  # A extends B, or the fixed part changed

    def turn(segment: tuple) -> str:  # "messages[3].content[1]" ─► "messages[3"
        return segment[0].split("]", 1)[0]

    if turn(b_segments[i]) == turn(b_segments[-1]):
        return True
    if not all(s[1] in FIXED for s in b_segments[:i]):
        return False  # B keeps some of A's turns: a rewrite
    earlier, kept = a_marks[i:], set(b_marks[i:])  # another conversation keeps few of A's
    return sum(mark in kept for mark in earlier) * 2 < len(earlier)


def shape_cause(a: tuple, b: tuple) -> tuple[str, str | None, str | None]:
    """The shape cause of B against A, from their segment maps alone: (cause, segment,
    path). Same model assumed. Without canonical hashes (older rows), a part's edit is
    only what part it was in: a system edit is system_changed."""
    i = next(
        (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x[HASH] != y[HASH]),
        min(len(a), len(b)),
    )
    sa, sb = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
    if sa is None:
        return "appended", sb[0] if sb else None, sb[0] if sb else None
    if sa[1] == "reasoning" and (sb is None or sb[1] != "reasoning"):
        return "reasoning_dropped", sa[0], sa[0]
    changed = sb if sb is not None and sa[HASH] in {s[HASH] for s in b} else sa
    found = same_part(sa, sb) or ("context_reordered" if _reordered(a[i:], b[i:]) else None)
    if found:
        return found, changed[0], changed[0]
    if "tool" in (sa[1], sb[1] if sb else None):
        tools_a = Counter(s[HASH] for s in a if s[1] == "tool")
        tools_b = Counter(s[HASH] for s in b if s[1] == "tool")
        if tools_a == tools_b:
            return "tools_reordered", sa[0], sa[0]
        edited = sb if sb is not None and sb[1] == "tool" and sb[HASH] not in tools_a else sa
        return "tools_changed", edited[0], edited[0]
    if "system" in (sa[1], sb[1] if sb else None):
        return "system_changed", changed[0], changed[0]
    return "history_rewritten", changed[0], changed[0]


def same_part(sa: tuple, sb: tuple | None) -> str | None:
    """The cause one pair of corresponding parts shows by its canonical hashes: the first
    form in which they still match."""
    if sb is None or sa[1] != sb[1] or len(sa) <= HASH + 4 or len(sb) <= HASH + 4:
        return None
    for cause, k in _SAME_PART:
        if k < len(sa) and k < len(sb) and (sa[k] or sa[HASH]) == (sb[k] or sb[HASH]):
            return cause
    return None


def _reordered(tail_a: tuple, tail_b: tuple) -> bool:
    """Do both tails open with the same non-tool parts in another order (documents as
    blocks of their own, search hits)?"""
    if not tail_b or "tool" in (tail_a[0][1], tail_b[0][1]):
        return False
    return permuted(tail_a, tail_b, min(len(tail_a), len(tail_b))) is not None


def permuted(ta: tuple, tb: tuple, room: int) -> int | None:
    """How many leading parts of two tails that differ in their first part hold the same
    parts in another order (tools, documents as parts of their own), at least two and at
    most ``room`` (and MAX_REORDERED); None if they do not."""
    room = min(room, MAX_REORDERED)
    first = tb[0][HASH]
    if not any(s[HASH] == first for s in ta[1:room]):
        return None  # B's first part is none of A's next ones: no reorder (the usual case)
    count_a, count_b = Counter(), Counter()
    for k in range(room):
        count_a[ta[k][HASH]] += 1
        count_b[tb[k][HASH]] += 1
        if k and count_a == count_b:
            return k + 1
    return None


def captured_prompt(content: Any, segments: Any, model: str | None) -> Prompt | None:
    """A Prompt rebuilt from a captured rendering (the text, or a callable that reads it)
    and its segment map, if they agree."""
    if callable(content):
        content = content()
    text, spans = content or "", segment_map(segments)
    starts = [m.start() for m in _MARKER.finditer(text)]
    if not spans or len(starts) != len(spans) or starts[0] != 0:
        return None
    cut = [*starts, len(text)]
    rebuilt = []
    for (path, kind, *_), begin, end in zip(spans, cut, cut[1:], strict=False):
        piece = text[begin:end]
        marker = _MARKER.match(piece)
        rebuilt.append(Segment(path, kind, piece, marker.end() if marker else 0))
    return Prompt("captured", model, tuple(rebuilt))
