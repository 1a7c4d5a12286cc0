"""What the explainer remembers of an earlier request, and the index that finds one by
a block of its prefix.

A remembered request takes a few KB: its block-hash chain packed (8 bytes a
block), its segment map as stored (decoded only when a shape cause reads it),
one int per segment for its hashes and one for its end, and no captured content
(a callable that reads it from the store, when the explainer has one).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from analysis import expected, fingerprint
from analysis.segmaps import HASH, decoded

MAX_BLOCKS = 2_000_000  # block-hash index entries kept (~250 MB)
_EXACT, _END = itemgetter(HASH), itemgetter(3)  # of a segment: its exact hash, its end


class Seen(NamedTuple):
    """What the explainer keeps of an earlier request: a few KB. Tuples, bytes and arrays
    all the way down: a tuple of plain values drops out of the garbage collector's sight
    after one look, instead of being rescanned for as long as it is remembered. The
    segment map stays as stored (``segments`` decodes it when a shape cause needs it);
    captured content stays in the store (``content`` reads it)."""

    id: str
    ts: float
    model: str | None
    replica: str | None
    hashes: bytes  # packed int64s; read them through ``chain``
    segmap: Any  # the stored segment map, undecoded (JSON text; tuples when given as lists)
    marks: Sequence[int]  # one int per segment, equal where the segments' hashes are
    ends: Sequence[int]  # where each segment ends, in our tokens
    content: Any  # None (not captured), the text, or a callable that reads it
    encoding: str | None
    tokens: int  # our count of its prompt tokens
    scale: float | None  # the provider's prompt tokens per token of ours
    breakpoints: tuple[int, ...] | None  # where its cache_control breakpoints end

    @property
    def chain(self) -> Sequence[int]:  # the block hashes as ints
        return memoryview(self.hashes).cast("q")

    @property
    def segments(self) -> tuple[tuple, ...]:
        """The segment map as (path, kind, start, end, hash, ...) tuples (decoded when
        asked; the last few decoded are memoized)."""
        return decoded(self.segmap)

    def size(self) -> int:
        """About the bytes it takes (with what the block index holds of it)."""
        text = self.segmap if isinstance(self.segmap, str) else ""
        held = self.content if isinstance(self.content, str) else ""
        return 600 + len(self.id) + len(self.hashes) + len(text) + len(held) + 16 * len(self.marks)


class BlockIndex:
    """Model, block hash ─► the latest request of that model holding it (caches are per
    model: another model's request holding the block is no predecessor), kept for at
    least one TTL window.

    Two generations instead of per-hash expiry: requests go into the young one; once it
    is a window old (or holds half of MAX_BLOCKS), the old one is dropped whole and the
    young one takes its place. Lookups still check the request's age.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._young: dict[str | None, dict[int, Seen]] = {}
        self._old: dict[str | None, dict[int, Seen]] = {}
        self._since: float | None = None  # the time the young generation started
        self._old_since: float | None = None  # and the old one
        self._count = 0  # entries in the young generation

    def __len__(self) -> int:
        return sum(map(len, self._young.values())) + sum(map(len, self._old.values()))

    def get(self, model: str | None, block: int) -> Seen | None:
        young, old = self._young.get(model), self._old.get(model)
        return (young and young.get(block)) or (old and old.get(block)) or None

    def drop(self, seen: Seen) -> None:
        """Forget the blocks of which ``seen`` is still the latest holder (requests come
        in time order: one older than the old generation went with it, one older than
        the young one is only in the old one)."""
        if self._since is None or (self._old_since is not None and seen.ts < self._old_since):
            return
        parts = (self._old,) if seen.ts < self._since else (self._young, self._old)
        for part in (p.get(seen.model) for p in parts):
            get = part.get if part else None
            for block in seen.chain if get else ():
                if get(block) is seen:
                    del part[block]

    def add(self, seen: Seen) -> None:
        if self._since is None:
            self._since = seen.ts
        self._count += len(seen.hashes) // 8
        if self._count > MAX_BLOCKS // 2 or seen.ts - self._since > self.window_s:
            self._old, self._young = self._young, {}
            self._old_since, self._since = self._since, seen.ts
            self._count = len(seen.hashes) // 8
        young = self._young.get(seen.model)
        if young is None:
            young = self._young[seen.model] = {}
        young.update(zip(seen.chain, repeat(seen)))


def epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _chain(stored: Any) -> bytes:
    """A stored hash chain, packed: its ints are only ever compared, so packed chains are
    read in the machine's byte order, which is faster than the stored order and just as
    unique. Bytes, which the garbage collector does not track: a remembered request
    costs 8 bytes a block rather than a Python int's 40."""
    if isinstance(stored, bytes) and len(stored) % 8 == 0:
        return stored
    return array("q", fingerprint.unpack_hashes(stored)).tobytes()


class ContentSource:
    """Where an explainer reads a captured rendering: ``read`` (request id ─► the text, or
    None), set by whoever runs a pass (the store's reader of that pass). A remembered
    request holds the source, not the reader: the reader of the pass at hand is used."""

    __slots__ = ("read",)

    def __init__(self, read: Callable[[str], str | None] | None = None) -> None:
        self.read = read

    def __call__(self, request_id: str) -> str | None:
        return None if self.read is None else self.read(request_id)


_NAMES: dict[str, str] = {}  # model, replica and encoding names: one string each


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    if len(_NAMES) > 10_000:
        _NAMES.clear()
    return _NAMES.setdefault(value, value)


def seen(row: dict, load: ContentSource | None = None) -> Seen:
    """A request as the explainer keeps it. ``load`` reads a captured rendering by id: a
    row that says it has one (``captured``) without carrying it is read when needed."""
    raw = row.get("segments")
    segments = decoded(raw)  # memoized: this request's own reads of ``segments`` find it
    if not isinstance(raw, str):
        raw = segments
    content = row.get("content")
    if content is None and load is not None and load.read is not None and row.get("captured"):
        content = partial(load, row["id"])
    ours = int(row.get("total_tokens") or 0)
    return Seen(
        row["id"],
        epoch(row["ts"]),
        _name(row.get("request_model")),
        _name(row.get("replica")),
        _chain(row.get("block_hashes")),
        raw,
        array("q", map(hash, map(_EXACT, segments))),
        array("q", map(_END, segments)),
        content,
        _name(row.get("encoding")),
        ours,
        expected.ratio(row.get("prompt_tokens"), ours),
        expected.points(row.get("breakpoints")),
    )
