"""One export (or file) ─► decoded records ─► a frame of request rows."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from collector import mapping, otlp
from collector.store.database import Store


@dataclass
class Prepared:
    """Rows ready for the writer, and what did not become rows."""

    frame: pl.DataFrame  # LLM calls
    contents: list[tuple[str, str]]
    records: int
    skipped: int  # no GenAI record, or a log record that is neither a call nor of one
    rejected: int  # malformed
    error: str
    other: int = 0  # GenAI work that is no LLM call (agents, tools, embeddings)
    parts: pl.DataFrame | None = None  # what enriches a call (log records, stream tails)


def from_records(decoded: otlp.Decoded, keep_content: bool = True) -> Prepared:
    """Map decoded records to a frame of calls and one of parts (what enriches a call:
    see ``collector.mapping``); records that are no GenAI call are counted, and so are
    records whose values cannot be stored (rejected: the others still are). Without
    ``keep_content`` only hashes are kept: no captured prompt of anyone's."""
    rows, parts, contents, skipped, other = [], [], [], 0, 0
    rejected, error = decoded.rejected, decoded.error
    for record in decoded.records:
        try:
            where, mapped = place(record, keep_content)
        except mapping.Rejected as exc:
            rejected += 1
            error = otlp.brief(f"{record.signal} {_label(record)}: {exc}")
            continue
        skipped += where == SKIPPED
        other += where == mapping.OTHER
        if mapped is None:
            continue
        row, content = mapped
        (parts if where == mapping.PART else rows).append(row)
        if content is not None and keep_content:
            contents.append((row["id"], content))
    frame, part_frame = Store.frame(rows), Store.frame(parts) if parts else None
    return Prepared(
        frame, contents, len(decoded.records), skipped, rejected, error, other, part_frame
    )


SKIPPED = "skipped"


def place(
    record: otlp.Record, keep_content: bool = True
) -> tuple[str, tuple[dict, str | None] | None]:
    """Where a record goes: a CALL or a PART (with its row and captured content), OTHER
    GenAI work or SKIPPED (no row). A log record that is a whole call is a CALL; one that
    names no span to enrich is skipped. Raises ``mapping.Rejected`` as ``map_record``."""
    kind = mapping.classify(record)
    if kind is None or kind == mapping.OTHER:
        return kind or SKIPPED, None
    mapped = mapping.map_record(record, keep_content)
    if mapped is None:
        return SKIPPED, None
    if kind == mapping.PART and record.signal == "log" and mapping.is_complete(mapped[0]):
        return mapping.CALL, mapped  # a log record that is a whole call by itself
    if kind == mapping.PART and not (record.trace_id and record.span_id):
        return SKIPPED, None  # of no call we could find
    return kind, mapped


def _label(record: otlp.Record) -> str:
    """How an error message names a record: its ids and name, escaped and bounded."""
    ident = record.id or record.trace_id + record.span_id
    return " ".join(repr(v)[:80] for v in (ident, record.name) if v) or "without id"


def prepare(
    sig: str,
    content_type: str,
    encoding: str | None,
    body: bytes,
    limit: int,
    keep_content: bool = True,
) -> Prepared:
    """Inflate, decode and map one OTLP export (runs in a worker process when configured)."""
    decoded = otlp.decode(sig, content_type, otlp.inflate(body, encoding, limit))
    return from_records(decoded, keep_content)
