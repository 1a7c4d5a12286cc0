"""Request bodies ─► ordered segments ─► the exact text a prefix cache sees.

Three formats are understood (detected automatically): OpenAI Chat
Completions, OpenAI Responses and Anthropic Messages. Segments come in the
order providers cache them: tools, then the system part, then the
conversation. Each segment renders as a marker line plus its body:

    <|tool|>
    {"type":"function","function":{"name":"get_weather",...}}

Prompt content (text, tool schemas with their key order, tool-call
arguments, reasoning) is kept exactly as sent; the envelope (top-level and
message key order, JSON formatting, ``cache_control``, sampling fields) comes
from the fixed template here, so changing only the envelope renders the same
text. Every segment ends in a newline and the next one starts with ``<|``, a
split that no tiktoken pre-tokenizer merges across, so segments can be
tokenized one by one and still match the whole text token for token.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import Any, NamedTuple

from analysis import jsonpath, retention

FORMATS = ("openai_chat", "openai_responses", "anthropic")
# Deepest nesting of a request body (upb's limit too): everything downstream walks
# JSON values recursively, so a deeper body is refused here, before any of it runs.
MAX_DEPTH = 100

# Keys that lead a tool or block, in this order; any others follow sorted.
_LEADING_KEYS = (
    "type",
    "id",
    "call_id",
    "tool_use_id",
    "name",
    "description",
    "parameters",
    "input_schema",
    "input",
    "arguments",
    "content",
    "output",
)
_ANTHROPIC_ONLY_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "document"}
_SYSTEM_ROLES = {"system", "developer"}
# What each top-level part must be when present (None is the same as absent).
_TOP_TYPES = {
    "messages": (list,),
    "tools": (list,),
    "input": (str, list),
    "system": (str, list),
    "instructions": (str,),
}


class PromptError(ValueError):
    """A body that is not a request of a known format."""


class Segment(NamedTuple):
    """One cacheable part of a request: where it lives, what it is, its text.

    A named tuple, not a dataclass: a long conversation makes hundreds of
    these per request on the instrumentation's hot path.
    """

    path: str
    kind: str  # tool | system | message | reasoning | tool_call | tool_result
    text: str
    body_start: int  # offset of the body inside ``text`` (after the marker line)
    value: Any = None  # the JSON value behind a JSON body; None for raw text
    cache_control: bool = False
    value_path: str | None = None  # path of ``value`` when it is not ``path`` itself

    @property
    def body(self) -> str:
        return self.text[self.body_start : -1]

    def locate(self, offset: int) -> str:
        """Deepest JSON path at character ``offset`` of this segment's text."""
        inner = offset - self.body_start
        if self.value is None or inner < 0:
            return self.path
        return jsonpath.locate(self.value, inner, self.value_path or self.path)


@dataclass(frozen=True)
class Prompt:
    """A parsed request: format, model and its segments in cache order."""

    format: str
    model: str | None
    segments: tuple[Segment, ...]
    cache_control_auto: bool = False  # Anthropic top-level automatic caching
    retention_s: int | None = None  # the cache lifetime the request asked for, if any

    @cached_property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    def starts(self) -> list[int]:
        """Character offset of each segment in ``text``."""
        return list(self._starts)

    @cached_property
    def _starts(self) -> tuple[int, ...]:
        lengths = (len(s.text) for s in self.segments[:-1])
        return (0, *accumulate(lengths)) if self.segments else ()

    @property
    def tools(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "tool"]


def load_json(text: str | bytes) -> Any:
    """JSON text ─► a value, or PromptError saying what is wrong with it (invalid JSON,
    nesting past what the decoder allows, an integer too long to convert)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # the C decoder's own depth bound; nothing of ours recursed yet
        raise PromptError("JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer past sys.get_int_max_str_digits()
        raise PromptError(f"unreadable JSON value ({str(exc).split(':')[0]})") from None


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """PromptError when ``value`` nests lists and objects deeper than ``limit``
    (walked with an explicit stack, so any depth is safe to check)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    raise PromptError(
                        f"the body nests deeper than {limit} levels; no provider accepts that"
                    )
                stack.append((child, depth + 1))


def parse(data: Any, fmt: str | None = None) -> Prompt:
    """Parse a request body (or a logged record holding one) into a Prompt.

    Anything that is not a request of a known format raises PromptError: wrong
    types anywhere, nesting deeper than MAX_DEPTH."""
    body = unwrap(data)
    check_depth(body)
    for key, types in _TOP_TYPES.items():
        if body.get(key) is not None and not isinstance(body[key], types):
            names = " or ".join("a string" if t is str else "a list" for t in types)
            raise PromptError(f"'{key}' must be {names}, not {type(body[key]).__name__}")
    builder = {"openai_chat": _chat, "openai_responses": _responses, "anthropic": _anthropic}
    try:
        fmt = fmt or detect(body)
        if fmt not in FORMATS:
            raise PromptError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        segments = tuple(builder[fmt](body))
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        what = f"{fmt} request" if fmt else "request"
        raise PromptError(f"not a valid {what} body ({_type_error(exc)})") from None
    model = body.get("model")
    auto = isinstance(body.get("cache_control"), dict)
    return Prompt(
        fmt, model if isinstance(model, str) else None, segments, auto, retention.asked(body)
    )


def _type_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    return str(exc)


def unwrap(data: Any) -> dict:
    """The request body, also out of a logged record under ``request`` or ``body``."""
    if not isinstance(data, dict):
        raise PromptError("expected a JSON object holding a request body")
    for _ in range(3):
        if "messages" in data or "input" in data or "instructions" in data:
            return data
        inner = data.get("request", data.get("body"))
        if not isinstance(inner, dict):
            break
        data = inner
    raise PromptError(
        "no request body found: expected 'messages' (Chat Completions, "
        "Anthropic Messages) or 'input' (Responses), or a record with 'request'"
    )


def detect(body: dict) -> str:
    """Guess the format of a request body."""
    if "messages" not in body:
        return "openai_responses"
    if "system" in body or str(body.get("model", "")).startswith("claude"):
        return "anthropic"
    if any(isinstance(t, dict) and "input_schema" in t for t in body.get("tools") or []):
        return "anthropic"
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in _ANTHROPIC_ONLY_BLOCKS for b in content
        ):
            return "anthropic"
    return "openai_chat"


# --- rendering helpers -------------------------------------------------------------------------


def _envelope(obj: dict) -> dict:
    """An envelope object with its keys in template order and cache_control removed."""
    keys = [k for k in _LEADING_KEYS if k in obj]
    keys += sorted(k for k in obj if k not in _LEADING_KEYS and k != "cache_control")
    return {k: obj[k] for k in keys}


def _has_cache_control(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("cache_control"), dict)


def _text_segment(path: str, kind: str, label: str, text: str, cc: bool = False) -> Segment:
    if not isinstance(text, str):
        raise TypeError(f"{path} must be a string")
    marker = f"<|{label}|>\n"
    return Segment(path, kind, f"{marker}{text}\n", len(marker), None, cc)


def _json_segment(
    path: str, kind: str, label: str, value: Any, cc: bool = False, value_path: str | None = None
) -> Segment:
    marker = f"<|{label}|>\n"
    text = f"{marker}{jsonpath.dump(value)}\n"
    return Segment(path, kind, text, len(marker), value, cc, value_path)


def _tool(path: str, tool: dict) -> Segment:
    value = _envelope(tool)
    if isinstance(value.get("function"), dict):
        value["function"] = _envelope(value["function"])
    return _json_segment(path, "tool", "tool", value, _has_cache_control(tool))


class _ToolCache:
    """Rendered tool lists by their exact JSON text: a service sends the same tools
    on every turn, and dumping them (C) costs half of rendering them (Python)."""

    SIZE = 64

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[Segment, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, tools: list) -> tuple[Segment, ...]:
        key = jsonpath.dump(tools)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        segments = tuple(_tool(f"tools[{i}]", tool) for i, tool in enumerate(tools))
        with self._lock:
            self._entries[key] = segments
            if len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)
        return segments


_TOOL_CACHE = _ToolCache()
# A child forked while another thread held the lock would wait on it forever.
os.register_at_fork(after_in_child=lambda: setattr(_TOOL_CACHE, "_lock", threading.Lock()))


def _tools(body: dict) -> Iterator[Segment]:
    tools = body.get("tools") or []
    if tools:
        yield from _TOOL_CACHE.render(tools)


def _block(path: str, role: str, kind: str, block: Any) -> Segment:
    """One content block: text raw, reasoning raw, anything else as JSON."""
    if not isinstance(block, dict):
        return _text_segment(path, kind, role, block)
    btype = block.get("type", "text")
    cc = _has_cache_control(block)
    if btype in ("text", "input_text", "output_text") and isinstance(block.get("text"), str):
        return _text_segment(path, kind, role, block["text"], cc)
    if btype == "thinking":
        return _text_segment(path, "reasoning", f"{role}:thinking", block.get("thinking", ""), cc)
    if btype == "redacted_thinking":
        return _text_segment(path, "reasoning", f"{role}:thinking", block.get("data", ""), cc)
    block_kind = {"tool_use": "tool_call", "tool_result": "tool_result"}.get(btype, kind)
    return _json_segment(path, block_kind, f"{role}:{btype}", _envelope(block), cc)


def _content(path: str, role: str, kind: str, content: Any) -> Iterator[Segment]:
    if isinstance(content, list):
        for j, block in enumerate(content):
            yield _block(f"{path}[{j}]", role, kind, block)
    elif content is not None:
        yield _text_segment(path, kind, role, content)


# --- formats -----------------------------------------------------------------------------------


def _chat(body: dict) -> Iterator[Segment]:
    yield from _tools(body)
    leading = True
    for i, msg in enumerate(body["messages"]):
        role = msg["role"]
        leading = leading and role in _SYSTEM_ROLES
        yield from _chat_message(f"messages[{i}]", msg, "system" if leading else "message")


def _chat_message(path: str, msg: dict, kind: str) -> Iterator[Segment]:
    role = msg["role"]
    emitted = False
    for field in ("reasoning_content", "reasoning"):
        if isinstance(msg.get(field), str):
            emitted = True
            yield _text_segment(f"{path}.{field}", "reasoning", f"{role}:reasoning", msg[field])
    label = f"tool_result {msg['tool_call_id']}" if msg.get("tool_call_id") else role
    kind = "tool_result" if role == "tool" else kind
    for seg in _content(f"{path}.content", label, kind, msg.get("content")):
        emitted = True
        yield seg
    calls = msg.get("tool_calls")
    if calls:
        emitted = True
        value = [_envelope({**c, "function": _envelope(c.get("function") or {})}) for c in calls]
        yield _json_segment(f"{path}.tool_calls", "tool_call", f"{role}:tool_calls", value)
    if not emitted:
        yield _text_segment(path, kind, role, "")


def _anthropic(body: dict) -> Iterator[Segment]:
    yield from _tools(body)
    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            yield _block(f"system[{j}]", "system", "system", block)
    elif system is not None:
        yield _text_segment("system", "system", "system", system)
    for i, msg in enumerate(body["messages"]):
        role = msg["role"]
        segs = list(_content(f"messages[{i}].content", role, "message", msg.get("content")))
        yield from segs or [_text_segment(f"messages[{i}]", "message", role, "")]


def _responses(body: dict) -> Iterator[Segment]:
    yield from _tools(body)
    if body.get("instructions") is not None:
        yield _text_segment("instructions", "system", "system", body["instructions"])
    items = body.get("input")
    if isinstance(items, str) or items is None:
        yield from _content("input", "user", "message", items)
        return
    leading = body.get("instructions") is None
    for i, item in enumerate(items):
        role = item.get("role") if isinstance(item, dict) else None
        leading = leading and role in _SYSTEM_ROLES
        yield _responses_item(f"input[{i}]", item, "system" if leading else "message")


def _responses_item(path: str, item: dict, kind: str) -> Segment:
    itype = item.get("type", "message")
    if itype == "message" and isinstance(item.get("content"), str):
        return _text_segment(path, kind, item["role"], item["content"])
    if itype == "message":
        return _json_segment(
            path, kind, item["role"], item["content"], value_path=f"{path}.content"
        )
    if itype == "reasoning":
        value = {k: item[k] for k in ("summary", "content", "encrypted_content") if k in item}
        return _json_segment(path, "reasoning", "assistant:reasoning", value)
    item_kind = {
        "function_call": "tool_call",
        "function_call_output": "tool_result",
        "custom_tool_call": "tool_call",
        "custom_tool_call_output": "tool_result",
    }
    value = _envelope({k: v for k, v in item.items() if k not in ("id", "status")})
    return _json_segment(path, item_kind.get(itype, kind), itype, value)
