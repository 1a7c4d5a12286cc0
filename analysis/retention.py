"""How long a request asks the provider to keep its prefix cached.

OpenAI's ``prompt_cache_retention`` ("24h" extended; "in_memory" the default) and
the ``ttl`` of an Anthropic ``cache_control`` ("5m" default, "1h") change the
lifetime a miss is judged against: a prefix last used 30 minutes before is
``ttl_expired`` under the default, but not under the extended lifetime.
"""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"(\d{1,6})([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _seconds(value: Any) -> int | None:
    """A provider's duration ("5m", "1h", "24h") in seconds; None when it is none."""
    found = _DURATION.fullmatch(value) if isinstance(value, str) else None
    return int(found[1]) * _SECONDS[found[2]] if found else None


def asked(body: dict) -> int | None:
    """The longest cache lifetime a request asks for: OpenAI's ``prompt_cache_retention``
    ("24h"; "in_memory" is the default, None) or the ``ttl`` of an Anthropic
    ``cache_control`` (top level, system, tools, message blocks). None when it asks for
    none: the provider's default applies."""
    wanted = [_seconds(body.get("prompt_cache_retention"))]
    blocks = [body, *_listed(body.get("system")), *_listed(body.get("tools"))]
    for message in _listed(body.get("messages")):
        blocks.extend(_listed(message.get("content")) if isinstance(message, dict) else ())
    for block in blocks:
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            wanted.append(_seconds(control.get("ttl")))
    return max((s for s in wanted if s), default=None)


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else []
