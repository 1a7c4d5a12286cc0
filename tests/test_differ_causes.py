"""The hard cases of issue 18, each in the three formats: line endings, a trailing
newline, counters and presigned URLs, dropped redacted reasoning, reordered documents."""

from __future__ import annotations

import copy

import pytest

from analysis import region
from analysis.compare import compare
from tests.cases import FORMATS, base_spec, build
from tests.hard_cases import HARD, hard_pair

# The segment each hard case must name, per format.
SEGMENT = {
    "crlf_tool_result": {
        "openai_chat": "messages[3].content",
        "openai_responses": "input[3]",
        "anthropic": "messages[2].content[0]",
    },
    "system_trailing_newline": {
        "openai_chat": "messages[0].content",
        "openai_responses": "instructions",
        "anthropic": "system[0]",
    },
    "tool_description_counter": {f: "tools[0]" for f in FORMATS},
    "presigned_url": {
        "openai_chat": "messages[4].content",
        "openai_responses": "input[4]",
        "anthropic": "messages[3].content[0]",
    },
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_case_in_every_format(name, fmt):
    a, b = hard_pair(name, fmt)
    result = compare(a, b)
    assert (result.cause, result.segment, result.side) == (HARD[name][0], SEGMENT[name][fmt], "a")
    assert result.first_diff_token > 0 and result.tokens_a > result.first_diff_token


def test_presigned_url_names_the_changed_parameter():
    result = compare(*hard_pair("presigned_url", "openai_chat"))
    assert "signed_url 'X-Amz-Date=20261130T101500Z' → 'X-Amz-Date=20261130T104500Z'" in (
        result.explanation
    )


def test_counter_explanation_and_a_policy_number_stays_a_change():
    result = compare(*hard_pair("tool_description_counter", "anthropic"))
    assert "Calls so far: 41" in result.explanation
    assert region.incremented("within 30 days", "within 31 days") == "30 → 31"
    assert region.incremented("within 30 days", "within 45 days") is None
    assert region.incremented("v 9 and 1", "v 10 and 2") is None


def test_whitespace_at_the_end_of_a_tool_description_names_the_tool():
    a, b = base_spec(), base_spec()
    name, text, schema = b["tools"][1]
    b["tools"][1] = (name, text + " ", schema)
    for fmt in FORMATS:
        result = compare(build(fmt, a), build(fmt, b))
        assert (result.cause, result.segment) == ("whitespace", "tools[1]"), fmt


THINKING = "The user wants order status; call get_order."
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
ENCRYPTED = "gAAAAABnXyZ0aW5nIGVuY3J5cHRlZCByZWFzb25pbmc="


def _reasoning_pair(fmt: str, variant: str) -> tuple[dict, dict]:
    """A has reasoning in the first assistant turn that B drops (three ways per format)."""
    a = build(fmt, base_spec())
    b = copy.deepcopy(a)
    if fmt == "anthropic":
        think = {"type": "thinking", "thinking": THINKING, "signature": "sig"}
        redacted = {"type": "redacted_thinking", "data": REDACTED}
        call = a["messages"][1]["content"][-1]
        before, after = {
            "first": ([redacted, think, call], [think, call]),
            "second": ([think, redacted, call], [think, call]),
            "only": ([redacted, call], [call]),
        }[variant]
        a["messages"][1]["content"], b["messages"][1]["content"] = before, after
    elif fmt == "openai_responses":
        item = {"type": "reasoning", "id": "rs_0", "summary": [], "encrypted_content": ENCRYPTED}
        if variant == "first":  # an encrypted-only item before the summarised one
            a["input"].insert(1, item)
        elif variant == "second":  # the encrypted content stripped, the summary kept
            a["input"][1]["encrypted_content"] = ENCRYPTED
            b["input"][1] = copy.deepcopy(a["input"][1])
            del b["input"][1]["encrypted_content"]
        else:
            del b["input"][1]
    else:
        field = {"first": "reasoning", "second": "reasoning_content", "only": "reasoning"}
        a["messages"][2][field[variant]] = a["messages"][2].pop("reasoning_content")
        b["messages"][2] = {k: v for k, v in a["messages"][2].items() if "reasoning" not in k}
    return a, b


@pytest.mark.parametrize("variant", ["first", "second", "only"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_dropped_reasoning_blocks(fmt, variant):
    result = compare(*_reasoning_pair(fmt, variant))
    assert (result.cause, result.side) == ("reasoning_dropped", "a")
    assert result.segment.startswith("input[1]" if fmt == "openai_responses" else "messages[")


def _document(fmt: str, i: int) -> dict:
    data = f"Chapter {i + 1}. Returns need the original receipt."
    if fmt == "anthropic":
        source = {"type": "text", "media_type": "text/plain", "data": data}
        return {"type": "document", "source": source, "title": f"Report 2026-11-0{i + 1}"}
    pdf = f"data:application/pdf;base64,JVBERi0xLjQK{i}{'A' * 40}"
    if fmt == "openai_chat":
        return {"type": "file", "file": {"filename": f"r{i}.pdf", "file_data": pdf}}
    return {"type": "input_file", "filename": f"r{i}.pdf", "file_data": pdf}


def _with_documents(fmt: str, order: list[int]) -> dict:
    body = build(fmt, base_spec())
    text = {"type": "input_text" if fmt == "openai_responses" else "text", "text": "Where?"}
    content = [*(_document(fmt, i) for i in order), text]
    key, at = {"openai_chat": ("messages", 1), "anthropic": ("messages", 0)}.get(fmt, ("input", 0))
    body[key][at]["content"] = content
    return body


@pytest.mark.parametrize("order", [[1, 0, 2], [2, 0, 1], [1, 2, 0]])
@pytest.mark.parametrize("fmt", FORMATS)
def test_reordered_document_blocks(fmt, order):
    result = compare(_with_documents(fmt, [0, 1, 2]), _with_documents(fmt, order))
    assert result.cause == "context_reordered"


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_of_a_hundred_documents_moved_to_the_end(fmt):
    base = _with_documents(fmt, list(range(100)))
    moved = _with_documents(fmt, [*range(1, 100), 0])
    assert compare(base, moved).cause == "context_reordered"


def test_windows_keep_a_value_whole_in_a_long_line():
    value_a, value_b = "x" * 3000 + "ab12" * 20, "x" * 3000 + "ab13" * 20
    wa, wb = region.windows(value_a + " tail", value_b + " tail")
    assert wa.startswith("x") and wa.endswith("tail") and len(wa) == len(wb)
    line = "word " * 1000
    wa, wb = region.windows(
        line + "2026-11-30T10:00:00Z" + line, line + "2026-11-30T10:05:00Z" + line
    )
    assert "2026-11-30T10:00:00Z" in wa and "2026-11-30T10:05:00Z" in wb and len(wa) < 400
