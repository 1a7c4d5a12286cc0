"""The differing region of two versions of one part: what a cause is read from.

A part (a system prompt, a tool result) can be a hundred thousand characters
long and differ in ten. The cause classifier (``analysis.causes``) looks at the
lines around the differing characters, not at the whole part: ``windows``
trims the common prefix and suffix and widens what is left to whole lines (or,
in a long line, to a margin and the whole value under its edges), the same on
both sides.
"""

from __future__ import annotations

import re

from analysis.differ import common_prefix_length

LINE_REACH = 2_048  # a window widens to whole lines when their ends are this close
MARGIN = 96  # else by this many characters, then to the end of the value there
# Characters a volatile value is made of (dates, ids, signatures, URL-encoded values):
# a window never ends inside a run of them.
_VALUE_TAIL = re.compile(r"[A-Za-z0-9+/_=%.:\-]*\Z")
_VALUE_HEAD = re.compile(r"[A-Za-z0-9+/_=%.:\-]*")
# Whitespace, and the escapes that stand for it inside JSON strings.
_BLANK = re.compile(r"\s+|\\[rnt]")
_JSON_CHARS = re.compile(r"[{}\[\]:,\"]")
_DIGITS = re.compile(r"\d+")


def common_suffix_length(a: str, b: str, limit: int) -> int:
    """Length of the common suffix of ``a`` and ``b``, at most ``limit``."""
    return min(common_prefix_length(a[::-1], b[::-1]), limit)


def _start(text: str, pos: int) -> int:
    line = text.rfind("\n", max(pos - LINE_REACH, 0), pos)
    if line >= 0 or pos <= LINE_REACH:
        return line + 1
    start = pos - MARGIN
    run = _VALUE_TAIL.search(text, max(start - 4 * LINE_REACH, 0), start)
    return run.start() if run else start


def _extent(text: str, pos: int) -> int:
    """How far past ``pos`` a window ends (``text[pos:]`` is the common suffix)."""
    line = text.find("\n", pos, pos + LINE_REACH)
    if line >= 0:
        return line + 1 - pos
    if len(text) - pos <= LINE_REACH:
        return len(text) - pos
    end = pos + MARGIN
    run = _VALUE_HEAD.match(text, end, end + 4 * LINE_REACH)
    return (run.end() if run else end) - pos


def windows(a: str, b: str) -> tuple[str, str]:
    """The differing region of ``a`` and ``b`` with the same context on both sides."""
    prefix = common_prefix_length(a, b)
    suffix = common_suffix_length(a, b, min(len(a), len(b)) - prefix)
    start = _start(a, prefix)
    extent = _extent(a, len(a) - suffix)
    return a[start : len(a) - suffix + extent], b[start : len(b) - suffix + extent]


def blank(text: str) -> str:
    """``text`` without whitespace, also the escaped whitespace of JSON strings (a CRLF
    turned LF inside a tool result renders as ``\\r\\n`` ─► ``\\n``)."""
    return _BLANK.sub("", text)


def jsonish(a: str, b: str) -> bool:
    """Could the difference be JSON key order (does either region hold JSON syntax)?"""
    return bool(_JSON_CHARS.search(a) or _JSON_CHARS.search(b))


def incremented(a: str, b: str) -> str | None:
    """'41 → 42' when the only difference is one integer counted up by one."""
    pos = common_prefix_length(a, b)
    while pos and a[pos - 1].isdigit():
        pos -= 1
    num_a, num_b = _DIGITS.match(a, pos), _DIGITS.match(b, pos)
    if not (num_a and num_b) or a[num_a.end() :] != b[num_b.end() :]:
        return None
    if int(num_b.group()) != int(num_a.group()) + 1:
        return None
    return f"{num_a.group()} → {num_b.group()}"
