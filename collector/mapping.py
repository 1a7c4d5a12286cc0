"""A span or log record ─► one request row, whoever instrumented the call.

The span stream is a set of *calls*, one row per LLM call, whichever libraries saw it.

**Which records are LLM calls** (``classify``): a span whose GenAI operation
(``gen_ai.operation.name``, OpenLLMetry's ``llm.request.type``, else the operation that
starts the span name ``{operation} {model}``) is ``chat``, ``text_completion``,
``generate_content`` or ``completion``; a span of OpenInference kind ``LLM``; a span with
no operation of its own that names a model and reports token usage; a request record
logged by ``cachediag ingest``. Other GenAI work (``invoke_agent``, ``create_agent``,
``execute_tool``, ``embeddings``, any other explicit operation; OpenInference ``CHAIN``,
``TOOL``, ``AGENT``, ``RETRIEVER``, ``EMBEDDING``, ...) is counted (``genai_not_calls`` in
/api/v1/stats) and never stored as a request, so never a predecessor. A record without any
GenAI attribute is skipped (``skipped_not_llm``).

**Logs and span events enrich, never replace.** A log record of a call (same trace and
span id) is a *part* of that call: the store merges it into the call's row whichever comes
first (``collector.calls`` has the rules, ``collector.store.linking`` the bookkeeping).
A log record is a row by itself only when it is a whole call (a model and token usage)
and no span of that id exists; otherwise it waits for its span, and is dropped after an
hour without one. Span events enrich the span they are on (time to first token).

**Nested spans of one call** (the anthropic SDK's own span inside an instrumentation's;
Logfire's stream record beside the span it finishes) merge into one row with the union of
what each knows, the outer span's identity and values winning: see ``collector.calls``.

Reads the attribute contract (``collector.attributes``: our names, and the names each
other instrumentation uses for each column, with units) and raw provider usage JSON.
Token counts are normalized so that ``prompt_tokens`` always means all input tokens
(Anthropic's convention decided by the library that sent it, see
``attributes.INPUT_INCLUDES_CACHE``). Attributes nobody claimed are kept as JSON. Every
value is checked against what its column holds and what is plausible before it becomes a
row: a record that fails raises ``Rejected`` (the caller counts it and stores the rest),
and lone surrogates in text become U+FFFD so every string encodes as UTF-8.
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

_PROVIDER = A.READS["provider"][1]
_OPERATION = A.READS["operation"][1]
_REQUEST_MODEL = A.READS["request_model"][1]
_RESPONSE_MODEL = A.READS["response_model"][1]
_CONVERSATION = A.READS["conversation_id"][1]
_SESSION_KEY = A.READS["session_key"][1]
_INPUT = A.READS["prompt_tokens"][1]
_OUTPUT = A.READS["output_tokens"][1]
_CACHE_READ = A.READS["cached_tokens"][1]
_CACHE_WRITE = A.READS["cache_write_tokens"][1]
_RAW_JSON = A.READS["raw_usage"][1]
_TTFT_MS, _TTFT_S = A.READS["ttft_ms"][1], A.READS["ttft_s"][1]
_LLM_PREFIXES = ("gen_ai.", "llm.", "cachediag.", "openinference.")

CALL, OTHER, PART = "call", "other", "part"  # what classify() says a record is
# GenAI operations that are one LLM call (semconv; OpenLLMetry's llm.request.type says
# "completion"); any other operation (invoke_agent, execute_tool, create_agent, embeddings,
# rerank, ...) is other GenAI work.
CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
OTHER_OPERATIONS = frozenset(
    {"invoke_agent", "create_agent", "execute_tool", "embeddings", "retrieval", "invoke_workflow"}
)
_SPAN_KIND = "openinference.span.kind"  # LLM is a call; CHAIN, TOOL, AGENT, RETRIEVER, ... not
# Logfire's record of a finished stream: the same request as the call's span (which ended when
# the stream was handed back), emitted later beside it. It enriches that call.
_STREAM_TAIL = ("logfire.msg_template", "streaming response from")

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
    """Does the record carry any GenAI attribute at all (a call or other GenAI work)?"""
    return any(key.startswith(_LLM_PREFIXES) for key in record.attributes)


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((attrs[n] for n in names if attrs.get(n) is not None), None)


def classify(record: Record) -> str | None:
    """CALL, OTHER (GenAI work that is no LLM call), PART (enriches a call: a log record
    or span event of one, Logfire's stream tail) or None (no GenAI attribute)."""
    if not is_llm_call(record):
        return None
    attrs = record.attributes
    tail = attrs.get(_STREAM_TAIL[0])
    if record.signal == "log":
        operation = _first(attrs, _OPERATION)  # a log record of an agent or a tool: OTHER
        return PART if operation is None or str(operation).lower() in CALL_OPERATIONS else OTHER
    if isinstance(tail, str) and tail.startswith(_STREAM_TAIL[1]):
        return PART
    kind = attrs.get(_SPAN_KIND)
    if kind is not None:
        return CALL if str(kind).upper() == "LLM" else OTHER
    named = _first(attrs, _OPERATION)
    operation = str(named if named is not None else _operation_from_name(record.name)).lower()
    if operation in CALL_OPERATIONS:
        return CALL
    if named is not None or operation in OTHER_OPERATIONS:
        return OTHER  # an operation of its own that is no call
    has_model = _first(attrs, _REQUEST_MODEL + _RESPONSE_MODEL) is not None
    has_usage = _first(attrs, _INPUT + _OUTPUT + _RAW_JSON) is not None
    return CALL if has_model and has_usage or record.signal == "record" else OTHER


def is_complete(row: dict[str, Any]) -> bool:
    """Does a row know a call on its own: a model and token usage?"""
    has_model = row["request_model"] is not None or row["response_model"] is not None
    return has_model and (row["prompt_tokens"] is not None or row["output_tokens"] is not None)


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


def _includes_cache(record: Record) -> bool | None:
    """Whether the library that sent ``record`` counts cache reads and writes in its input
    tokens (``attributes.INPUT_INCLUDES_CACHE``); None when no marker says."""
    for name, value, includes in A.INPUT_INCLUDES_CACHE:
        found = record.attributes.get(name, record.resource.get(name))
        if found is not None and (value is None or found == value):
            return includes
    return None


def _usage(
    attrs: dict[str, Any], provider: str | None, raw: Any, record: Record
) -> usage_mod.Usage:
    prompt, cached = _int(_pop(attrs, _INPUT)), _int(_pop(attrs, _CACHE_READ))
    write, output = _int(_pop(attrs, _CACHE_WRITE)), _int(_pop(attrs, _OUTPUT))
    try:
        from_raw = usage_mod.from_provider(raw)
    except OverflowError:  # an infinite number in the provider's usage
        raise Rejected("the provider usage holds a token count that is not finite") from None
    counted = prompt is not None
    prompt = prompt if counted else from_raw.prompt_tokens  # from_provider gives totals
    cached = cached if cached is not None else from_raw.cached_tokens
    write = write if write is not None else from_raw.cache_write_tokens
    output = output if output is not None else from_raw.output_tokens
    if counted and (provider or "").startswith("anthropic") and (cached or write):
        includes = _includes_cache(record)
        if includes is None:  # semconv: the count includes the cache, unless it cannot
            includes = (cached or 0) + (write or 0) <= prompt
        if not includes:
            prompt += (cached or 0) + (write or 0)  # Anthropic's input_tokens, passed through
    return usage_mod.Usage(prompt, cached, write, output)


def _ttft_ms(attrs: dict[str, Any], record: Record) -> float | None:
    ttft = _float(_pop(attrs, _TTFT_MS))
    seconds = _float(_pop(attrs, _TTFT_S))
    if ttft is None and seconds is not None:
        ttft = seconds * 1000
    if ttft is None:
        # events in time order: the first chunk is the earliest of its name
        for name, time_ns in sorted(record.events, key=lambda e: e[1]):
            lowered = name.lower()
            if time_ns and any(marker in lowered for marker in A.FIRST_TOKEN_EVENTS):
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


def fingerprint_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    """The row columns our fingerprint attributes fill (consumed from ``attrs``)."""
    return {
        "prefix_hash": _str(attrs.pop(A.PREFIX_HASH.name, None)),
        "tools_hash": _str(attrs.pop(A.TOOLS_HASH.name, None)),
        "tools_count": _int(attrs.pop(A.TOOLS_COUNT.name, None)),
        "encoding": _str(attrs.pop(A.ENCODING.name, None)),
        "block_size": _int(attrs.pop(A.BLOCK_SIZE.name, None)),
        "block_hashes": fingerprint.pack_hashes(attrs.pop(A.BLOCK_HASHES.name, None)),
        "segments": _str(attrs.pop(A.SEGMENTS.name, None)),
        "breakpoints": _str(attrs.pop(A.BREAKPOINTS.name, None)),
        "retention_s": _int(attrs.pop(A.RETENTION.name, None)),
        "total_tokens": _int(attrs.pop(A.TOTAL_TOKENS.name, None)),
    }


_MESSAGE_EVENT = re.compile(r"gen_ai\.(system|user|assistant|tool)\.message")


def _keep_message_event(record: Record, attrs: dict[str, Any]) -> None:
    """openai-v2's event mode: one log record per prompt message. Kept among the row's
    attributes under a key of its own (time, then digest: sorted, the messages in order)
    until its call's records are merged (``collector.calls``) and rebuilt together."""
    name = record.name or _str(attrs.get("event.name")) or ""
    if not _MESSAGE_EVENT.fullmatch(name):
        return
    event = json.dumps([name, record.body], default=str, sort_keys=True)
    digest = hashlib.blake2b(event.encode(), digest_size=6).hexdigest()
    attrs[f"{A.MESSAGE_EVENT.name}.{record.start_ns:020d}.{digest}"] = event


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
    attrs.pop(_SPAN_KIND, None)  # said by classify()
    raw = _raw_response(attrs, record.body)
    use = _usage(attrs, provider, raw, record)
    content = _str(attrs.pop(A.CONTENT.name, None))
    if keep_content and record.signal == "log":
        _keep_message_event(record, attrs)
    attrs.pop(A.ROUTING_KEY.name, None)  # for a gateway's routing; the hashes hold it
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
        **fingerprint_columns(attrs),
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
