"""Replay recorded request records as real OTLP spans, through the instrumentation.

Each record becomes the span the in-service instrumentation would have made
for it (same fingerprint, attributes and usage), with the record's own start
time and TTFT, or with every time shifted so that the traffic ends now.
``speed`` paces the replay (1 = as recorded, 60 = a minute per second); 0
sends as fast as the exporter takes them.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime

from opentelemetry.trace import SpanKind

from analysis import prompt, providers
from collector import attributes as A
from collector import files, instrument
from collector.instrument.tracing import Call, Instrumentation

RESPONSE_S = 0.2  # span length after the first token, for records that do not say


def read_records(path: str) -> Iterator[dict]:
    """Request records from a JSONL file, gzip-compressed or not (told by its first
    bytes); ValueError naming the line for one that is not a JSON object of UTF-8."""
    with files.reading(path) as (_, handle):
        number = 0
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _record(line, number)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"the file breaks off after line {number:,} ({exc})") from None


def _record(line: bytes, number: int) -> dict:
    try:
        record = prompt.load_json(line.decode("utf-8"))
    except (UnicodeDecodeError, prompt.PromptError) as exc:
        raise ValueError(f"line {number}: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("request"), dict):
        raise ValueError(f"line {number}: expected a request record with a 'request' object")
    return record


def _epoch(record: dict) -> float:
    value = record.get("time")
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _provider(body: dict) -> str:
    """The provider its body's format and model point to."""
    try:
        fmt = prompt.detect(prompt.unwrap(body))
    except prompt.PromptError:
        fmt = "openai_chat"
    return providers.provider_for(fmt, body.get("model"))


def emit(inst: Instrumentation, record: dict, shift: float = 0.0) -> None:
    """One record ─► one finished span, at the record's time plus ``shift`` seconds."""
    body = record["request"]
    start = _epoch(record) + shift
    ttft = float(record.get("ttft_ms") or 0.0)
    model = body.get("model")
    attrs = A.record_attributes(record, _provider(body), str(model))
    attrs.update({A.TTFT_MS.name: ttft, A.TIME_TO_FIRST_CHUNK.name: ttft / 1000})
    attrs.update(inst.attributes(body, model))
    A.choose_routing_key(attrs)
    span = inst.tracer.start_span(
        f"chat {model}", kind=SpanKind.CLIENT, attributes=attrs, start_time=int(start * 1e9)
    )
    Call(span).set_response(record.get("response") or {"usage": record.get("usage")})
    span.end(end_time=int((start + ttft / 1000 + RESPONSE_S) * 1e9))


class Services:
    """One instrumentation (one service.name) per service the records name, made on demand."""

    def __init__(
        self, endpoint: str, headers: dict[str, str] | None = None, capture_content: bool = False
    ) -> None:
        self.endpoint, self.headers, self.capture = endpoint, headers, capture_content
        self._made: dict[str, Instrumentation] = {}

    def __call__(self, name: str) -> Instrumentation:
        if name not in self._made:
            self._made[name] = instrument.setup(
                name,
                self.endpoint,
                headers=self.headers,
                max_queue_size=65_536,
                capture_content=self.capture,
            )
        return self._made[name]

    def finish(self) -> tuple[bool, int]:
        """Flush and shut every one down: (all acknowledged, spans dropped)."""
        ok = all(inst.flush() for inst in self._made.values())
        dropped = sum(inst.dropped_spans() for inst in self._made.values())
        for inst in self._made.values():
            inst.shutdown()
        return ok, dropped


def replay(
    instruments: Callable[[str], Instrumentation],
    records: Iterator[dict],
    speed: float = 0.0,
    now: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Send every record through the instrumentation of its service; returns the count."""
    if now:
        records = list(records)
    shift = time.time() - _epoch(records[-1]) if now and records else 0.0
    first_record = first_wall = None
    sent = 0
    for record in records:
        if speed > 0:
            at = _epoch(record)
            first_record = at if first_record is None else first_record
            first_wall = time.monotonic() if first_wall is None else first_wall
            delay = (at - first_record) / speed - (time.monotonic() - first_wall)
            if delay > 0:
                time.sleep(delay)  # pacing the replay as recorded
        emit(instruments(record.get("service") or "replay"), record, shift)
        sent += 1
        progress(1)
    return sent
