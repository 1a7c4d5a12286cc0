"""Kin: the other conversations of a route that open the way a request does, but for a
change of one kind.

A request that extends none of its session's requests is compared with the request
sharing its longest run of leading blocks. When its opening parts changed (a timestamp
in the system prompt, schema keys in another order, the same tools in another order),
that run is short or empty, although its route's other requests open with the very
same parts in a canonical form: the cache would have served those had they been
stable. The route's few latest requests of the same model are kept to find that out
from the segment maps' canonical hashes alone; the longest run of parts equal
exactly or in one canonical form (never the request's own newest part: a value in it
is the request's payload, not a prefix breaker) says how much and why.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any, NamedTuple

from analysis.segmaps import FIXED, HASH, permuted, same_part

RECENT = 4  # latest requests kept per route and model


class Match(NamedTuple):
    """How far a request opens like a kin request, and the first change on the way."""

    cause: str  # dynamic_value, key_order, whitespace, *_reordered, tools_changed
    path: str  # the first changed part, in the later request
    end: int  # token position (ours) where the run of equal parts ends


class Kin:
    """(route, model) ─► its latest requests, newest first."""

    def __init__(self) -> None:
        self._latest: dict[tuple, deque] = {}

    def add(self, key: tuple, seen: Any) -> None:
        latest = self._latest.get(key)
        if latest is None:
            latest = self._latest[key] = deque(maxlen=RECENT)
        latest.appendleft(seen)

    def best(self, key: tuple, new: Any) -> tuple[Any, Match] | None:
        """The kin request ``new`` opens like furthest, and how far."""
        found = None
        for seen in self._latest.get(key, ()):
            match = run(seen.segments, new.segments, _equal(seen.marks, new.marks))
            if match is not None and (found is None or match.end > found[1].end):
                found = (seen, match)
        return found

    def carried_on(self, key: tuple, new: Any) -> Any | None:
        """The latest of the route's requests whose conversation ``new`` carries on without
        a session key: its turns (one at least) are all of ``new``'s first turns, while its
        system part or tools differ. Without a key, that is the turn before, sent with
        another opening (a timestamp written into the system prompt mid-sentence); None
        when there is none."""
        talk, fixed = _talk(new.segments), _fixed(new.segments)
        for seen in self._latest.get(key, ()):
            theirs = _talk(seen.segments)
            if theirs and talk[: len(theirs)] == theirs and _fixed(seen.segments) != fixed:
                return seen
        return None


def _fixed(segments: tuple) -> list:
    """A request's opening parts (tools, the system part): their exact hashes."""
    return [s[HASH] for s in segments if s[1] in FIXED]


def _equal(a: Any, b: Any) -> int:
    """How many leading segments two requests share exactly (their marks)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def _talk(segments: tuple) -> list:
    """A conversation's own parts (after the system part and tools): their exact hashes."""
    return [s[HASH] for s in segments if s[1] not in FIXED]


def continued(recent: tuple, last: Any, new: Any) -> Any | None:
    """The session request newer than ``last`` (the one a request extends exactly) whose
    conversation the request continues further: its turns are all the request's first
    turns, while its system part or tools differ (an A/B flag drawn per request, another
    worker's tool order), or they equal the request's in a canonical form. That is the
    request it should have extended; None when there is none."""
    newer = [s for s in recent if s.ts > last.ts and s is not last]
    if not newer:  # the usual case: it extends the newest (read no segment map)
        return None
    segments = new.segments
    talk, best, reach = _talk(segments), None, len(_talk(last.segments))
    for seen in newer:
        theirs = _talk(seen.segments)
        if len(theirs) > reach and talk[: len(theirs)] == theirs:
            best, reach = seen, len(theirs)
    if best is not None:
        return best
    reach = last.segments[-1][3] if last.segments else 0
    for seen in newer:
        match = run(seen.segments, segments)
        if match is not None and match.end > reach:
            best, reach = seen, match.end
    return best


def _tools(tail: tuple) -> int:
    """How many leading parts of a tail are tools."""
    return next((k for k, s in enumerate(tail) if s[1] != "tool"), len(tail))


def _step(ta: tuple, tb: tuple, room: int) -> tuple[str, int, int] | None:
    """The change of one kind two tails open with, and how many parts of each it spans:
    one part equal in a canonical form, parts in another order, or (tools) another
    selection of the same tools (some in common)."""
    cause = same_part(ta[0], tb[0])
    if cause is not None:
        return cause, 1, 1
    kind = "tools_reordered" if tb[0][1] == "tool" else "context_reordered"
    count = permuted(ta, tb, room)
    if count is not None:
        return kind, count, count
    if ta[0][1] == tb[0][1] == "tool":
        na, nb = _tools(ta), min(_tools(tb), room)
        if Counter(s[HASH] for s in ta[:na]) & Counter(s[HASH] for s in tb[:nb]):
            return "tools_changed", na, nb
    return None


def run(a: tuple, b: tuple, start: int = 0) -> Match | None:
    """How far B's parts equal A's, exactly or past changes of one kind (``_step``), short
    of B's last part; None when no such change was met (the block chains already tell)
    or nothing matched. ``start``: leading parts already known to be equal."""
    i = j = min(start, len(b) - 1)  # i: in A, j: in B
    first = None
    while j < len(b) - 1 and i < len(a):
        if a[i][HASH] == b[j][HASH]:
            i, j = i + 1, j + 1
            continue
        step = _step(a[i:], b[j:], min(len(a) - i, len(b) - 1 - j))
        if step is None:
            break
        first = first or (step[0], b[j][0])
        i, j = i + step[1], j + step[2]
    if first is None or j == 0:
        return None
    return Match(first[0], first[1], int(b[j - 1][3]))
