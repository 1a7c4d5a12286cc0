"""Canonical JSON text for prompt content, and the way back from an offset to a path.

Content is serialized compactly with its key order kept (a reordered schema
key is a cache break and must show), so two files that differ only in
indentation or ``\\uXXXX`` escapes render the same text.
"""

from __future__ import annotations

import json
import re
from typing import Any

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# One encoder, built once: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump(value: Any) -> str:
    """Compact JSON, key order kept, non-ASCII kept as is."""
    return _ENCODER.encode(value)


def child(path: str, key: str | int) -> str:
    """``path`` extended by a key or index: ``a.b``, ``a[3]``, ``a["x y"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def locate(value: Any, offset: int, path: str) -> str:
    """The deepest path in ``dump(value)`` that contains character ``offset``.

    A key belongs to the object that holds it; a value to its own path.
    """
    while isinstance(value, dict | list) and value:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        pos = 1  # after the opening bracket
        for key, item in items:
            if isinstance(value, dict):
                pos += len(dump(key)) + 1
            size = len(dump(item))
            if pos <= offset < pos + size:
                value, offset, path = item, offset - pos, child(path, key)
                break
            if offset < pos:
                return path
            pos += size + 1  # the comma
        else:
            return path
    return path
