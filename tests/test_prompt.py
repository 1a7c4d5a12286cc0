"""Rendering contract: content kept exactly, envelope from a fixed template."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import jsonpath
from analysis.prompt import (
    FORMATS,
    MAX_DEPTH,
    PromptError,
    check_depth,
    detect,
    load_json,
    parse,
)
from tests.cases import base_spec, build


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_is_detected(fmt):
    assert detect(build(fmt, base_spec())) == fmt
    assert parse(build(fmt, base_spec())).format == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_cache_order_is_tools_then_system_then_conversation(fmt):
    kinds = [s.kind for s in parse(build(fmt, base_spec())).segments]
    assert kinds[:4] == ["tool", "tool", "tool", "system"]
    assert "tool" not in kinds[4:] and "system" not in kinds[4:]
    assert {"reasoning", "tool_call", "tool_result", "message"} <= set(kinds[4:])


@pytest.mark.parametrize("fmt", FORMATS)
def test_envelope_changes_render_the_same_text(fmt):
    body = build(fmt, base_spec())
    text = parse(body).text
    shuffled = dict(reversed(list(body.items())))
    shuffled.update(temperature=0.7, max_tokens=99, stream=True, metadata={"user": "u1"})
    for i, msg in enumerate(shuffled.get("messages") or shuffled.get("input")):
        shuffled[("messages" if "messages" in shuffled else "input")][i] = dict(
            reversed(list(msg.items()))
        )
    pretty = json.loads(json.dumps(shuffled, indent=4, ensure_ascii=True))
    assert parse(pretty).text == text


def test_cache_control_markers_are_envelope():
    body = build("anthropic", base_spec())
    marked = copy.deepcopy(body)
    marked["tools"][-1]["cache_control"] = {"type": "ephemeral"}
    marked["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    del body["system"][0]["cache_control"]
    assert parse(marked).text == parse(body).text
    assert parse(marked).tools[-1].cache_control
    assert parse(marked).segments[3].cache_control  # system block


def test_schema_key_order_is_content():
    body = build("openai_chat", base_spec())
    props = body["tools"][1]["function"]["parameters"]["properties"]
    other = copy.deepcopy(body)
    other["tools"][1]["function"]["parameters"]["properties"] = dict(reversed(props.items()))
    assert parse(other).text != parse(body).text


def test_tool_call_arguments_are_kept_exactly():
    body = build("openai_chat", base_spec())
    other = copy.deepcopy(body)
    other["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"order_id":  "1182"}'
    assert parse(other).text != parse(body).text
    assert '{\\"order_id\\":  \\"1182\\"}' in parse(other).text


def test_logged_record_is_unwrapped():
    body = build("openai_responses", base_spec())
    record = {"timestamp": "x", "request": {"body": body}, "response": {"usage": {}}}
    assert parse(record).text == parse(body).text


@pytest.mark.parametrize(
    "bad, message",
    [
        ([1, 2], "JSON object"),
        ({"foo": 1}, "no request body"),
        ({"messages": [{"content": "hi"}]}, "not a valid openai_chat"),
        ({"messages": "hello"}, "must be a list"),
        ({"messages": 5}, "must be a list, not int"),
        ({"messages": [5]}, "not a valid"),
        ({"messages": [{"role": "user", "content": 5}]}, "must be a string"),
        (
            {"input": [{"role": "user", "content": 5, "type": "message"}], "tools": [7]},
            "not a valid",
        ),
    ],
)
def test_bad_bodies_raise_prompt_error(bad, message):
    with pytest.raises(PromptError, match=message):
        parse(bad)


def test_forced_format_overrides_detection():
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert parse(body, "anthropic").format == "anthropic"
    with pytest.raises(PromptError, match="unknown format"):
        parse(body, "gemini")


def test_segment_paths_and_deep_paths():
    prompt = parse(build("openai_chat", base_spec()))
    paths = [s.path for s in prompt.segments]
    assert paths[:4] == ["tools[0]", "tools[1]", "tools[2]", "messages[0].content"]
    assert "messages[2].reasoning_content" in paths and "messages[2].tool_calls" in paths
    tool = prompt.segments[1]
    offset = tool.text.index('"amount"') + 2
    assert tool.locate(offset) == "tools[1].function.parameters.properties"
    offset = tool.text.index('"number"') + 1
    assert tool.locate(offset) == "tools[1].function.parameters.properties.amount.type"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


_PART = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _walk(value, path):
    """Resolve a path produced by jsonpath.child back to its value."""
    assert path.startswith("$")
    rest = path[1:]
    while rest:
        match = _PART.match(rest)
        name, index, quoted = match.groups()
        value = value[int(index)] if index else value[name or json.loads(quoted)]
        rest = rest[match.end() :]
    return value


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_locate_finds_a_value_that_holds_the_offset(value):
    text = jsonpath.dump(value)
    for offset in range(len(text)):
        path = jsonpath.locate(value, offset, "$")
        inner = jsonpath.dump(_walk(value, path))
        assert inner in text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
_part = st.sampled_from(
    ["messages", "tools", "input", "system", "instructions", "role", "content", "type"]
)
_body = st.recursive(
    _json,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_part, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_part, _body, min_size=1), st.sampled_from([None, *FORMATS]))
def test_any_json_is_a_prompt_or_a_prompt_error(body, fmt):
    try:
        prompt = parse(body, fmt)
    except PromptError:
        return
    prompt.text.encode("utf-8", "surrogatepass")  # what `cachediag render` prints


def test_nesting_is_bounded_before_anything_recurses():
    deep: dict = {"type": "string"}
    for _ in range(MAX_DEPTH):
        deep = {"a": deep}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [deep]}
    with pytest.raises(PromptError, match=f"deeper than {MAX_DEPTH}"):
        parse(body)
    check_depth([[[]]], limit=3)
    with pytest.raises(PromptError):
        check_depth([[[[]]]], limit=3)
    shallow = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"a": {"b": 1}}]}
    assert parse(shallow).tools


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("1" + "0" * 5000, "4300 digits"),
        ('{"a": ', "invalid JSON at line 1 column 7"),
    ],
)
def test_load_json_refuses_what_the_decoder_cannot_take(text, message):
    with pytest.raises(PromptError, match=message):
        load_json(text)


_FORK_WHILE_LOCKED = """
import os, signal, threading
from analysis import prompt
held = threading.Event()
def hold():
    with prompt._TOOL_CACHE._lock:
        held.set()
        threading.Event().wait(30)
threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a child stuck on the inherited lock dies of SIGALRM
    body = {"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "t"}}],
            "messages": [{"role": "user", "content": "hi"}]}
    prompt.parse(body)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_the_tool_cache_is_locked_can_render_tools():
    proc = subprocess.run(
        [sys.executable, "-c", _FORK_WHILE_LOCKED],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout.strip() == "0", proc.stderr
