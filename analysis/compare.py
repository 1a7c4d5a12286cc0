"""Compare two requests: where the prefix diverged, why, and what it costs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from operator import attrgetter
from typing import Any

from analysis import causes, differ, fingerprint, providers, split
from analysis.prompt import Prompt, parse
from analysis.tokens import Tokenizer, resolve

_PATH = attrgetter("path")


@dataclass(frozen=True)
class Comparison:
    """Everything ``cachediag diff`` reports, as plain data."""

    identical: bool
    first_diff_token: int
    first_diff_byte: int
    shared_tokens: int
    tokens_a: int
    tokens_b: int
    encoding: str
    encoding_requested: str
    encoding_exact: bool  # False when a fallback encoding approximates the requested one
    format_a: str
    format_b: str
    model_a: str | None
    model_b: str | None
    segment: str | None  # the part whose content changed (cause contract)
    path: str | None  # the deepest JSON path resolved inside it
    side: str | None  # "a" or "b": the request ``segment`` and ``path`` point into
    cause: str
    explanation: str
    fix: str
    provider: str
    minimum_tokens: int
    cacheable_tokens: int
    missed_tokens: int
    missed_cost_usd: float
    excerpt: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decode(tokens: tuple[bytes, ...]) -> list[str]:
    return [t.decode("utf-8", "replace") for t in tokens]


def _deep_path(prompt: Prompt, path: str | None, char: int) -> str | None:
    """The deepest JSON path at character ``char`` inside the first segment at ``path``."""
    if path is None:
        return None
    try:
        index = list(map(_PATH, prompt.segments)).index(path)
    except ValueError:
        return None
    return prompt.segments[index].locate(char - prompt.starts()[index])


@functools.cache
def _builtin_table() -> dict:
    return providers.load_table()


def _token_ids(
    prompt: Prompt,
    tokenizer: Tokenizer,
    memo: fingerprint.TokenMemo | None,
    seen: dict[str, list[int]],
) -> tuple[Sequence[int], list[fingerprint.SegmentSpan]]:
    """A prompt's token ids and segment spans; each distinct segment text is tokenized
    once per comparison (``seen``), or read from a fingerprint memo when one is given."""
    if memo is not None:
        return fingerprint.token_ids(prompt, tokenizer, memo)
    ids: list[int] = []
    spans = []
    for seg in prompt.segments:
        found = seen.get(seg.text)
        if found is None:
            found = seen[seg.text] = tokenizer.encode(seg.text)
        start = len(ids)
        ids += found
        spans.append(fingerprint.SegmentSpan(seg.path, seg.kind, start, len(ids), ""))
    return ids, spans


def _marked(prompt: Prompt) -> bool:
    return prompt.cache_control_auto or any(s.cache_control for s in prompt.segments)


def _tokenize(
    a: Prompt, b: Prompt, tokenizer: Tokenizer, memo: fingerprint.TokenMemo | None
) -> tuple[Sequence[int], Sequence[int], list[tuple[int, int]], list[int]]:
    """Both prompts' ids, (token, character) starts of A's pieces, and the breakpoints
    B reads. Segment boundaries are token-exact cuts, so B is tokenized as three
    pieces (the segments shared from the start, those that differ, those shared to the
    end) and A only in its differing middle. Breakpoints or a memo need every segment's
    tokens: then segment by segment, each distinct text once."""
    if memo is not None or _marked(a) or _marked(b):
        seen: dict[str, list[int]] = {}
        ids_b, spans_b = _token_ids(b, tokenizer, memo, seen)
        ids_a, spans_a = _token_ids(a, tokenizer, memo, seen)
        starts = list(zip((s.token_start for s in spans_a), a.starts(), strict=True))
        written, reading = fingerprint.breakpoints(a, spans_a), fingerprint.breakpoints(b, spans_b)
        return ids_a, ids_b, starts, list(written) if reading else []
    head, tail = split.shared_ends(a, b)
    cuts_a = (*a.starts(), len(a.text))
    mid, end_a, end_b = cuts_a[head], cuts_a[len(a.segments) - tail], split.tail_start(b, tail)
    shared, middle_b, middle_a, after = tokenizer.encode_chunks(
        [b.text[:mid], b.text[mid:end_b], a.text[mid:end_a], b.text[end_b:]]
    )
    starts = [(0, 0), (len(shared), mid), (len(shared) + len(middle_a), end_a)]
    return shared + middle_a + after, shared + middle_b + after, starts, []


def _diverge(
    a: Prompt, b: Prompt, tokenizer: Tokenizer, memo: fingerprint.TokenMemo | None
) -> tuple[differ.Divergence, int, int, list[int]]:
    """The divergence, both prompts' token counts and the breakpoints B reads. Without
    breakpoints or a memo, and unless one differing middle is all the other's start,
    only the middles' ids are built (``split.divergence``)."""
    if memo is None and not (_marked(a) or _marked(b)) and a.text != b.text:
        found = split.divergence(a, b, tokenizer, *split.shared_ends(a, b))
        if found is not None:
            return (*found, [])
    ids_a, ids_b, starts, points = _tokenize(a, b, tokenizer, memo)
    div = differ.from_token_ids(a.text, b.text, ids_a, ids_b, starts, tokenizer)
    return div, len(ids_a), len(ids_b), points


def compare_prompts(
    a: Prompt,
    b: Prompt,
    tokenizer: Tokenizer,
    provider: str | None = None,
    block_size: int = fingerprint.DEFAULT_BLOCK_SIZE,
    table: dict | None = None,
    memo: fingerprint.TokenMemo | None = None,
) -> Comparison:
    """Compare two parsed requests (A earlier, B later). B is tokenized once: the
    segments both share from the start and to the end only counted, those between
    encoded; A only in those between, so a shared prefix or tail is never tokenized
    twice (``memo``: a fingerprint memo to read and fill too; then, and with cache
    breakpoints, every segment's ids are built)."""
    table = table or _builtin_table()
    div, count_a, count_b, points = _diverge(a, b, tokenizer, memo)
    cause = causes.classify(a, b, div.first_diff_char)
    side_prompt = b if cause.side == "b" else a
    provider = provider or providers.provider_for(b.format, b.model)
    shared = count_a if div.identical else div.first_diff_token
    if cause.code == "model_changed":
        shared = 0
    impl = providers.implications(table, provider, b.model, shared, count_b, points, block_size)
    return Comparison(
        identical=div.identical,
        first_diff_token=div.first_diff_token,
        first_diff_byte=div.first_diff_byte,
        shared_tokens=shared,
        tokens_a=count_a,
        tokens_b=count_b,
        encoding=tokenizer.name,
        encoding_requested=tokenizer.requested,
        encoding_exact=tokenizer.exact,
        format_a=a.format,
        format_b=b.format,
        model_a=a.model,
        model_b=b.model,
        segment=cause.segment,
        path=_deep_path(side_prompt, cause.segment, div.first_diff_char),
        side=cause.side,
        cause=cause.code,
        explanation=cause.explanation,
        fix=cause.fix,
        provider=impl.provider,
        minimum_tokens=impl.minimum,
        cacheable_tokens=impl.cacheable_tokens,
        missed_tokens=impl.missed_tokens,
        missed_cost_usd=impl.missed_cost_usd,
        excerpt={
            "context": _decode(div.context),
            "a": _decode(div.tokens_a),
            "b": _decode(div.tokens_b),
        },
    )


def compare(
    body_a: Any,
    body_b: Any,
    fmt: str | None = None,
    encoding: str | None = None,
    provider: str | None = None,
    block_size: int = fingerprint.DEFAULT_BLOCK_SIZE,
    table: dict | None = None,
) -> Comparison:
    """Parse two request bodies and compare them; the tokenizer follows B's model."""
    a, b = parse(body_a, fmt), parse(body_b, fmt)
    tokenizer = resolve(b.model or a.model, encoding)
    return compare_prompts(a, b, tokenizer, provider, block_size, table)
