"""Values that change on every request: timestamps, dates, ids, nonces, counters.

A number that is policy content ("30 days") is not volatile; a date, a UUID,
a request id, an epoch, a signature or ``request #1234`` is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
# Every alternative of these starts at a word boundary (``\b``); see _combined.
_AT_WORD: tuple[tuple[str, str], ...] = (
    (
        "timestamp",
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
        r"(?:\s?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)?",
    ),
    ("date", r"\b\d{4}/\d{1,2}/\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"),
    (
        "date",
        rf"\b{_MONTH}\s\d{{1,2}}(?:st|nd|rd|th)?,?\s\d{{4}}\b"
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s{_MONTH}\s\d{{4}}\b",
    ),
    ("weekday", r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b"),
    (
        "time",
        r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[AaPp]\.?[Mm]\.?)?"
        r"(?:\s?(?:Z|UTC|GMT|[A-Z]{2,4}|[+-]\d{2}:?\d{2}))?\b",
    ),
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    (
        "id",
        r"\b(?:req|request|trace|span|run|msg|call|toolu|chatcmpl|resp|sess|session|conv|"
        r"evt|event|nonce|txn|order|job|task)[_\-:=]?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{6,}\b",
    ),
    ("hex", r"\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"),
    ("epoch", r"\b1[5-9]\d{8}(?:\d{3})?(?:\.\d+)?\b"),
    ("timestamp", r"\b\d{8}T\d{6}(?:[.,]\d+)?Z?\b"),  # compact ISO 8601 (X-Amz-Date)
    (
        "counter",
        r"\b(?i:(?:request|req|turn|seq|sequence|counter|count|nonce|attempt|iteration|run|"
        r"calls?|invocations?|step|retry|retries|tick|poll)s?"
        r"(?:[\s_]+(?:so[\s_]far|made|total|count))?"
        r"[\s_]*(?:#|no\.?|id|number)?[\s_]*[:=#]?\s*\d+\b)"
        r"|\b(?i:(?:called|invoked|used|run)\s\d+\stimes)\b",
    ),
)
_ANYWHERE: tuple[tuple[str, str], ...] = (
    ("counter", r"#\d{2,}\b"),
    (  # the query parameters that expire or sign a presigned URL (S3, GCS, CloudFront, SAS)
        "signed_url",
        r"(?<=[?&])(?i:x-amz-(?:date|expires|signature|credential|security-token)|"
        r"x-goog-(?:date|expires|signature|credential)|signature|sig|se|st|expires|expiry|"
        r"policy|key-pair-id|token|access_token|hmac)"
        r"=(?=[^&\s\"'{}()\[\]<>;!?*|\\`~^$@#]*\d)[^&\s\"'{}()\[\]<>;!?*|\\`~^$@#]+",
    ),
    (
        "signature",
        r"(?<![A-Za-z0-9+/_\-])(?=[A-Za-z0-9+/_\-]*\d)(?=[A-Za-z0-9+/_\-]*[A-Za-z])"
        r"[A-Za-z0-9+/_\-]{32,}={0,2}",
    ),
)


# One pass, leftmost first, the patterns in the order above. Those that start at a word
# boundary share one ``\b`` in front, so inside a word the scan tries three alternatives,
# not twelve, and finds the same values.
def _combined() -> re.Pattern:
    named = [f"(?P<{kind}{i}>{pat})" for i, (kind, pat) in enumerate((*_AT_WORD, *_ANYWHERE))]
    at_word = "|".join(named[: len(_AT_WORD)])
    return re.compile("|".join([rf"\b(?:{at_word})", *named[len(_AT_WORD) :]]))


_COMBINED = _combined()
# Characters that no pattern reads (consumes or looks ahead through): a value lies inside
# one run between them. Every value's run holds a digit, a weekday or a UUID's first dash
# (the one kind that may do without digits); runs without one are not scanned. In JSON,
# quotes and brackets cut a text into short runs, most of them without a digit.
_REGION = re.compile(r"[^\"'{}()\[\]<>;!?*&|\\`~^$@]+")
_POSSIBLE = re.compile(r"\d|day|[0-9a-fA-F]{8}-")
MASK = "\x00"


@dataclass(frozen=True)
class Volatile:
    """One volatile value found in a text."""

    kind: str
    start: int
    end: int
    text: str


def _matches(text: str) -> Iterator[re.Match]:
    """The matches of one scan of the combined pattern over ``text``, scanning only the
    runs that may hold a value (with the whole text around them in sight: a word
    boundary or a look-behind at a run's edge reads the real neighbour)."""
    for region in _REGION.finditer(text):
        start, end = region.span()
        if _POSSIBLE.search(text, start, end):
            yield from _COMBINED.finditer(text, start, end + 1)


def find(text: str) -> list[Volatile]:
    """Every volatile value in ``text``, left to right, not overlapping."""
    out = []
    for match in _matches(text):
        kind = re.sub(r"\d+$", "", match.lastgroup or "")
        out.append(Volatile(kind, match.start(), match.end(), match.group()))
    return out


def mask(text: str) -> str:
    """``text`` with every volatile value replaced by one mask character."""
    out, pos = [], 0
    for match in _matches(text):
        out += (text[pos : match.start()], MASK)
        pos = match.end()
    return "".join((*out, text[pos:])) if out else text


# A line that only labels a volatile value: a short label, then the (masked) value ending
# the line: "Current time: 2026-11-30T10:00:00Z", "Today is Monday, 30 November 2026."
_LABEL_LINE = re.compile(r"[ \t]*[\w ,/'()-]{0,24}[:=]?[ \t]*\x00(?:[ ,]*\x00)*[ \t.]*")


def unstamped(masked: str) -> str:
    """A masked text without the lines that only label a volatile value: the same for a
    prompt with or without such a line, so inserting a timestamp line reads as the
    dynamic value it is, not as an edit of the part."""
    if MASK not in masked:
        return masked
    lines = masked.split("\n")
    kept = [line for line in lines if MASK not in line or not _LABEL_LINE.fullmatch(line)]
    return "\n".join(kept) if len(kept) < len(lines) else masked


def covering(text: str, offset: int) -> Volatile | None:
    """The volatile value that covers ``offset`` (or starts right there)."""
    for value in find(text):
        if value.start <= offset < max(value.end, value.start + 1):
            return value
    return None
