"""The divergence of two prompts from their differing middles alone.

Two versions of a request share a run of segments from the start (the head) and
usually one to the end (the tail); segment boundaries are token-exact cuts
(``analysis.prompt``), so each prompt's ids are head + middle + tail. The first
differing token lies in the middles unless one middle's ids are all the other's
start and a tail follows (then None: the caller tokenizes in full). So only the
middles are encoded to ids; the head and the tail are only counted, segment by
segment (no list of Python ints, no copy of the text), and the few tokens an
excerpt shows across a middle's edge are encoded from the segments at that edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from analysis.differ import CONTEXT_TOKENS, SHOWN_TOKENS, Divergence, common_prefix_length
from analysis.prompt import Prompt, Segment
from analysis.tokens import Tokenizer

_TEXT = attrgetter("text")


def shared_ends(a: Prompt, b: Prompt) -> tuple[int, int]:
    """How many segments both prompts share from the start (the head), and how many of
    the rest they share to the end (the tail)."""
    sa, sb = a.segments, b.segments
    head = 0
    while head < min(len(sa), len(sb)) and sa[head].text == sb[head].text:
        head += 1
    tail = 0
    while tail < min(len(sa), len(sb)) - head and sa[-1 - tail].text == sb[-1 - tail].text:
        tail += 1
    return head, tail


def tail_start(prompt: Prompt, tail: int) -> int:
    """The character at which the last ``tail`` segments begin."""
    return prompt.starts()[len(prompt.segments) - tail] if tail else len(prompt.text)


def _utf8_length(texts: Sequence[str]) -> int:
    return sum(len(t) if t.isascii() else len(t.encode("utf-8", "surrogatepass")) for t in texts)


def _pieces(
    tokenizer: Tokenizer, a: Prompt, b: Prompt, head: int, tail: int
) -> tuple[int, list[int], list[int], int]:
    """B's head and tail token counts (A's are the same) and both middles' ids."""
    cut_a, cut_b = len(a.segments) - tail, len(b.segments) - tail
    middle_a = "".join(map(_TEXT, a.segments[head:cut_a]))
    middle_b = "".join(map(_TEXT, b.segments[head:cut_b]))
    if getattr(tokenizer.encoding, "parallel", True):  # tiktoken: all at once, in threads
        text, mid = b.text, b.starts()[head] if head < len(b.segments) else len(b.text)
        ids = tokenizer.encode_chunks([text[:mid], middle_b, middle_a, text[tail_start(b, tail) :]])
        return len(ids[0]), ids[1], ids[2], len(ids[3])
    count = tokenizer.count
    before = sum(map(count, map(_TEXT, b.segments[:head])))
    after = sum(map(count, map(_TEXT, b.segments[cut_b:])))
    return before, tokenizer.encode(middle_b), tokenizer.encode(middle_a), after


def _head_end(tokenizer: Tokenizer, head: Sequence[Segment], need: int) -> list[int]:
    """The ids of the last segments of a head, at least ``need`` of them or all."""
    ids: list[int] = []
    for seg in reversed(head):
        ids = tokenizer.encode(seg.text) + ids
        if len(ids) >= need:
            break
    return ids


def _tail_start(tokenizer: Tokenizer, tail: Sequence[Segment], need: int) -> list[int]:
    """The first ``need`` ids of a tail (or all there are)."""
    ids: list[int] = []
    for seg in tail:
        ids += tokenizer.encode(seg.text)
        if len(ids) >= need:
            break
    return ids[:need]


def divergence(
    a: Prompt, b: Prompt, tokenizer: Tokenizer, head: int, tail: int
) -> tuple[Divergence, int, int] | None:
    """The divergence of two prompts whose texts differ, with both token counts; None
    when the first differing token is not inside both middles and a tail follows.
    ``head``, ``tail``: how many segments they share from the start and to the end."""
    before, ids_b, ids_a, after = _pieces(tokenizer, a, b, head, tail)
    k = common_prefix_length(ids_a, ids_b)
    if tail and k >= min(len(ids_a), len(ids_b)):
        return None
    shared = a.segments[:head]
    context = ids_a[max(k - CONTEXT_TOKENS, 0) : k]
    if k < CONTEXT_TOKENS and head:
        context = (_head_end(tokenizer, shared, CONTEXT_TOKENS - k) + context)[-CONTEXT_TOKENS:]
    shown_a, shown_b = ids_a[k : k + SHOWN_TOKENS], ids_b[k : k + SHOWN_TOKENS]
    if tail and min(len(shown_a), len(shown_b)) < SHOWN_TOKENS:
        more = _tail_start(tokenizer, b.segments[len(b.segments) - tail :], SHOWN_TOKENS)
        shown_a, shown_b = (shown_a + more)[:SHOWN_TOKENS], (shown_b + more)[:SHOWN_TOKENS]
    byte = _utf8_length(list(map(_TEXT, shared)))
    if k == len(ids_a):  # A ends where B goes on (no tail): the offset is A's length
        byte += _utf8_length(list(map(_TEXT, a.segments[head:])))
    else:
        byte += len(tokenizer.decode_bytes(ids_a[:k]))
    mid = a.starts()[head] if head < len(a.segments) else len(a.text)
    to_bytes = tokenizer.token_bytes
    div = Divergence(
        identical=False,
        first_diff_char=common_prefix_length(a.text, b.text, mid),
        first_diff_token=before + k,
        first_diff_byte=byte,
        context=tuple(map(to_bytes, context)),
        tokens_a=tuple(map(to_bytes, shown_a)),
        tokens_b=tuple(map(to_bytes, shown_b)),
    )
    return div, before + len(ids_a) + after, before + len(ids_b) + after
