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

from analysis.causes import MAX_REORDERED
from analysis.segmaps import FIXED, HASH, same_part

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

    def best(self, key: tuple, segments: tuple) -> tuple[Any, Match] | None:
        """The kin request the given segments open like furthest, and how far."""
        found = None
        for seen in self._latest.get(key, ()):
            match = run(seen.segments, segments)
            if match is not None and (found is None or match.end > found[1].end):
                found = (seen, match)
        return found


def _talk(segments: tuple) -> list:
    """A conversation's own parts (after the system part and tools): their exact hashes."""
    return [s[HASH] for s in segments if s[1] not in FIXED]


def continued(recent: tuple, last: Any, segments: tuple) -> Any | None:
    """The session request newer than ``last`` (the one a request extends exactly) whose
    conversation the request continues further: its turns are all the request's first
    turns, while its system part or tools differ (an A/B flag drawn per request, another
    worker's tool order), or they equal the request's in a canonical form. That is the
    request it should have extended; None when there is none."""
    talk, newer = _talk(segments), [s for s in recent if s.ts > last.ts and s is not last]
    best, reach = None, len(_talk(last.segments))
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


def _permuted(a: tuple, b: tuple, i: int, limit: int) -> int | None:
    """Where the shortest run from ``i`` ends that holds the same parts in A and B in
    another order (tools, documents as parts of their own); None if there is none."""
    count_a, count_b = Counter(), Counter()
    for k in range(i, min(limit, i + MAX_REORDERED)):
        count_a[a[k][HASH]] += 1
        count_b[b[k][HASH]] += 1
        if k > i and count_a == count_b:
            return k + 1
    return None


def _tools_changed(a: tuple, b: tuple, i: int) -> int | None:
    """Where B's run of tools from ``i`` ends, when it is another selection from the same
    tools as A's (some in common); None otherwise."""
    end_a, end_b = i, i
    while end_a < len(a) and a[end_a][1] == "tool":
        end_a += 1
    while end_b < len(b) and b[end_b][1] == "tool":
        end_b += 1
    tools_a = Counter(s[HASH] for s in a[i:end_a])
    common = sum((tools_a & Counter(s[HASH] for s in b[i:end_b])).values())
    return end_b if common else None


def run(a: tuple, b: tuple) -> Match | None:
    """How far B's parts equal A's, exactly or in one canonical form each (or a run of
    them in another order; or up to the end of B's tools, when they are another selection
    of A's), short of B's last part; None when no canonical match was needed (the
    block chains already tell) or nothing matched."""
    limit = min(len(a), len(b) - 1)
    i, first = 0, None
    while i < limit:
        sa, sb = a[i], b[i]
        if sa[HASH] == sb[HASH]:
            i += 1
            continue
        cause, after = same_part(sa, sb), i + 1
        if cause is None:
            after = _permuted(a, b, i, limit) or i
            reordered = "tools_reordered" if sb[1] == "tool" else "context_reordered"
            cause = reordered if after > i else None
        if cause is None and sa[1] == sb[1] == "tool":
            after = _tools_changed(a, b, i) or i
            if after > i:  # a new selection of tools: what follows is not comparable
                first, i = first or ("tools_changed", sb[0]), min(after, limit)
                break
        if cause is None:
            break
        first = first or (cause, sb[0])
        i = after
    if first is None or i == 0:
        return None
    return Match(first[0], first[1], int(b[i - 1][3]))
