"""Canonical forms of a part's text: what stays when only some kind of change is undone.

Two texts with the same squashed form differ only in whitespace; with the same
canonical JSON, only in key order (and JSON formatting); with the same order-free
form, only in the order of their items. The content classifier
(``analysis.causes``) compares these forms, and the fingerprint
(``analysis.fingerprint``) hashes them, so that explanations from hashes alone
say what explanations from content say.

Items are split by one rule, cheap and predictable: tagged documents
(``<document>``, ``<doc>``, ``<chunk>``, ``<result>``, ``<source>``) when there
are two or more, else paragraphs (blank-line separated), else lines.
"""

from __future__ import annotations

import json
import re
from typing import Any

from analysis.prompt import MAX_DEPTH

_OPENING = re.compile(r"[{\[]")
_TAGGED = re.compile(r"(?s)<(document|doc|chunk|result|source)\b.*?</\1>")
_HOLE = "\x00"  # where a tagged document stood in the text around the documents


def squash(text: str) -> str:
    """``text`` without any whitespace (str.split's whitespace: the same as ``\\s``)."""
    return "".join(text.split())


class _TooDeep(Exception):
    """Embedded JSON nested past MAX_DEPTH: compared as the text it is."""


def _sorted_json(value: Any, sort_lists: bool, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {k: _sorted_json(value[k], sort_lists, depth + 1) for k in sorted(value)}
    if isinstance(value, list):
        items = [_sorted_json(v, sort_lists, depth + 1) for v in value]
        return sorted(items, key=json.dumps) if sort_lists else items
    if isinstance(value, str) and value[:1] in "{[" and value[-1:] in "}]":
        try:  # JSON inside a string: tool-call arguments, tool results
            return ["<json>", _sorted_json(json.loads(value), sort_lists, depth + 1)]
        except (ValueError, RecursionError, _TooDeep):
            return value
    return value


def canonical_json(text: str, sort_lists: bool = False) -> str:
    """``text`` with every embedded JSON object or array in canonical form: sorted keys,
    one formatting, JSON inside strings decoded too (and, with ``sort_lists``, every
    list's items sorted)."""
    if "{" not in text and "[" not in text:
        return text
    decoder, out, pos = json.JSONDecoder(), [], 0
    for match in _OPENING.finditer(text):
        if match.start() < pos:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
            canonical = json.dumps(_sorted_json(value, sort_lists), sort_keys=True)
        except (ValueError, RecursionError, _TooDeep):
            continue
        out.append(text[pos : match.start()])
        out.append(canonical)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _split(text: str) -> tuple[list[str], bool]:
    """The items of a text, and whether they are tagged documents; [] for fewer than two."""
    found = [m.group() for m in _TAGGED.finditer(text)]
    if len(found) >= 2:
        return found, True
    sep = "\n\n" if "\n\n" in text else "\n"
    found = [c for c in text.split(sep) if c.strip()]
    return (found if len(found) >= 2 else []), False


def order_free(text: str) -> list[str]:
    """``text`` as a list that is the same for any order of its items: JSON with sorted
    keys and lists, then its items sorted, after the text around them when they are
    tagged documents. A text of one item is itself."""
    canonical = canonical_json(text, sort_lists=True)
    items, tagged = _split(canonical)
    if not items:
        return [canonical]
    return [_TAGGED.sub(_HOLE, canonical), *sorted(items)] if tagged else sorted(items)
