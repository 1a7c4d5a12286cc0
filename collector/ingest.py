"""One export (or file) ─► decoded records ─► a frame of request rows."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from collector import mapping, otlp
from collector.store import Store


@dataclass
class Prepared:
    """Rows ready for the writer, and what did not become rows."""

    frame: pl.DataFrame
    contents: list[tuple[str, str]]
    records: int
    skipped: int  # not LLM calls
    rejected: int  # malformed
    error: str


def from_records(decoded: otlp.Decoded) -> Prepared:
    """Map decoded records to a frame; records that are not LLM calls are counted."""
    rows, contents = [], []
    for record in decoded.records:
        mapped = mapping.map_record(record)
        if mapped is None:
            continue
        row, content = mapped
        rows.append(row)
        if content is not None:
            contents.append((row["id"], content))
    skipped = len(decoded.records) - len(rows)
    return Prepared(
        Store.frame(rows), contents, len(decoded.records), skipped, decoded.rejected, decoded.error
    )


def prepare(sig: str, content_type: str, encoding: str | None, body: bytes, limit: int) -> Prepared:
    """Inflate, decode and map one OTLP export (runs in a worker process when configured)."""
    return from_records(otlp.decode(sig, content_type, otlp.inflate(body, encoding, limit)))
