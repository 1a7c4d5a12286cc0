"""Why the prefix broke: one cause code for the first divergence of two requests.

A is the earlier request, B the later. The cause is the first difference in
cache order; B may append new turns after it. When several causes fit, the
first in this order wins: model_changed / identical, reasoning_dropped,
whitespace / key_order, dynamic_value, context_reordered, tools_reordered /
tools_changed, system_changed, history_rewritten.

The first differing pair of segments is where a cause is read (the one before
the divergence when B only added to its end: a trailing newline), and inside
it the lines around the differing characters (``analysis.region``), not the
whole text. Two parts that both still appear, intact, in the other request did
not change into each other: they moved, so a reorder is looked for first.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter

from analysis import canonical, region, volatile
from analysis.differ import common_prefix_length
from analysis.prompt import Prompt, Segment

_TEXT = attrgetter("text")
MAX_REORDERED = 4_096  # segments looked at for a reordered run of documents
SHAPE_CAUSES = (
    "identical",
    "appended",
    "dynamic_value",
    "tools_reordered",
    "tools_changed",
    "key_order",
    "whitespace",
    "system_changed",
    "history_rewritten",
    "reasoning_dropped",
    "context_reordered",
    "model_changed",
)
# Causes from the traffic around a request (analysis.explain assigns these).
TRAFFIC_CAUSES = (
    "cold_start",
    "routing",
    "ttl_expired",
    "below_minimum",
    "concurrent_fanout",
    "eviction_or_unknown",
    "no_miss",
)

_EXPLAIN = {
    "identical": "The two prompts render to the same text; the prefix itself did not break.",
    "appended": "B keeps all of A unchanged and only adds to the end: the cache can serve A.",
    "model_changed": "The model changed ({a} → {b}); caches are per model, so nothing is reused.",
    "reasoning_dropped": "The reasoning of an earlier turn ({seg}) is missing or emptied in B, "
    "so everything after it is re-read from scratch.",
    "whitespace": "{seg} has the same text but different whitespace; to the tokenizer that is "
    "a different prefix.",
    "key_order": "{seg} holds the same JSON with its keys in another order; serialized text "
    "differs, so the prefix breaks there.",
    "dynamic_value": "A value that changes per request ({detail}) sits in {seg}, inside the "
    "prefix; every request gets a new prefix from there on.",
    "context_reordered": "{seg} holds the same retrieved context in another order.",
    "tools_reordered": "The same tools arrive in another order (first moved: {seg}).",
    "tools_changed": "The tool list changed at {seg} (added, removed, renamed or its "
    "description/schema edited); everything after the tools is re-read.",
    "system_changed": "The system part changed at {seg}.",
    "history_rewritten": "Earlier conversation was edited, truncated or summarised at {seg} "
    "instead of appended to.",
}
_FIX = {
    "identical": "Nothing to fix in the request; look at routing, TTL or the minimum length.",
    "appended": "Nothing to fix: append-only history is what the cache wants.",
    "model_changed": "Pin one model (and version) per conversation; warm the new one before "
    "switching traffic.",
    "reasoning_dropped": "Send historical reasoning_content / thinking blocks back unchanged "
    "on every turn.",
    "whitespace": "Build the prompt through one code path and normalize whitespace and line "
    "endings once, before the first request.",
    "key_order": "Serialize JSON with a fixed key order (json.dumps(..., sort_keys=True)).",
    "dynamic_value": "Move the value after the cacheable prefix (the last user message) or into "
    "request metadata; round timestamps to the day if they must stay.",
    "context_reordered": "Sort retrieved chunks by a stable key (document id) before building "
    "the prompt.",
    "tools_reordered": "Declare tools in one fixed order (sort by name) on every request.",
    "tools_changed": "Declare one stable tool list and mask per step (allowed tools) instead "
    "of adding or removing tools.",
    "system_changed": "Keep the system prompt fixed; put per-request data after the prefix.",
    "history_rewritten": "Grow history append-only; summarise rarely and at a fixed cadence, "
    "and send a stable prompt_cache_key.",
}


@dataclass(frozen=True)
class Cause:
    """A cause code, the segment whose content changed, and what to do."""

    code: str
    segment: str | None
    side: str | None  # "a" or "b": the request in which ``segment`` lies
    explanation: str
    fix: str


def _cause(code: str, seg: Segment | None = None, side: str | None = None, **fmt: str) -> Cause:
    path = seg.path if seg else None
    text = _EXPLAIN[code].format(seg=path, **fmt)
    return Cause(code, path, side if seg else None, text, _FIX[code])


def _first_changed(a: Prompt, b: Prompt, char: int) -> int:
    """Index of the first segment whose text differs: the one holding character ``char``
    of A, or the one before when ``char`` starts a segment and the previous one grew
    (B added to its end: a trailing newline, a longer description)."""
    starts = a.starts()
    index = bisect.bisect_right(starts, char) - 1
    if index > 0 and starts[index] == char:
        before = index - 1
        if before >= len(b.segments) or a.segments[before].text != b.segments[before].text:
            return before
    return index


def classify(a: Prompt, b: Prompt, char: int) -> Cause:
    """The cause of the first divergence at character ``char`` of the renderings.

    Only the first differing pair of segments is looked at, and inside it only the
    lines around the differing characters, unless a cause needs the whole part
    (key order, reordered items)."""
    if a.model and b.model and a.model != b.model:
        return _cause("model_changed", a=a.model, b=b.model)
    if a.text == b.text:
        return _cause("identical")
    if char >= len(a.text):
        index = len(a.segments)
        return _cause("appended", b.segments[index] if index < len(b.segments) else None, "b")
    index = _first_changed(a, b, char)
    sa = a.segments[index]
    sb = b.segments[index] if index < len(b.segments) else None
    if _reasoning_dropped(a, index, sb):
        return _cause("reasoning_dropped", sa, "a")
    kept = sb is not None and sa.text in _texts(b)  # A's part survives intact in B
    seg, side = (sb, "b") if kept else (sa, "a")
    # Both parts still there, elsewhere: an order, not a value, changed. A run of parts
    # in another order needs both, so without them there is none to look for.
    moved = kept and sb.text in _texts(a)
    reordered = _reordered_segments(a, b, index) if moved else None
    if reordered:
        return _cause("context_reordered", reordered, "a")
    if sb is not None and sa.kind == sb.kind:
        found = _same_kind(sa, sb, seg, side)
        if found:
            return found
    if "tool" in (sa.kind, getattr(sb, "kind", None)):
        same_set = Counter(s.text for s in a.tools) == Counter(s.text for s in b.tools)
        if same_set:
            return _cause("tools_reordered", sa, "a")
        return _cause("tools_changed", *_changed_tool(a, sa, sb))
    if "system" in (sa.kind, getattr(sb, "kind", None)):
        return _cause("system_changed", seg, side)
    return _cause("history_rewritten", seg, side)


def _reasoning_dropped(a: Prompt, index: int, sb: Segment | None) -> bool:
    """A's reasoning at ``index`` is gone from B: removed (B goes on with what followed
    it: another block, a redacted one's neighbour), emptied, or stripped of fields
    (a Responses reasoning item without its encrypted content)."""
    sa = a.segments[index]
    if sa.kind != "reasoning" or not sa.body.strip():
        return False
    if sb is None or sb.kind != "reasoning" or not sb.body.strip():
        return True
    after = a.segments[index + 1] if index + 1 < len(a.segments) else None
    if after is not None and after.text == sb.text:
        return True
    va, vb = sa.value, sb.value
    return (
        isinstance(va, dict)
        and isinstance(vb, dict)
        and set(vb) < set(va)
        and all(va[k] == vb[k] for k in vb)
    )


def _texts(prompt: Prompt) -> list[str]:
    """The segments' texts, for ``in`` at C speed (equal lengths are rare, so hashing
    them all into a set costs more than comparing)."""
    return list(map(_TEXT, prompt.segments))


def _changed_tool(a: Prompt, sa: Segment, sb: Segment | None) -> tuple[Segment, str]:
    """B's tool when it is new or edited, else A's tool that B removed."""
    if sb is not None and sb.kind == "tool" and sb.text not in {s.text for s in a.tools}:
        return sb, "b"
    if sa.kind == "tool" or sb is None:
        return sa, "a"
    return sb, "b"


def _same_kind(sa: Segment, sb: Segment, seg: Segment, side: str) -> Cause | None:
    """Causes visible inside one pair of corresponding segments."""
    wa, wb = region.windows(sa.text, sb.text)
    if region.blank(wa) == region.blank(wb):
        return _cause("whitespace", seg, side)
    if region.jsonish(wa, wb) and canonical.canonical_json(sa.text) == canonical.canonical_json(
        sb.text
    ):
        return _cause("key_order", seg, side)
    masked_a, masked_b = volatile.mask(wa), volatile.mask(wb)
    if masked_a == masked_b and masked_a != wa:
        return _cause("dynamic_value", seg, side, detail=_volatile_detail(wa, wb))
    if volatile.unstamped(masked_a) == volatile.unstamped(masked_b):
        return _cause("dynamic_value", seg, side, detail="a line labelling a volatile value")
    counter = region.incremented(wa, wb)
    if counter:
        return _cause("dynamic_value", seg, side, detail=f"counter {counter}")
    if canonical.order_free(sa.body) == canonical.order_free(sb.body):
        return _cause("context_reordered", seg, side)
    return None


def _volatile_detail(text_a: str, text_b: str) -> str:
    start = common_prefix_length(text_a, text_b)
    va, vb = volatile.covering(text_a, start), volatile.covering(text_b, start)
    if va and vb:
        return f"{va.kind} {va.text!r} → {vb.text!r}"
    return "a volatile value"


def _reordered_segments(a: Prompt, b: Prompt, index: int) -> Segment | None:
    """Non-tool segments from ``index`` on that are, over some run of two or more, the
    same multiset in another order (documents, hits): one pass, counting the texts
    that one side still lacks."""
    sa = a.segments[index]
    sb = b.segments[index] if index < len(b.segments) else None
    if sb is None or "tool" in (sa.kind, sb.kind):
        return None
    balance: Counter[str] = Counter()
    unmatched = 0
    limit = min(len(a.segments), len(b.segments), index + MAX_REORDERED)
    for k in range(index, limit):
        for text, step in ((a.segments[k].text, 1), (b.segments[k].text, -1)):
            before = balance[text]
            balance[text] = before + step
            unmatched += (before + step != 0) - (before != 0)
        if unmatched == 0 and k > index:
            return sa
    return None
