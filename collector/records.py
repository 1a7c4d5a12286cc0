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

import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from analysis import fingerprint, prompt, providers
from analysis import usage as usage_mod
from collector import attributes as A
from collector import files, ingest, mapping, otlp
from collector.bodies import fingerprint_body
from collector.store.database import Store

CHUNK_ROWS = 5000  # rows per transaction when loading files...
CHUNK_BYTES = 16 << 20  # ...or fewer: input bytes per transaction, so memory stays flat
MAX_LINE_BYTES = 64 << 20  # a longer line is refused without being held in memory
PROGRESS_BYTES = 1 << 20  # report progress every this many bytes read
BAD_LINES_KEPT = 5  # refused lines named one by one; the rest are counted


class RecordError(ValueError):
    """A line that is neither an OTLP export nor a request record."""


def _time_ns(value: Any) -> int:
    ns = None
    if isinstance(value, int | float) and math.isfinite(value):
        ns = int(value * 1e9) if abs(value) < 1e12 else int(value)
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        ns = int(parsed.timestamp() * 1e9)
    if ns is None or not 0 <= ns < 2**63:
        raise RecordError("a request record needs 'time' (ISO 8601 or epoch seconds, 1970-2262)")
    return ns


def request_record(
    obj: dict, capture: bool = True, memo: fingerprint.TokenMemo | None = None
) -> otlp.Record:
    """One logged request ─► a Record with the attributes the instrumentation would set."""
    try:
        parsed, fingerprinted = fingerprint_body(obj, memo=memo)
    except prompt.PromptError as exc:
        raise RecordError(str(exc)) from None
    response = obj.get("response") or {}
    use = usage_mod.from_provider(obj.get("usage") or response)
    provider = providers.provider_for(parsed.format, parsed.model)
    attrs = A.record_attributes(obj, provider, parsed.model)
    attrs.update(fingerprinted)
    attrs.update(A.usage_attributes(use))
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
        signal="record",
        name=f"chat {parsed.model}",
        kind=3,
        start_ns=start,
        end_ns=start,
        attributes=attrs,
        resource={"service.name": obj.get("service")},
        id=rid,
    )


@dataclass
class FileReport:
    """What loading one file did: rows stored, lines refused and why, where it stopped."""

    stored: int = 0
    skipped: int = 0  # records that are not LLM calls
    lines: int = 0
    bad: int = 0
    first_bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    stopped: str | None = None  # why reading ended before the end of the file

    def refuse(self, number: int, reason: str) -> None:
        self.bad += 1
        if len(self.first_bad) < BAD_LINES_KEPT:
            self.first_bad.append((number, reason))


@dataclass
class _Line:
    """The mapped rows of one good line, kept until its chunk is stored."""

    number: int
    rows: list[dict[str, Any]]
    contents: list[tuple[str, str]]
    skipped: int
    parts: list[dict[str, Any]] = field(default_factory=list)  # what enriches a call


class _Stopped(Exception):
    """Reading the file ended early (a truncated or corrupt gzip stream, an I/O error)."""


def _raw_lines(path: str, advance: Callable[[int], None]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of a plain or gzip file (told apart by its first bytes, not
    its name); None for a line longer than MAX_LINE_BYTES, which is skipped unread.
    Raises _Stopped after the last complete line when the stream breaks off."""
    with files.reading(path) as (raw, handle):
        number = done = 0
        try:
            while line := handle.readline(MAX_LINE_BYTES):
                number += 1
                if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    line = None
                yield number, line
                if raw.tell() - done >= PROGRESS_BYTES:
                    advance(raw.tell() - done)
                    done = raw.tell()
        except (EOFError, OSError, zlib.error) as exc:
            what = "ends early (truncated)" if isinstance(exc, EOFError) else f"breaks off ({exc})"
            raise _Stopped(f"the file {what} after line {number:,}") from None
        finally:
            advance(raw.tell() - done)


def _decode(raw: bytes, capture: bool, memo: fingerprint.TokenMemo) -> otlp.Decoded:
    """One line ─► its records: an OTLP-JSON export or a request record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "convert the file, e.g. iconv -f latin1 -t utf-8"
        ) from None
    obj = prompt.load_json(text)
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object")
    if "resourceSpans" in obj or "resource_spans" in obj:
        prompt.check_depth(obj)
        return otlp.decode_traces_json(obj)
    if "resourceLogs" in obj or "resource_logs" in obj:
        prompt.check_depth(obj)
        return otlp.decode_logs_json(obj)
    return otlp.Decoded([request_record(obj, capture, memo)])  # parse checks the body


def _mapped(number: int, decoded: otlp.Decoded, report: FileReport, capture: bool) -> _Line:
    """A line's records as rows; records refused inside an otherwise good line (a span
    out of range in an OTLP export) cost only themselves, and name the line."""
    line = _Line(number, [], [], 0)
    refused, reason = decoded.rejected, decoded.error
    for record in decoded.records:
        try:
            where, found = ingest.place(record, capture)
        except mapping.Rejected as exc:
            refused, reason = refused + 1, reason or str(exc)
            continue
        if found is None:
            line.skipped += 1
            continue
        row, content = found
        (line.parts if where == mapping.PART else line.rows).append(row)
        if content is not None and capture:
            line.contents.append((row["id"], content))
    if refused:
        total = len(decoded.records) + decoded.rejected
        report.refuse(number, f"{refused} of {total} records refused: {reason}"[:200])
    return line


# RecursionError: a last guard for JSON held inside string attributes, which
# check_depth cannot see; everything a line itself nests is bounded by check_depth.
_LINE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)


def read_lines(
    raw_lines: Iterator[tuple[int, bytes | None]], report: FileReport, capture: bool = True
) -> Iterator[tuple[_Line, int]]:
    """Each good line mapped to rows, with its size in bytes; each bad one goes to
    ``report`` with its number and reason, and reading goes on."""
    memo = fingerprint.TokenMemo()
    for number, raw in raw_lines:
        report.lines = number
        if raw is None:
            report.refuse(number, f"longer than {MAX_LINE_BYTES >> 20} MiB")
            continue
        if not raw.strip():
            continue
        try:
            line = _mapped(number, _decode(raw, capture, memo), report, capture)
        except _LINE_ERRORS as exc:
            report.refuse(number, str(exc).splitlines()[0][:200] or type(exc).__name__)
            continue
        yield line, len(raw)


# What a line's own values can make the frame or the insert raise; anything else
# (out of memory, a full disk) is the store's trouble and stops the load.
_STORE_ERRORS = (
    TypeError,
    ValueError,
    OverflowError,
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
)


def _insert(store: Store, lines: list[_Line], report: FileReport) -> None:
    rows = [row for line in lines for row in line.rows]
    parts = [row for line in lines for row in line.parts]
    contents = [c for line in lines for c in line.contents]
    report.stored += store.insert(
        Store.frame(rows), contents, Store.frame(parts) if parts else None
    )
    report.skipped += sum(line.skipped for line in lines)


def _store(store: Store, lines: list[_Line], report: FileReport) -> None:
    """One transaction for the chunk; if it fails, one per line, so that only the
    lines whose rows cannot be stored are refused."""
    try:
        _insert(store, lines, report)
        return
    except _STORE_ERRORS:
        pass
    for line in lines:
        try:
            _insert(store, [line], report)
        except _STORE_ERRORS as exc:
            report.refuse(line.number, f"cannot be stored ({str(exc).splitlines()[0][:200]})")


def ingest_file(
    store: Store,
    path: str,
    capture: bool,
    advance: Callable[[int, int], None] = lambda read, rows: None,
) -> FileReport:
    """Stream one file into the store, a transaction per chunk of at most CHUNK_ROWS
    rows or CHUNK_BYTES of input, so memory stays flat whatever the file's size.
    ``advance(bytes read since the last call, rows stored so far)`` tells progress."""
    report = FileReport()
    pending: list[_Line] = []
    rows = size = 0
    raw_lines = _raw_lines(path, lambda read: advance(read, report.stored))
    try:
        for line, length in read_lines(raw_lines, report, capture):
            pending.append(line)
            rows, size = rows + len(line.rows), size + length
            if rows >= CHUNK_ROWS or size >= CHUNK_BYTES:
                _store(store, pending, report)
                pending, rows, size = [], 0, 0
    except _Stopped as exc:
        report.stopped = str(exc)
    _store(store, pending, report)
    advance(0, report.stored)
    return report
