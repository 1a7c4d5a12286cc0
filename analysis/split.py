"""The divergence of two prompts from their differing middles alone.

Two versions of a request share a run of segments from the start (the head) and
usually one to the end (the tail); segment boundaries are token-exact cuts
(``analysis.prompt``), so each prompt's ids are head + middle + tail. The first
differing token lies in the middles unless one middle's ids are all the other's
start and a tail follows (then None: the caller tokenizes in full). So only the
middles are encoded to ids; the head and the tail, B's and A's alike, are only
counted (no list of Python ints), and the few tokens an excerpt shows across a
middle's edge are encoded from the segments at that edge.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from analysis.differ import CONTEXT_TOKENS, SHOWN_TOKENS, Divergence, common_prefix_length
from analysis.prompt import Prompt, Segment
from analysis.tokens import Tokenizer


def _pieces(tokenizer: Tokenizer, texts: list[str]) -> list[list[int] | int]:
    """The ids of ``texts[1:3]`` (the middles) and the token counts of the others."""
    if getattr(tokenizer.encoding, "parallel", True):  # tiktoken: all at once, in threads
        ids = tokenizer.encode_chunks(texts)
        return [len(ids[0]), ids[1], ids[2], len(ids[3])]
    middles = [tokenizer.encode(t) for t in texts[1:3]]
    return [tokenizer.count(texts[0]), *middles, tokenizer.count(texts[3])]


def _head_end(tokenizer: Tokenizer, last_first: Sequence[Segment], need: int) -> list[int]:
    """The ids of the last segments of a head (given last first), at least ``need`` of
    them or all there are."""
    ids: list[int] = []
    for seg in last_first:
        ids = tokenizer.encode(seg.text) + ids
        if len(ids) >= need:
            break
    return ids


def _tail_start(tokenizer: Tokenizer, segments: Sequence[Segment], need: int) -> list[int]:
    """The first ``need`` ids (or all there are) of ``segments``."""
    ids: list[int] = []
    for seg in segments:
        ids += tokenizer.encode(seg.text)
        if len(ids) >= need:
            break
    return ids[:need]


def _utf8_length(text: str, end: int) -> int:
    return len(text[:end].encode("utf-8", "surrogatepass"))


def divergence(
    a: Prompt, b: Prompt, tokenizer: Tokenizer, cuts: tuple[int, int, int], tail: int
) -> tuple[Divergence, int, int] | None:
    """The divergence of two prompts whose texts differ, with both token counts; None
    when the first differing token is not inside both middles and a tail follows.
    ``cuts``: where the head ends (the same in A and B) and where the tail starts in A
    and in B; ``tail``: how many segments it holds."""
    mid, end_a, end_b = cuts
    text_a, text_b = a.text, b.text
    head, ids_b, ids_a, after = _pieces(
        tokenizer, [text_b[:mid], text_b[mid:end_b], text_a[mid:end_a], text_b[end_b:]]
    )
    k = common_prefix_length(ids_a, ids_b)
    if tail and k >= min(len(ids_a), len(ids_b)):
        return None
    context = ids_a[max(k - CONTEXT_TOKENS, 0) : k]
    if k < CONTEXT_TOKENS and head:
        last_first = b.segments[: bisect.bisect_left(b.starts(), mid)][::-1]
        context = (_head_end(tokenizer, last_first, CONTEXT_TOKENS - k) + context)[-CONTEXT_TOKENS:]
    shown_a, shown_b = ids_a[k : k + SHOWN_TOKENS], ids_b[k : k + SHOWN_TOKENS]
    if tail and min(len(shown_a), len(shown_b)) < SHOWN_TOKENS:
        more = _tail_start(tokenizer, b.segments[len(b.segments) - tail :], SHOWN_TOKENS)
        shown_a, shown_b = (shown_a + more)[:SHOWN_TOKENS], (shown_b + more)[:SHOWN_TOKENS]
    if k == len(ids_a):  # A ends where B goes on: its byte offset is its length
        byte = _utf8_length(text_a, end_a)
    else:
        byte = _utf8_length(text_a, mid) + len(tokenizer.decode_bytes(ids_a[:k]))
    to_bytes = tokenizer.token_bytes
    div = Divergence(
        identical=False,
        first_diff_char=common_prefix_length(text_a, text_b, mid),
        first_diff_token=head + k,
        first_diff_byte=byte,
        context=tuple(map(to_bytes, context)),
        tokens_a=tuple(map(to_bytes, shown_a)),
        tokens_b=tuple(map(to_bytes, shown_b)),
    )
    return div, head + len(ids_a) + after, head + len(ids_b) + after
