"""The first differing token of two renderings, exact and fast.

Exact: the answer equals tokenizing both texts in full with
``encode_ordinary`` and comparing the ids. Fast: the first differing
character is found first (block compares, then bisection over slices), and
only the shared prefix plus a small window around the divergence is
tokenized, the prefix in parallel chunks.

Cutting a text and tokenizing the pieces apart is exact only at a
pre-token boundary that every tiktoken pattern respects whatever surrounds
it. A position right after a newline and before an ASCII letter or ``<`` is
one: no pre-token of gpt2, p50k, cl100k or o200k spans a newline into a
letter or into punctuation, and the whitespace run ending in that newline is
one piece with or without the text after it. Such cuts are searched only
inside the shared prefix, so both texts are cut at the same places.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.tokens import WORKERS, Tokenizer

CONTEXT_TOKENS = 8  # shared tokens shown before the divergence
SHOWN_TOKENS = 8  # differing tokens shown on each side
WINDOW_CHARS = 64  # tokenized past the divergence, so the excerpt has tokens to show
MIN_CHUNK_CHARS = 8_192  # below this, parallel tokenization does not pay


@dataclass(frozen=True)
class Divergence:
    """Where two renderings part, in characters, tokens and bytes."""

    identical: bool
    first_diff_char: int  # length of the common character prefix
    first_diff_token: int  # index of the first differing token == shared tokens
    first_diff_byte: int  # UTF-8 offset where that token starts
    context: tuple[bytes, ...]  # the shared tokens just before it
    tokens_a: tuple[bytes, ...]  # the first differing tokens of A
    tokens_b: tuple[bytes, ...]


def common_prefix_length(a: Sequence, b: Sequence, start: int = 0) -> int:
    """Length of the longest common prefix of two strings or arrays, by slice compares
    (C speed); ``a[:start] == b[:start]`` is known, so the search starts there."""
    n = min(len(a), len(b))
    lo, step = min(start, n), 1024
    while lo < n:
        hi = min(n, lo + step)
        if a[lo:hi] != b[lo:hi]:
            break
        lo, step = hi, step * 2
    else:
        return n
    while hi - lo > 1:  # a[:lo] == b[:lo]; a[lo:hi] != b[lo:hi]
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _is_cut(text: str, pos: int) -> bool:
    return (
        0 < pos < len(text)
        and text[pos - 1] == "\n"
        and (text[pos] == "<" or ("a" <= text[pos] <= "z") or ("A" <= text[pos] <= "Z"))
    )


def cut_before(text: str, limit: int) -> int:
    """The last safe cut at or before ``limit`` (0 when there is none)."""
    pos = text.rfind("\n", 0, limit) + 1
    while pos > 0 and not _is_cut(text, pos):
        pos = text.rfind("\n", 0, pos - 1) + 1
    return pos


def cut_after(text: str, start: int) -> int:
    """The first safe cut after ``start`` (the text's end when there is none)."""
    pos = text.find("\n", start) + 1
    while pos > 0 and not _is_cut(text, pos):
        pos = text.find("\n", pos) + 1
    return pos if pos > 0 else len(text)


def _chunks(text: str, end: int, size: int) -> list[str]:
    """``text[:end]`` split at safe cuts into chunks of about ``size`` characters."""
    cuts = [0]
    for target in range(size, end, size):
        cut = cut_before(text, target)
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(end)
    return [text[i:j] for i, j in zip(cuts, cuts[1:], strict=False) if j > i]


def _first_mismatch(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def first_difference(
    a: str, b: str, tokenizer: Tokenizer, chunk_chars: int | None = None
) -> Divergence:
    """The first token at which ``a`` and ``b`` tokenize differently."""
    char = common_prefix_length(a, b)
    if char == len(a) == len(b):
        ids = tokenizer.encode(a)
        tail = tuple(tokenizer.token_bytes(t) for t in ids[-CONTEXT_TOKENS:])
        return Divergence(
            True, char, len(ids), len(a.encode("utf-8", "surrogatepass")), tail, (), ()
        )
    # A cut before char - 1 looks only at shared characters, so it is a cut of b too.
    start = cut_before(a, max(char - 1, 0))
    size = chunk_chars or max(MIN_CHUNK_CHARS, -(-start // WORKERS))
    pieces = _chunks(a, start, size)
    window_a = a[start : cut_after(a, min(char + WINDOW_CHARS, len(a)))]
    window_b = b[start : cut_after(b, min(char + WINDOW_CHARS, len(b)))]
    encoded = tokenizer.encode_chunks([*pieces, window_a, window_b])
    *prefix, ids_a, ids_b = encoded
    index = _first_mismatch(ids_a, ids_b)
    shared_before = sum(len(p) for p in prefix)
    context = [t for p in prefix[-1:] for t in p] + ids_a[:index]
    to_bytes = tokenizer.token_bytes
    byte = len(a[:start].encode("utf-8", "surrogatepass"))
    byte += sum(len(to_bytes(t)) for t in ids_a[:index])
    return Divergence(
        identical=False,
        first_diff_char=char,
        first_diff_token=shared_before + index,
        first_diff_byte=byte,
        context=tuple(to_bytes(t) for t in context[-CONTEXT_TOKENS:]),
        tokens_a=tuple(to_bytes(t) for t in ids_a[index : index + SHOWN_TOKENS]),
        tokens_b=tuple(to_bytes(t) for t in ids_b[index : index + SHOWN_TOKENS]),
    )


def from_token_ids(
    a: str,
    b: str,
    ids_a: Sequence[int],
    ids_b: Sequence[int],
    starts: Sequence[tuple[int, int]],
    tokenizer: Tokenizer,
) -> Divergence:
    """The divergence of two renderings already tokenized in full (segment by segment,
    which the rendering keeps token-exact): the first differing id, found by block
    compares. ``starts`` holds (token index, character offset) of A's segment starts,
    so only the tokens of one segment are decoded to find the byte offset."""
    char = common_prefix_length(a, b)
    index = common_prefix_length(ids_a, ids_b)
    to_bytes = tokenizer.token_bytes
    context = tuple(to_bytes(t) for t in ids_a[max(index - CONTEXT_TOKENS, 0) : index])
    if char == len(a) == len(b):
        return Divergence(True, char, len(ids_a), _utf8_length(a, len(a)), context, (), ())
    at = max(bisect.bisect_right(starts, (index, len(a) + 1)) - 1, 0)
    token_start, char_start = starts[at] if starts else (0, 0)
    byte = _utf8_length(a, char_start)
    byte += len(tokenizer.decode_bytes(list(ids_a[token_start:index])))
    return Divergence(
        identical=False,
        first_diff_char=char,
        first_diff_token=index,
        first_diff_byte=byte,
        context=context,
        tokens_a=tuple(to_bytes(t) for t in ids_a[index : index + SHOWN_TOKENS]),
        tokens_b=tuple(to_bytes(t) for t in ids_b[index : index + SHOWN_TOKENS]),
    )


def _utf8_length(text: str, end: int) -> int:
    return len(text[:end].encode("utf-8", "surrogatepass"))
