"""A request body ─► the fingerprint attributes of its call: the one home of that step.

The in-service instrumentation (``collector.instrument``), logged request records
(``collector.records``) and requests rebuilt from other libraries' captured content
(``collector.captured``) all fingerprint here, so one call gives the same
``prefix_hash``, block hashes, segment map and breakpoints whoever recorded it.
Light on purpose: it runs inside users' services (no numpy, polars or DuckDB).
"""

from __future__ import annotations

from typing import Any

from analysis import fingerprint, prompt, tokens
from collector import attributes as A


def fingerprint_body(
    body: Any,
    model: str | None = None,
    block_size: int = fingerprint.DEFAULT_BLOCK_SIZE,
    memo: fingerprint.TokenMemo | None = None,
) -> tuple[prompt.Prompt, dict[str, Any]]:
    """The parsed request and its ``cachediag.*`` fingerprint attributes, tokenized for
    ``model`` (default: the body's own). Raises ``prompt.PromptError`` for a body that
    is not a request of a known format."""
    parsed = prompt.parse(body)
    tok = tokens.resolve(model or parsed.model)
    fp = fingerprint.fingerprint(parsed, tok, block_size, memo)
    return parsed, A.fingerprint_attributes(fp)
