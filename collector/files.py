"""Files of JSON lines, plain or gzip-compressed: the request records `cachediag
generate` writes and `ingest` / `replay` read, and OTLP-JSON exports."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterator
from typing import IO, BinaryIO, TextIO

GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def reading(path: str) -> Iterator[tuple[BinaryIO, IO[bytes]]]:
    """A file opened to read, gzip or not (told apart by its first bytes, not its name):
    (the file as stored, whose position says how far reading got; its content)."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        yield raw, gzip.GzipFile(fileobj=raw) if compressed else raw


def writing(path: str) -> TextIO:
    """A file opened to write text, gzip-compressed when its name ends in .gz."""
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")  # noqa: SIM115 (the caller closes it)
