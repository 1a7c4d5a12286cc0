"""The attribute contract: every span attribute cachediag writes or reads, named once.

OpenTelemetry GenAI semantic-convention names where they exist; cachediag's
own under ``cachediag.``. The instrumentation writes these names and the
collector's mapping reads them (plus the aliases other instrumentations emit,
listed in ``collector.mapping``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attribute:
    """One span attribute: its name, OTel value type and meaning."""

    name: str
    type: str  # string | int | double | bool | int[]
    meaning: str


def _a(name: str, type_: str, meaning: str) -> Attribute:
    return Attribute(name, type_, meaning)


# --- OpenTelemetry GenAI semantic conventions -----------------------------------------------
PROVIDER = _a("gen_ai.provider.name", "string", "provider: openai, anthropic, deepseek, ...")
SYSTEM = _a("gen_ai.system", "string", "deprecated spelling of gen_ai.provider.name (read only)")
OPERATION = _a("gen_ai.operation.name", "string", "chat, text_completion, embeddings, ...")
REQUEST_MODEL = _a("gen_ai.request.model", "string", "model asked for")
RESPONSE_MODEL = _a("gen_ai.response.model", "string", "model that answered")
CONVERSATION_ID = _a("gen_ai.conversation.id", "string", "conversation/session id")
INPUT_TOKENS = _a("gen_ai.usage.input_tokens", "int", "all prompt tokens, cached included")
OUTPUT_TOKENS = _a("gen_ai.usage.output_tokens", "int", "completion tokens")
CACHE_READ = _a("gen_ai.usage.cache_read.input_tokens", "int", "prompt tokens read from cache")
CACHE_CREATION = _a(
    "gen_ai.usage.cache_creation.input_tokens", "int", "prompt tokens written to the cache"
)
CACHE_WRITE = _a(
    "gen_ai.usage.cache_write.input_tokens",
    "int",
    "prompt tokens written to the cache (the anthropic SDK's and newer semconv spelling)",
)
TIME_TO_FIRST_CHUNK = _a(
    "gen_ai.response.time_to_first_chunk",
    "double",
    "seconds from request to the first streamed chunk",
)
SERVER_TTFT = _a(
    "gen_ai.server.time_to_first_token",
    "double",
    "seconds to the first token (OpenLIT; the semconv name of a server metric)",
)

# --- cachediag's own -------------------------------------------------------------------------
ROUTE = _a("cachediag.route", "string", "logical route / endpoint of the service")
REPLICA = _a("cachediag.replica", "string", "serving replica or deployment the call hit")
SESSION_KEY = _a("cachediag.session_key", "string", "prompt_cache_key or sticky-routing key")
PREFIX_HASH = _a("cachediag.prefix_hash", "string", "hash of the tools + system part")
ROUTING_KEY = _a(
    "cachediag.routing_key",
    "string",
    "the first block hash in hex: a gateway routes a prefix family to one collector by it",
)
TOOLS_HASH = _a("cachediag.tools_hash", "string", "hash of the tool declarations")
TOOLS_COUNT = _a("cachediag.tools_count", "int", "number of tools declared")
SCHEMA_VERSION = _a("cachediag.schema_version", "string", "version of the tool/output schemas")
PROMPT_VERSION = _a("cachediag.prompt_version", "string", "version of the prompt template")
TTFT_MS = _a("cachediag.ttft_ms", "double", "time to first token, milliseconds")
ENCODING = _a("cachediag.encoding", "string", "tiktoken encoding of the fingerprint")
BLOCK_SIZE = _a("cachediag.block_size", "int", "tokens per fingerprint block")
BLOCK_HASHES = _a("cachediag.block_hashes", "int[]", "chained 64-bit block hashes")
SEGMENTS = _a(
    "cachediag.segments",
    "string",
    "segment map as JSON: [[path, kind, start, end, hash, masked, json, space, items, "
    'unstamped], ...]: the exact hash, then the canonical hashes ("" where the same as the '
    "exact one)",
)
BREAKPOINTS = _a(
    "cachediag.breakpoints",
    "string",
    "token positions where a cache_control breakpoint ends a prefix, as JSON: [end, ...]",
)
RETENTION = _a(
    "cachediag.cache_retention_s",
    "int",
    "the cache lifetime the request asked for, seconds (prompt_cache_retention, "
    "cache_control ttl); absent: the provider's default",
)
TOTAL_TOKENS = _a("cachediag.total_tokens", "int", "tokens of the rendered prompt")
CONTENT = _a("cachediag.content", "string", "rendered request (only when capture is on)")
REBUILT_FROM = _a(
    "cachediag.rebuilt_from",
    "string",
    "set at ingest: the captured-content attribute another library's request was rebuilt "
    "and fingerprinted from (collector.rebuild)",
)
MESSAGE_EVENT = _a(
    "cachediag.message_event",
    "string",
    "set at ingest, as the prefix of ``cachediag.message_event.{time_ns}.{digest}``: one "
    "``gen_ai.<role>.message`` event of a call (openai-v2's event mode) as JSON [name, body], "
    "kept (with content) until its call's records are merged and rebuilt from them",
)
USAGE = _a("cachediag.usage", "string", "the provider's raw usage object as JSON")
PROVIDER_VERDICT = _a(
    "cachediag.provider_verdict", "string", "the provider's own cache-miss diagnostics as JSON"
)

# --- what other instrumentations send -----------------------------------------------------------
# Each column of a request row is read from the first of these names present on a record (all
# are consumed, so none is also kept among the unclaimed attributes), in the unit stated.
# Sources: GenAI semconv (old and new), OpenLLMetry/Traceloop (``llm.*``, ``traceloop.*``),
# OpenInference (``llm.*_name``, ``llm.token_count.*``), OpenLIT, Logfire.
READS: dict[str, tuple[str, tuple[str, ...]]] = {  # column: (unit, names)
    "provider": ("", (PROVIDER.name, SYSTEM.name, "llm.provider", "llm.system")),
    "operation": ("", (OPERATION.name, "llm.request.type")),
    "request_model": ("", (REQUEST_MODEL.name, "llm.request.model", "llm.request.model_name")),
    # OpenInference's llm.model_name is the model that answered
    "response_model": (
        "",
        (RESPONSE_MODEL.name, "llm.response.model", "llm.response.model_name", "llm.model_name"),
    ),
    "conversation_id": (
        "",
        (
            CONVERSATION_ID.name,
            "session.id",
            "gen_ai.session.id",
            "traceloop.association.properties.session_id",
        ),
    ),
    "session_key": (
        "",
        (
            SESSION_KEY.name,
            "gen_ai.openai.request.prompt_cache_key",
            "gen_ai.request.prompt_cache_key",
        ),
    ),
    "prompt_tokens": (
        "tokens",
        (
            INPUT_TOKENS.name,
            "gen_ai.usage.prompt_tokens",
            "llm.usage.prompt_tokens",
            "llm.token_count.prompt",
        ),
    ),
    "output_tokens": (
        "tokens",
        (
            OUTPUT_TOKENS.name,
            "gen_ai.usage.completion_tokens",
            "llm.usage.completion_tokens",
            "llm.token_count.completion",
        ),
    ),
    "cached_tokens": (
        "tokens",
        (
            CACHE_READ.name,
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
            "gen_ai.usage.prompt_tokens_details.cached_tokens",
            "llm.usage.cache_read_input_tokens",
        ),
    ),
    "cache_write_tokens": (
        "tokens",
        (
            CACHE_CREATION.name,
            CACHE_WRITE.name,
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
            "llm.usage.cache_creation_input_tokens",
        ),
    ),
    # a provider response or usage object as JSON (Logfire: response_data = {message, usage})
    "raw_usage": (
        "JSON",
        (
            USAGE.name,
            "output.value",
            "llm.response.body",
            "gen_ai.response.body",
            "response_data",
            "gen_ai.usage.raw",  # Logfire (semconv latest): the provider's usage object
        ),
    ),
    "ttft_ms": ("ms", (TTFT_MS.name,)),
    "ttft_s": ("s", (TIME_TO_FIRST_CHUNK.name, SERVER_TTFT.name)),
}
# Span events whose time, less the span's start, is the time to the first token: OpenInference's
# "First Token Stream Event", OpenLLMetry's first gen_ai.content.completion.chunk, and any
# event named *first_token* / *first_chunk*. Matched on the lower-cased name.
FIRST_TOKEN_EVENTS = (
    "first_token",
    "first_chunk",
    "first token",
    "gen_ai.content.completion.chunk",
)

# Anthropic's usage.input_tokens excludes the cache reads and writes; the semconv input-token
# count SHOULD include them. Which one a record's count is depends on the library that sent it,
# known by a marker attribute (on the record or its resource; value None: any value):
# (attribute, value, the count includes the cache). The first marker present decides; with none,
# the semconv convention holds, unless the cache alone exceeds the count (it cannot include it).
INPUT_INCLUDES_CACHE: tuple[tuple[str, str | None, bool], ...] = (
    (PREFIX_HASH.name, None, True),  # cachediag's instrumentation: analysis.usage totals
    ("openinference.span.kind", None, True),  # prompt = input + cache_creation + cache_read
    ("llm.request.type", None, True),  # OpenLLMetry: input + cache_read + cache_creation
    ("llm.usage.total_tokens", None, True),  # OpenLLMetry
    ("telemetry.sdk.name", "openlit", False),  # OpenLIT passes input_tokens through
    ("gen_ai.usage.raw", None, True),  # Logfire 5 (semconv latest): input + cache read + write
    ("logfire.span_type", None, False),  # Logfire (semconv 1) sets response.usage.input_tokens
    ("logfire.msg_template", None, False),
)

ALL: tuple[Attribute, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Attribute))


def routing_key(block_hashes: Any) -> str:
    """What a scaled-out gateway routes by (docs/scale-out.md): the first block's hash, so
    requests that share a prefix, the only ones that can read each other's cache, reach
    the one collector whose index explains them."""
    return f"{block_hashes[0] & 0xFFFFFFFFFFFFFFFF:016x}"


def choose_routing_key(attrs: dict[str, Any]) -> None:
    """Set what a gateway routes by: the request's route when it names one (the explainer
    relates requests across sessions of a route: a shared system prompt is cached for every
    user), else its session or conversation (its requests meet even when a change at the
    top of the prompt moves its first block); else the first block's hash stays, as the
    fingerprint set it."""
    key = attrs.get(ROUTE.name) or attrs.get(SESSION_KEY.name) or attrs.get(CONVERSATION_ID.name)
    if key:
        attrs[ROUTING_KEY.name] = str(key)


def fingerprint_attributes(fp: Any) -> dict[str, Any]:
    """The cachediag.* attributes of an ``analysis.fingerprint.Fingerprint``."""
    segments = [
        [s.path, s.kind, s.token_start, s.token_end, s.hash, *(s.canonical or ())]
        for s in fp.segments
    ]
    return {
        PREFIX_HASH.name: fp.prefix_hash,
        **({ROUTING_KEY.name: routing_key(fp.block_hashes)} if fp.block_hashes else {}),
        TOOLS_HASH.name: fp.tools_hash,
        TOOLS_COUNT.name: fp.tools_count,
        ENCODING.name: fp.encoding,
        BLOCK_SIZE.name: fp.block_size,
        BLOCK_HASHES.name: list(fp.block_hashes),
        SEGMENTS.name: json.dumps(segments, separators=(",", ":")),
        TOTAL_TOKENS.name: fp.total_tokens,
        BREAKPOINTS.name: json.dumps(list(fp.breakpoints), separators=(",", ":")),
        **({RETENTION.name: fp.retention_s} if fp.retention_s else {}),
    }


# The fields of a logged request record (``collector.records``) that become attributes.
RECORD_FIELDS = {
    "route": ROUTE,
    "replica": REPLICA,
    "session_key": SESSION_KEY,
    "prompt_version": PROMPT_VERSION,
    "schema_version": SCHEMA_VERSION,
    "ttft_ms": TTFT_MS,
    "conversation_id": CONVERSATION_ID,
    "provider": PROVIDER,
}


def record_attributes(record: dict[str, Any], provider: str, model: Any) -> dict[str, Any]:
    """The attributes a logged request record gives the span of its call: ``provider``
    (unless the record names its own), the operation, ``model`` and the record's route,
    replica, session, versions and TTFT, strings as strings."""
    attrs = {PROVIDER.name: provider, OPERATION.name: "chat", REQUEST_MODEL.name: model}
    for key, attr in RECORD_FIELDS.items():
        value = record.get(key)
        if value is not None:
            attrs[attr.name] = str(value) if attr.type == "string" else value
    return attrs


def usage_attributes(usage: Any) -> dict[str, int]:
    """The gen_ai.usage.* attributes of an ``analysis.usage.Usage``, those it knows."""
    return {
        attr.name: value
        for attr, value in (
            (INPUT_TOKENS, usage.prompt_tokens),
            (OUTPUT_TOKENS, usage.output_tokens),
            (CACHE_READ, usage.cached_tokens),
            (CACHE_CREATION, usage.cache_write_tokens),
        )
        if value is not None
    }
