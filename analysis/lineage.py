"""Which earlier request a request extends: the leading block hashes two requests share,
and the recent requests of each session to look for it among (a fan-out's parallel
requests share a session key; the next step extends one of them, not the latest)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

RECENT = 8  # requests kept per session to find the one a request extends (fan-out)


def common(a: Sequence[int], b: Sequence[int]) -> int:
    """Leading equal entries of two hash chains (chained: equal once, equal before)."""
    lo, hi = 0, min(len(a), len(b))
    if hi and a[hi - 1] == b[hi - 1]:  # one extends the other: the usual next turn
        return hi
    while lo < hi:  # the largest n with a[n-1] == b[n-1]
        mid = (lo + hi + 1) // 2
        if a[mid - 1] == b[mid - 1]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Sessions:
    """Session key ─► its newest requests, newest first, at most RECENT of them and none
    a window older than the newest: the parallel requests of a fan-out stay findable.
    Reads like a dict of the newest request, so forgetting a session is ``del``."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._recent: dict[str, tuple[Any, ...]] = {}
        self.recent = self._recent.get  # key ─► its newest requests, or None (hot: no frame)

    def __len__(self) -> int:
        return len(self._recent)

    def __iter__(self) -> Iterator[str]:
        return iter(self._recent)

    def __contains__(self, key: object) -> bool:
        return key in self._recent

    def __getitem__(self, key: str) -> Any:
        return self._recent[key][0]

    def get(self, key: str) -> Any | None:
        found = self._recent.get(key)
        return found[0] if found else None

    def __setitem__(self, key: str, seen: Any) -> None:
        recent = self._recent.get(key)
        if recent is None:
            self._recent[key] = (seen,)
        elif recent[-1].ts >= seen.ts - self.window_s:
            self._recent[key] = (seen, *recent[: RECENT - 1])
        else:  # some are a window old: dropped
            horizon = seen.ts - self.window_s
            self._recent[key] = (seen, *(s for s in recent[: RECENT - 1] if s.ts >= horizon))

    def __delitem__(self, key: str) -> None:
        del self._recent[key]

    def drop(self, key: str, seen: Any) -> None:
        """Forget one request of a session (the session too, when it was its last)."""
        recent = self._recent.get(key)
        if recent is None:
            return
        kept = tuple(s for s in recent if s is not seen)
        if len(kept) == len(recent):
            return
        if kept:
            self._recent[key] = kept
        else:
            del self._recent[key]


def extended(recent: tuple[Any, ...], new: Any, window_s: float) -> Any | None:
    """The one of a session's recent requests (newest first) that ``new`` extends: the
    longest shared run of blocks, then of segments (a short turn may not fill a block),
    then the newest. Ones a window old do not count, so the answer does not hang on when
    they were forgotten."""
    oldest = new.ts - window_s
    if len(recent) == 1:
        return recent[0] if recent[0].ts >= oldest else None
    best, best_blocks, best_marks = None, -1, None  # best_marks: once a tie needs them
    for seen in recent:
        if len(seen.hashes) >> 3 < best_blocks or seen.ts < oldest:
            continue  # shares fewer blocks (most often an earlier turn), or too old
        blocks = _shared(seen, new)
        if blocks > best_blocks:
            best, best_blocks, best_marks = seen, blocks, None
        elif blocks == best_blocks:
            if best_marks is None:
                best_marks = _leading(best.marks, new.marks)
            shared = _leading(seen.marks, new.marks)
            if shared > best_marks:
                best, best_marks = seen, shared
    return best


def _shared(seen: Any, new: Any) -> int:
    """Leading blocks ``new`` shares with ``seen``: all of them when its block at the end
    of ``seen`` is the same (chained hashes), read off the packed bytes."""
    end = len(seen.hashes)
    if end <= len(new.hashes) and seen.hashes[end - 8 : end] == new.hashes[end - 8 : end]:
        return end >> 3
    return common(seen.chain, new.chain)


def _leading(a: tuple, b: tuple) -> int:
    """How many leading entries two tuples share."""
    if b[: len(a)] == a:  # b extends a: the usual next turn
        return len(a)
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
