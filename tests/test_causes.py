"""Every cause, in every format, with the segment the contract names."""

from __future__ import annotations

import copy

import pytest

from analysis import causes
from analysis.compare import compare
from analysis.prompt import parse
from tests.cases import FORMATS, SEGMENT, base_spec, build, pair


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cause", sorted(SEGMENT))
def test_cause_in_every_format(cause, fmt):
    a, b = pair(cause, fmt)
    result = compare(a, b)
    assert (result.cause, result.segment) == (cause, SEGMENT[cause][fmt])
    assert result.explanation and result.fix
    assert result.identical == (cause in ("identical", "model_changed"))


def test_every_shape_cause_is_covered():
    assert set(SEGMENT) == set(causes.SHAPE_CAUSES)


def _spec_pair(edit):
    a = base_spec()
    b = copy.deepcopy(a)
    edit(b)
    return parse(build("openai_chat", a)), parse(build("openai_chat", b))


def _classify(a, b):
    from analysis.differ import common_prefix_length

    return causes.classify(a, b, common_prefix_length(a.text, b.text))


def test_policy_number_change_is_not_a_dynamic_value():
    a, b = _spec_pair(lambda s: s.update(system=s["system"].replace("30 days", "45 days")))
    assert _classify(a, b).code == "system_changed"


@pytest.mark.parametrize(
    "old, new",
    [
        ("Order 1182 has shipped.", "Order 1182 has shipped (req_8f3a9c21b7)."),
        ("Where is my order 1182?", "Where is my order 1182? Now: 10:32 PM"),
    ],
)
def test_dynamic_value_in_history_is_only_dynamic_when_both_sides_have_one(old, new):
    def edit(s):
        for t in s["turns"]:
            if t.get("text") == old:
                t["text"] = new

    a, b = _spec_pair(edit)
    assert _classify(a, b).code == "history_rewritten"  # the value was added, not changed


def test_dynamic_request_id_inside_a_tool_schema():
    def with_id(value):
        def edit(s):
            s["tools"][0][2]["description"] = f"Look up an order. trace {value}"

        return edit

    a0, b0 = _spec_pair(with_id("4bf92f3577b34da6a3ce929d0e0e4736"))
    _, b1 = _spec_pair(with_id("0af7651916cd43dd8448eb211c80319c"))
    cause = _classify(b0, b1)
    assert cause.code == "dynamic_value" and cause.segment == "tools[0]"
    assert "hex" in cause.explanation


def test_removed_tool_names_a_tool_of_a():
    a, b = _spec_pair(lambda s: s["tools"].pop(1))
    cause = _classify(a, b)
    assert (cause.code, cause.segment, cause.side) == ("tools_changed", "tools[1]", "a")


def test_subset_of_tools_in_new_order_is_tools_changed():
    a, b = _spec_pair(lambda s: s.update(tools=[s["tools"][2], s["tools"][0]]))
    assert _classify(a, b).code == "tools_changed"


def test_truncated_history_is_history_rewritten():
    a, b = _spec_pair(lambda s: s.update(turns=s["turns"][:2]))
    cause = _classify(a, b)
    assert (cause.code, cause.segment) == ("history_rewritten", "messages[3].content")


def test_reordered_documents_as_separate_blocks():
    docs = [
        "<document>alpha facts</document>",
        "<document>beta facts</document>",
        "<document>gamma facts</document>",
    ]

    def body(order):
        content = [{"type": "text", "text": docs[i]} for i in order]
        content.append({"type": "text", "text": "Question?"})
        return {
            "model": "claude-sonnet-4-5",
            "system": "Answer from the documents.",
            "messages": [{"role": "user", "content": content}],
        }

    a, b = parse(body([0, 1, 2])), parse(body([1, 0, 2]))
    cause = _classify(a, b)
    assert (cause.code, cause.segment) == ("context_reordered", "messages[0].content[0]")


def test_reordered_search_hits_inside_a_tool_result():
    hits = [{"title": "a", "score": 0.9}, {"title": "b", "score": 0.8}]

    def body(order):
        return {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "find"},
                {
                    "role": "tool",
                    "tool_call_id": "c1",
                    "content": str([hits[i] for i in order]).replace("'", '"'),
                },
            ],
        }

    cause = _classify(parse(body([0, 1])), parse(body([1, 0])))
    assert cause.code == "context_reordered"


def test_emptied_reasoning_is_reasoning_dropped():
    def edit(s):
        s["turns"][1]["reasoning"] = ""

    a, b = _spec_pair(edit)
    cause = _classify(a, b)
    assert (cause.code, cause.segment) == ("reasoning_dropped", "messages[2].reasoning_content")


def test_edited_reasoning_is_history_rewritten():
    def edit(s):
        s["turns"][1]["reasoning"] = "Something else entirely."

    a, b = _spec_pair(edit)
    assert _classify(a, b).code == "history_rewritten"


def test_model_change_wins_over_prompt_changes():
    def edit(s):
        s["model"] = "gpt-4.1"
        s["system"] = "Different."

    a, b = _spec_pair(edit)
    cause = _classify(a, b)
    assert (cause.code, cause.segment) == ("model_changed", None)
    assert "gpt-4o → gpt-4.1" in cause.explanation
