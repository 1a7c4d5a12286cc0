"""One export (or file) ─► decoded records ─► a frame of request rows."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from collector import mapping, otlp
from collector.store.database import Store


@dataclass
class Prepared:
    """Rows ready for the writer, and what did not become rows."""

    frame: pl.DataFrame
    contents: list[tuple[str, str]]
    records: int
    skipped: int  # not LLM calls
    rejected: int  # malformed
    error: str


def from_records(decoded: otlp.Decoded, keep_content: bool = True) -> Prepared:
    """Map decoded records to a frame; records that are not LLM calls are counted, and
    so are records whose values cannot be stored (rejected: the others still are).
    Without ``keep_content`` only hashes are kept: no captured prompt of anyone's."""
    rows, contents, skipped = [], [], 0
    rejected, error = decoded.rejected, decoded.error
    for record in decoded.records:
        try:
            mapped = mapping.map_record(record, keep_content)
        except mapping.Rejected as exc:
            rejected += 1
            error = otlp.brief(f"{record.signal} {_label(record)}: {exc}")
            continue
        if mapped is None:
            skipped += 1
            continue
        row, content = mapped
        rows.append(row)
        if content is not None and keep_content:
            contents.append((row["id"], content))
    return Prepared(Store.frame(rows), contents, len(decoded.records), skipped, rejected, error)


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
