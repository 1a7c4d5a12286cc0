"""Fingerprints: token blocks with chained hashes, and a segment map.

The block hashes follow serving engines (vLLM, llm-d): the token ids are cut
into fixed-size blocks and each block's hash covers its parent's hash and its
own ids, so two requests share a leading run of block hashes exactly as far
as a prefix cache could share KV blocks. Only full blocks are hashed.

Segments are tokenized one by one (the rendering keeps their boundaries
token-exact) and memoized by segment hash in a bounded LRU, so the next turn
of a conversation tokenizes only its new tail.

Beside its exact hash, each segment of a fingerprint carries canonical hashes:
of its text with volatile values masked, with embedded JSON canonical, without
whitespace, and of its items in any order (``analysis.canonical``). Where two
requests' exact hashes differ, the first of these that still match says what
kind of change it was, without any content. Each is "" when its form is the
text itself (then it is the exact hash): a message carries one, a tool three.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import NamedTuple

from analysis import canonical, volatile
from analysis.prompt import Prompt, Segment
from analysis.tokens import Tokenizer

DEFAULT_BLOCK_SIZE = 64
DEFAULT_MEMO_TOKENS = 4_000_000  # token ids kept by the default memo (4 bytes each)


def digest(data: bytes) -> bytes:
    """The 64-bit hash used everywhere in fingerprints."""
    return hashlib.blake2b(data, digest_size=8).digest()


def text_hash(text: str) -> str:
    """Hex hash of a text, as used for segment, prefix and tools hashes."""
    return digest(text.encode("utf-8", "surrogatepass")).hex()


ITEM_SEPARATOR = "\x1e"  # between the items of an order-free form, in its hashed text


class Canonical(NamedTuple):
    """A segment's canonical hashes, each of its text in one canonical form; "" where
    that form is the text itself (its hash would be the exact hash)."""

    masked: str = ""  # volatile values (analysis.volatile) masked
    json: str = ""  # embedded JSON with sorted keys, one formatting
    space: str = ""  # all whitespace removed
    items: str = ""  # the body's items in any order (analysis.canonical.order_free)
    unstamped: str = ""  # masked, without lines that only label a volatile value


def canonical_hashes(seg: Segment) -> Canonical:
    """The canonical hashes of one segment."""
    text = seg.text

    def hashed(form: str) -> str:
        return "" if form == text else text_hash(form)

    items = ITEM_SEPARATOR.join(canonical.order_free(seg.body))
    masked = volatile.mask(text)
    return Canonical(
        hashed(masked),
        hashed(canonical.canonical_json(text)),
        hashed(canonical.squash(text)),
        hashed(text[: seg.body_start] + items + text[-1:]),
        hashed(volatile.unstamped(masked)),
    )


class SegmentSpan(NamedTuple):
    """Where one segment lies in the token stream, its exact hash and its canonical
    hashes (a named tuple: made per segment on the instrumentation's hot path)."""

    path: str
    kind: str
    token_start: int
    token_end: int
    hash: str
    canonical: Canonical | None = None  # None: not computed (token_ids for a comparison)


@dataclass(frozen=True)
class Fingerprint:
    """What leaves the service about a request: hashes and counts, no content."""

    encoding: str
    block_size: int
    total_tokens: int
    block_hashes: tuple[int, ...]  # signed 64-bit, chained
    segments: tuple[SegmentSpan, ...]
    prefix_hash: str  # tools + system part
    tools_hash: str
    tools_count: int
    breakpoints: tuple[int, ...] = ()  # token ends of cache_control breakpoints (see below)
    retention_s: int | None = None  # the cache lifetime the request asked for

    def to_dict(self) -> dict:
        out = asdict(self)
        out["block_hashes"] = list(self.block_hashes)
        out["segments"] = [
            {**s._asdict(), "canonical": s.canonical._asdict() if s.canonical else None}
            for s in self.segments
        ]
        out["breakpoints"] = list(self.breakpoints)
        return out


class _Entry(NamedTuple):
    """What the memo keeps of one segment text."""

    hash: str
    ids: array
    canonical: Canonical | None


class TokenMemo:
    """Bounded LRUs of tokenization work: segment text ─► (hash, token ids, canonical
    hashes once asked for), and segment-hash prefix ─► its block-hash chain, so a
    conversation's next turn tokenizes and hashes only its new tail. Bounded by the
    token ids kept."""

    MAX_CHAINS = 256

    def __init__(self, max_tokens: int = DEFAULT_MEMO_TOKENS) -> None:
        self.max_tokens = max_tokens
        self._segments: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._chains: OrderedDict[tuple, tuple[tuple[str, ...], int, tuple[int, ...]]] = (
            OrderedDict()
        )
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def segment(self, tokenizer: Tokenizer, seg: Segment, canon: bool = False) -> _Entry:
        """(hash, token ids, canonical hashes or None) of a segment, tokenizing only on a
        miss; with ``canon``, the canonical hashes too (computed once per text)."""
        key = (tokenizer.name, seg.text)
        with self._lock:
            found = self._segments.get(key)
            if found is not None:
                self._segments.move_to_end(key)
                self.hits += 1
        if found is None:
            found = _Entry(text_hash(seg.text), array("I", tokenizer.encode(seg.text)), None)
            self._store(key, found)
        if canon and found.canonical is None:
            found = found._replace(canonical=canonical_hashes(seg))
            with self._lock:
                if key in self._segments:
                    self._segments[key] = found
        return found

    def _store(self, key: tuple[str, str], entry: _Entry) -> None:
        with self._lock:
            self.misses += 1
            if key not in self._segments and len(entry.ids) <= self.max_tokens:
                self._segments[key] = entry
                self._size += len(entry.ids)
                while self._size > self.max_tokens:
                    _, old = self._segments.popitem(last=False)
                    self._size -= len(old.ids)

    def chain(
        self, ids: array, spans: list[SegmentSpan], block_size: int, seed: str
    ) -> tuple[int, ...]:
        """Block hashes of ``ids``, continuing the longest chain already known."""
        hashes = tuple(s.hash for s in spans)
        keys, running = [], 0
        for h in hashes:
            running = hash((running, h))
            keys.append((seed, block_size, running))
        known: tuple[int, ...] = ()
        with self._lock:
            for i in range(len(keys) - 1, -1, -1):
                entry = self._chains.get(keys[i])
                if entry is not None and entry[0] == hashes[: i + 1]:
                    known = entry[2]
                    break
        out = known + block_hashes(ids, block_size, seed, len(known), known[-1:])
        if keys:
            with self._lock:
                self._chains[keys[-1]] = (hashes, len(ids), out)
                self._chains.move_to_end(keys[-1])
                while len(self._chains) > self.MAX_CHAINS:
                    self._chains.popitem(last=False)
        return out

    def clear(self) -> None:
        with self._lock:
            self._segments.clear()
            self._chains.clear()
            self._size = 0


DEFAULT_MEMO = TokenMemo()


def token_ids(
    prompt: Prompt, tokenizer: Tokenizer, memo: TokenMemo | None = None, canon: bool = False
) -> tuple[array, list[SegmentSpan]]:
    """All token ids of the rendering plus the segment map, segment by segment (with
    ``canon``, each segment's canonical hashes too)."""
    memo = memo or DEFAULT_MEMO
    ids = array("I")
    spans = []
    for seg in prompt.segments:
        seg_hash, seg_ids, seg_canon = memo.segment(tokenizer, seg, canon)
        start = len(ids)
        ids.extend(seg_ids)
        spans.append(SegmentSpan(seg.path, seg.kind, start, len(ids), seg_hash, seg_canon))
    return ids, spans


def block_hashes(
    ids: array, block_size: int, seed: str, first_block: int = 0, parent: tuple[int, ...] = ()
) -> tuple[int, ...]:
    """Chained hashes of every full block of ``block_size`` token ids.

    With ``first_block`` and the hash of the block before it (``parent``), the
    chain continues from there.
    """
    if block_size < 1:
        raise ValueError("block size must be at least 1")
    prev = parent[0].to_bytes(8, "big", signed=True) if parent else digest(seed.encode())
    raw = memoryview(ids.tobytes())
    step = block_size * ids.itemsize
    out = []
    for start in range(first_block * step, len(raw) - step + 1, step):
        prev = hashlib.blake2b(prev + raw[start : start + step], digest_size=8).digest()
        out.append(int.from_bytes(prev, "big", signed=True))
    return tuple(out)


def pack_hashes(values) -> bytes | None:
    """Block hashes as stored: big-endian signed 64-bit, 8 bytes each (the digests
    themselves); None when absent or not 64-bit integers. numpy is imported here, not
    with the module: the in-service instrumentation fingerprints without it."""
    if values is None:
        return None
    import numpy as np  # the collector's side only (store, explain); 1.6x array's speed

    try:
        return np.asarray(values, dtype=">i8").tobytes()
    except (OverflowError, TypeError, ValueError):
        return None


def unpack_hashes(stored) -> list[int]:
    """Stored block hashes (bytes, or any sequence of ints) as a list of ints."""
    if not stored:
        return []
    if isinstance(stored, bytes | bytearray | memoryview):
        import numpy as np  # as in pack_hashes

        return np.frombuffer(stored, dtype=">i8").tolist()
    return [int(v) for v in stored]


def breakpoints(prompt: Prompt, spans: list[SegmentSpan]) -> tuple[int, ...]:
    """Token positions where a cache_control breakpoint ends a cacheable prefix: the end of
    each marked segment, and the end of the prompt under top-level automatic caching. Only
    a provider that caches at breakpoints (Anthropic) writes and reads its entries there."""
    points = [
        span.token_end
        for seg, span in zip(prompt.segments, spans, strict=True)
        if seg.cache_control
    ]
    if prompt.cache_control_auto and spans and spans[-1].token_end not in points:
        points.append(spans[-1].token_end)
    return tuple(points)


def fingerprint(
    prompt: Prompt,
    tokenizer: Tokenizer,
    block_size: int = DEFAULT_BLOCK_SIZE,
    memo: TokenMemo | None = None,
) -> Fingerprint:
    """Fingerprint a parsed request."""
    memo = memo or DEFAULT_MEMO
    ids, spans = token_ids(prompt, tokenizer, memo, canon=True)
    stable = [s.hash for s in spans if s.kind in ("tool", "system")]
    tools = [s.hash for s in spans if s.kind == "tool"]
    return Fingerprint(
        encoding=tokenizer.name,
        block_size=block_size,
        total_tokens=len(ids),
        block_hashes=memo.chain(ids, spans, block_size, tokenizer.name),
        segments=tuple(spans),
        prefix_hash=text_hash("".join(stable)),
        tools_hash=text_hash("".join(tools)),
        tools_count=len(tools),
        breakpoints=breakpoints(prompt, spans),
        retention_s=prompt.retention_s,
    )
