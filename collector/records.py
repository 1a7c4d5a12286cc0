"""Files into the store without a server: OTLP-JSON lines and JSONL request records.

OTLP-JSON is what the OpenTelemetry Collector's file exporter writes: one
export per line. A request record is one logged LLM call per line:

    {"time": "2026-11-22T10:00:00Z", "request": {...body...},
     "response": {"usage": {...}}, "route": "/chat", "replica": "r1",
     "session_key": "u42", "prompt_version": "v3", "schema_version": "s1",
     "ttft_ms": 412, "service": "support-bot", "id": "optional stable id"}

Records are fingerprinted here, exactly as the in-service instrumentation
would, and go through the same mapping as spans.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from analysis import fingerprint, prompt, providers, tokens
from analysis import usage as usage_mod
from collector import attributes as A
from collector import otlp
from collector.ingest import from_records
from collector.store import Store

CHUNK_ROWS = 5000  # rows per transaction when loading files

_FIELDS = {
    "route": A.ROUTE,
    "replica": A.REPLICA,
    "session_key": A.SESSION_KEY,
    "prompt_version": A.PROMPT_VERSION,
    "schema_version": A.SCHEMA_VERSION,
    "ttft_ms": A.TTFT_MS,
    "conversation_id": A.CONVERSATION_ID,
    "provider": A.PROVIDER,
}


class RecordError(ValueError):
    """A line that is neither an OTLP export nor a request record."""


def _time_ns(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value * 1e9) if value < 1e12 else int(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1e9)
    raise RecordError("a request record needs 'time' (ISO 8601 or epoch seconds)")


def request_record(
    obj: dict, capture: bool = True, memo: fingerprint.TokenMemo | None = None
) -> otlp.Record:
    """One logged request ─► a Record with the attributes the instrumentation would set."""
    try:
        parsed = prompt.parse(obj)
    except prompt.PromptError as exc:
        raise RecordError(str(exc)) from None
    tok = tokens.resolve(parsed.model)
    fp = fingerprint.fingerprint(parsed, tok, memo=memo)
    response = obj.get("response") or {}
    use = usage_mod.from_provider(obj.get("usage") or response)
    attrs: dict[str, Any] = {
        A.REQUEST_MODEL.name: parsed.model,
        A.OPERATION.name: "chat",
        A.PROVIDER.name: providers.provider_for(parsed.format, parsed.model),
        **A.fingerprint_attributes(fp),
    }
    for key, attr in _FIELDS.items():
        if obj.get(key) is not None:
            attrs[attr.name] = obj[key]
    for attr, value in (
        (A.INPUT_TOKENS, use.prompt_tokens),
        (A.CACHE_READ, use.cached_tokens),
        (A.CACHE_CREATION, use.cache_write_tokens),
        (A.OUTPUT_TOKENS, use.output_tokens),
    ):
        if value is not None:
            attrs[attr.name] = value
    verdict = usage_mod.verdict(response)
    if verdict:
        attrs[A.PROVIDER_VERDICT.name] = json.dumps(verdict)
    if capture:
        attrs[A.CONTENT.name] = parsed.text
    start = _time_ns(obj.get("time", obj.get("timestamp")))
    rid = str(
        obj.get("id")
        or hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=12).hexdigest()
    )
    return otlp.Record(
        "record",
        "",
        "",
        "",
        f"chat {parsed.model}",
        3,
        start,
        start,
        0,
        "",
        attrs,
        {"service.name": obj.get("service")},
        [],
        id=rid,
    )


def read_lines(lines: Iterator[str], capture: bool = True) -> Iterator[otlp.Decoded]:
    """Decode each line: an OTLP-JSON export or a request record."""
    memo = fingerprint.TokenMemo()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise RecordError("expected a JSON object")
            if "resourceSpans" in obj or "resource_spans" in obj:
                yield otlp.decode_traces_json(obj)
            elif "resourceLogs" in obj or "resource_logs" in obj:
                yield otlp.decode_logs_json(obj)
            else:
                yield otlp.Decoded([request_record(obj, capture, memo)])
        except (ValueError, otlp.DecodeError) as exc:
            raise RecordError(f"line {number}: {exc}") from None


def ingest_file(
    store: Store, path: str, capture: bool, advance: Callable[[int], None] = lambda n: None
) -> tuple[int, int]:
    """Stream one file into the store, a transaction per chunk: (rows stored, skipped)."""
    stored = skipped = 0
    pending: list[otlp.Record] = []

    def flush() -> None:
        nonlocal stored, skipped
        prepared = from_records(otlp.Decoded(pending))
        stored += store.insert(prepared.frame, prepared.contents)
        skipped += prepared.skipped
        pending.clear()

    def lines() -> Iterator[str]:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                advance(len(line.encode()))
                yield line

    for decoded in read_lines(lines(), capture):
        pending.extend(decoded.records)
        if len(pending) >= CHUNK_ROWS:
            flush()
    flush()
    return stored, skipped
