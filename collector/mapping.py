"""A span or log record ─► one request row, whoever instrumented the call.

Reads the attribute contract (``collector.attributes``) and what other
instrumentations emit: GenAI semantic conventions old and new, OpenLLMetry /
Traceloop, OpenInference, OpenLIT, and raw provider usage JSON. Token counts
are normalized so that ``prompt_tokens`` always means all input tokens.
Records that are not LLM calls are skipped (and counted by the caller);
attributes nobody claimed are kept as JSON. Every value is checked against
what its column holds and what is plausible before it becomes a row: a record
that fails raises ``Rejected`` (the caller counts it and stores the rest), and
lone surrogates in text become U+FFFD so every string encodes as UTF-8.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from analysis import fingerprint
from analysis import usage as usage_mod
from collector import attributes as A
from collector import captured
from collector.decoded import MAX_DEPTH, Record

_PROVIDER = (A.PROVIDER.name, A.SYSTEM.name, "llm.provider", "llm.system")
_OPERATION = (A.OPERATION.name, "llm.request.type")
_REQUEST_MODEL = (A.REQUEST_MODEL.name, "llm.request.model", "llm.model_name")
_RESPONSE_MODEL = (A.RESPONSE_MODEL.name, "llm.response.model")
_CONVERSATION = (A.CONVERSATION_ID.name, "session.id", "gen_ai.session.id")
_SESSION_KEY = (
    A.SESSION_KEY.name,
    "gen_ai.openai.request.prompt_cache_key",
    "gen_ai.request.prompt_cache_key",
)
_INPUT = (
    A.INPUT_TOKENS.name,
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
_OUTPUT = (
    A.OUTPUT_TOKENS.name,
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
_CACHE_READ = (
    A.CACHE_READ.name,
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
    "llm.usage.cache_read_input_tokens",
)
_CACHE_WRITE = (
    A.CACHE_CREATION.name,
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "llm.usage.cache_creation_input_tokens",
)
_RAW_JSON = (A.USAGE.name, "output.value", "llm.response.body", "gen_ai.response.body")
_LLM_PREFIXES = ("gen_ai.", "llm.", "cachediag.")
_FIRST_TOKEN_EVENTS = ("first_token", "first_chunk")

MAX_TOKENS = 2**31  # in one request, any count: past every context window, far from overflow
_INT32_MAX = 2**31 - 1  # tools_count and block_size are INTEGER columns
_MAX_TIME_NS = 2**63 - 1  # start_ns is BIGINT nanoseconds (years 1970..2262 here)
_RANGES = {
    "prompt_tokens": (0, MAX_TOKENS),
    "cached_tokens": (0, MAX_TOKENS),
    "cache_write_tokens": (0, MAX_TOKENS),
    "output_tokens": (0, MAX_TOKENS),
    "total_tokens": (0, MAX_TOKENS),
    "tools_count": (0, _INT32_MAX),
    "block_size": (1, _INT32_MAX),
    "start_ns": (0, _MAX_TIME_NS),
}
_SURROGATE = re.compile("[\ud800-\udfff]")


class Rejected(ValueError):
    """A record whose values cannot be stored as a row (out of range, not finite)."""


def _pop(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The first present value among ``names``; all of them are consumed."""
    found = None
    for name in names:
        value = attrs.pop(name, None)
        if found is None and value is not None:
            found = value
    return found


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None
    except OverflowError:  # an infinite double
        raise Rejected(f"integer attribute {value!r} is not finite") from None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def is_llm_call(record: Record) -> bool:
    return any(key.startswith(_LLM_PREFIXES) for key in record.attributes)


def _raw_response(attrs: dict[str, Any], body: Any) -> Any:
    """A provider response or usage object carried as JSON, if any."""
    for name in _RAW_JSON:
        value = attrs.pop(name, None)
        if isinstance(value, str) and value[:1] == "{":
            try:
                found = json.loads(value)
            except ValueError:
                continue
            except RecursionError:
                found = None  # too deep for the parser
            if found is None or not _shallow(found):
                raise Rejected(f"{name} nests more than {MAX_DEPTH} levels")
            return found
    return body if isinstance(body, dict) else None


def _shallow(obj: Any) -> bool:
    """Does ``obj`` nest at most MAX_DEPTH lists and objects?"""
    stack = [(obj, MAX_DEPTH)]
    while stack:
        node, room = stack.pop()
        if isinstance(node, dict | list):
            if room == 0:
                return False
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, room - 1) for child in children)
    return True


def _usage(attrs: dict[str, Any], provider: str | None, raw: Any) -> usage_mod.Usage:
    prompt, cached = _int(_pop(attrs, _INPUT)), _int(_pop(attrs, _CACHE_READ))
    write, output = _int(_pop(attrs, _CACHE_WRITE)), _int(_pop(attrs, _OUTPUT))
    try:
        from_raw = usage_mod.from_provider(raw)
    except OverflowError:  # an infinite number in the provider's usage
        raise Rejected("the provider usage holds a token count that is not finite") from None
    prompt = prompt if prompt is not None else from_raw.prompt_tokens
    cached = cached if cached is not None else from_raw.cached_tokens
    write = write if write is not None else from_raw.cache_write_tokens
    output = output if output is not None else from_raw.output_tokens
    if (
        (provider or "").startswith("anthropic")
        and prompt is not None
        and from_raw.prompt_tokens is None
        and (cached or 0) + (write or 0) > prompt
    ):
        prompt += (cached or 0) + (write or 0)  # input_tokens excluded the cache, as Anthropic's
    return usage_mod.Usage(prompt, cached, write, output)


def _ttft_ms(attrs: dict[str, Any], record: Record) -> float | None:
    ttft = _float(attrs.pop(A.TTFT_MS.name, None))
    seconds = _float(attrs.pop(A.TIME_TO_FIRST_CHUNK.name, None))
    if ttft is None and seconds is not None:
        ttft = seconds * 1000
    if ttft is None:
        for name, time_ns in record.events:
            if any(marker in name for marker in _FIRST_TOKEN_EVENTS) and time_ns:
                return (time_ns - record.start_ns) / 1e6
    return ttft


def _verdict(attrs: dict[str, Any], raw: Any) -> str | None:
    value = attrs.pop(A.PROVIDER_VERDICT.name, None)
    if value is not None:
        return _str(value)
    found = usage_mod.verdict(raw)
    return json.dumps(found) if found else None


def _check(row: dict[str, Any]) -> None:
    """Raise ``Rejected`` unless every value fits its column and is plausible; mend text."""
    for name, (low, high) in _RANGES.items():
        value = row[name]
        if value is not None and not low <= value <= high:
            raise Rejected(f"{name} {value} is outside {low}..{high}")
    if row["ttft_ms"] is not None and not math.isfinite(row["ttft_ms"]):
        raise Rejected(f"ttft_ms {row['ttft_ms']} is not finite")
    for name, value in row.items():
        if type(value) is str and not value.isascii():
            row[name] = _mend(value)


def _mend(text: str) -> str:
    """``text`` with lone surrogates (valid in JSON, not in UTF-8) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _operation_from_name(name: str) -> str | None:
    """GenAI span names are ``{operation} {model}``."""
    head, _, rest = name.partition(" ")
    return head if rest and head.replace("_", "").isalpha() else None


def record_id(record: Record) -> str:
    """Stable identity: trace + span id, or a content hash for a log without them."""
    if record.id:
        return record.id
    if record.trace_id and record.span_id:
        return record.trace_id + record.span_id
    blob = json.dumps(
        [record.start_ns, record.attributes, record.body], sort_keys=True, default=str
    )
    return "log-" + hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def map_record(
    record: Record, keep_content: bool = True
) -> tuple[dict[str, Any], str | None] | None:
    """The request row of one record and its captured content; None if not an LLM call.
    Raises ``Rejected`` when a value cannot be stored. Without ``keep_content`` the
    raw prompt attributes of other libraries are dropped (the caller drops the rest)."""
    if not is_llm_call(record):
        return None
    attrs = dict(record.attributes)
    captured.fingerprint_captured(attrs, keep_content)  # other libraries' prompts ─► ours
    provider = _str(_pop(attrs, _PROVIDER))
    raw = _raw_response(attrs, record.body)
    use = _usage(attrs, provider, raw)
    hashes = attrs.pop(A.BLOCK_HASHES.name, None)
    content = _str(attrs.pop(A.CONTENT.name, None))
    row = {
        "id": record_id(record),
        "trace_id": record.trace_id or None,
        "span_id": record.span_id or None,
        "parent_span_id": record.parent_span_id or None,
        "signal": record.signal,
        "service": _str(record.resource.get("service.name")),
        "name": record.name,
        "start_ns": record.start_ns,
        "duration_ms": max(record.end_ns - record.start_ns, 0) / 1e6,
        "provider": provider,
        "operation": _str(_pop(attrs, _OPERATION)) or _operation_from_name(record.name),
        "request_model": _str(_pop(attrs, _REQUEST_MODEL)),
        "response_model": _str(_pop(attrs, _RESPONSE_MODEL)),
        "conversation_id": _str(_pop(attrs, _CONVERSATION)),
        "session_key": _str(_pop(attrs, _SESSION_KEY)),
        "route": _str(attrs.pop(A.ROUTE.name, None)),
        "replica": _str(attrs.pop(A.REPLICA.name, None)),
        "prompt_version": _str(attrs.pop(A.PROMPT_VERSION.name, None)),
        "schema_version": _str(attrs.pop(A.SCHEMA_VERSION.name, None)),
        "prefix_hash": _str(attrs.pop(A.PREFIX_HASH.name, None)),
        "tools_hash": _str(attrs.pop(A.TOOLS_HASH.name, None)),
        "tools_count": _int(attrs.pop(A.TOOLS_COUNT.name, None)),
        "encoding": _str(attrs.pop(A.ENCODING.name, None)),
        "block_size": _int(attrs.pop(A.BLOCK_SIZE.name, None)),
        "block_hashes": fingerprint.pack_hashes(hashes),
        "segments": _str(attrs.pop(A.SEGMENTS.name, None)),
        "breakpoints": _str(attrs.pop(A.BREAKPOINTS.name, None)),
        "retention_s": _int(attrs.pop(A.RETENTION.name, None)),
        "total_tokens": _int(attrs.pop(A.TOTAL_TOKENS.name, None)),
        "prompt_tokens": use.prompt_tokens,
        "cached_tokens": use.cached_tokens,
        "cache_write_tokens": use.cache_write_tokens,
        "output_tokens": use.output_tokens,
        "ttft_ms": _ttft_ms(attrs, record),
        "is_error": record.status_code == 2 or "error.type" in attrs,
        "error_type": _str(attrs.pop("error.type", None)) or (record.status_message or None),
        "provider_verdict": _verdict(attrs, raw),
        "attributes": json.dumps(attrs, default=str) if attrs else None,
    }
    _check(row)
    return row, content if content is None or content.isascii() else _mend(content)
