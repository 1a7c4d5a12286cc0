"""Values that change on every request: timestamps, dates, ids, nonces, counters.

A number that is policy content ("30 days") is not volatile; a date, a UUID,
a request id, an epoch, a signature or ``request #1234`` is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_PATTERNS: tuple[tuple[str, str], ...] = (
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
    (
        "counter",
        r"(?i:\b(?:request|req|turn|seq|sequence|counter|nonce|attempt|iteration|run)"
        r"[\s_]*(?:#|no\.?|id|number)?[\s_]*[:=#]?\s*\d+\b)|#\d{2,}\b",
    ),
    (
        "signature",
        r"(?<![A-Za-z0-9+/_\-])(?=[A-Za-z0-9+/_\-]*\d)(?=[A-Za-z0-9+/_\-]*[A-Za-z])"
        r"[A-Za-z0-9+/_\-]{32,}={0,2}",
    ),
)
_COMBINED = re.compile("|".join(f"(?P<{kind}{i}>{pat})" for i, (kind, pat) in enumerate(_PATTERNS)))
MASK = "\x00"


@dataclass(frozen=True)
class Volatile:
    """One volatile value found in a text."""

    kind: str
    start: int
    end: int
    text: str


def find(text: str) -> list[Volatile]:
    """Every volatile value in ``text``, left to right, not overlapping."""
    out = []
    for match in _COMBINED.finditer(text):
        kind = re.sub(r"\d+$", "", match.lastgroup or "")
        out.append(Volatile(kind, match.start(), match.end(), match.group()))
    return out


def mask(text: str) -> str:
    """``text`` with every volatile value replaced by one mask character."""
    return _COMBINED.sub(MASK, text)


def covering(text: str, offset: int) -> Volatile | None:
    """The volatile value that covers ``offset`` (or starts right there)."""
    for value in find(text):
        if value.start <= offset < max(value.end, value.start + 1):
            return value
    return None
