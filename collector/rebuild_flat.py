"""Flattened message attributes (``prefix.N.field``) and message events ─► messages.

The indexed conventions of ``collector.rebuild``: OpenLLMetry before 0.55
(``gen_ai.prompt.N.*``, ``llm.request.functions.N.*``),
OpenInference's ``llm.input_messages.N.message.*`` / ``llm.tools.N.tool.json_schema``,
and openai-v2's ``gen_ai.<role>.message`` event bodies. Indexes must run
0..n-1 without a gap (a missing message is an incomplete conversation: never
fingerprinted) and at most MAX_ITEMS; any other shape raises ``Unusable``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_ITEMS = 10_000  # messages, tool calls or tools of one request
REDACTED = "__REDACTED__"  # OpenInference's hidden input
OPENLLMETRY_PROMPT = "gen_ai.prompt."
OPENLLMETRY_FUNCTIONS = "llm.request.functions."
OI_MESSAGES = "llm.input_messages."
OI_TOOLS = "llm.tools."
CONTENT_PREFIXES = (OPENLLMETRY_PROMPT, OPENLLMETRY_FUNCTIONS, OI_MESSAGES, OI_TOOLS)


class Unusable(ValueError):
    """Captured content that cannot stand for the request (absent, partial, malformed)."""


def loads(value: Any, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """A JSON attribute (a string, or the value itself when a log record carries it
    structured) of the expected type; ``default`` when absent."""
    if value is None:
        if default is None:
            raise Unusable("absent")
        return default
    if isinstance(value, str):
        if REDACTED in value[:20]:
            raise Unusable("redacted")
        try:
            value = json.loads(value)
        except ValueError:
            raise Unusable("not JSON") from None
    if not isinstance(value, kind):
        raise Unusable(f"expected {kind}, got {type(value).__name__}")
    return value


def indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.rest = value`` attributes ─► [{rest: value}, ...] for N = 0..n-1."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, dot, rest = key[len(prefix) :].partition(".")
        if not dot or not index.isdigit() or len(index) > 6:
            continue  # not an indexed field (e.g. gen_ai.prompt.0.user of completions)
        found.setdefault(int(index), {})[rest] = value
    if len(found) > MAX_ITEMS or (found and max(found) != len(found) - 1):
        raise Unusable(f"{prefix}N: indexes missing or too many")
    return [found[i] for i in range(len(found))]


def _string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unusable("a text attribute that is not a string")
    if value == REDACTED:
        raise Unusable("redacted")
    return value


def _maybe_blocks(text: str | None) -> Any:
    """OpenLLMetry < 0.55 dumps a list content as JSON: read it back as that list."""
    if text is None or text[:2] not in ("[{", "[ "):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, list) and all(isinstance(b, dict) and "type" in b for b in value):
        return value
    return text


def _schema(value: Any) -> Any:
    return loads(value, (dict, bool)) if isinstance(value, str) else value


def openllmetry(attrs: Mapping[str, Any], anthropic: bool) -> tuple[Any, list, list] | None:
    """OpenLLMetry < 0.55 ─► (system, provider-shaped messages, tools); None if absent."""
    prompts = indexed(attrs, OPENLLMETRY_PROMPT)
    if not prompts:
        return None
    system = None
    if anthropic and prompts[0].get("role") == "system":
        system = _maybe_blocks(_string(prompts[0].get("content")))
        prompts = prompts[1:]
    messages = [_openllmetry_message(fields, anthropic) for fields in prompts]
    tools = []
    for fields in indexed(attrs, OPENLLMETRY_FUNCTIONS):
        tool = {k: fields.get(k) for k in ("name", "description") if fields.get(k) is not None}
        for key in ("parameters", "input_schema"):
            if fields.get(key) is not None:
                tool[key] = _schema(fields[key])
        tools.append(tool)
    return system, messages, tools


def _openllmetry_message(fields: dict[str, Any], anthropic: bool) -> dict:
    role = _string(fields.get("role"))
    if role is None:
        raise Unusable("a message without a role")
    content = _maybe_blocks(_string(fields.get("content")))
    calls = indexed(fields, "tool_calls.")
    if anthropic:
        if calls and not isinstance(content, list):
            blocks = [{"type": "text", "text": content}] if content else []
            blocks += [
                {"type": "tool_use", "id": c.get("id"), "name": c.get("name"),
                 "input": json.loads(_string(c.get("arguments")) or "{}")}
                for c in calls
            ]  # fmt: skip
            content = blocks
        return {"role": role, "content": "" if content is None else content}
    message: dict[str, Any] = {"role": role, "content": content}
    if fields.get("tool_call_id") is not None:
        message["tool_call_id"] = _string(fields["tool_call_id"])
    if calls:
        message["tool_calls"] = [_chat_call(c) for c in calls]
    elif content is None:
        message["content"] = ""
    return message


def _chat_call(fields: dict[str, Any], name: str = "name", arguments: str = "arguments") -> dict:
    return {
        "id": _string(fields.get("id")),
        "type": "function",
        "function": {
            "name": _string(fields.get(name)),
            "arguments": _string(fields.get(arguments)) or "",
        },
    }


def openinference(attrs: Mapping[str, Any]) -> tuple[list, list] | None:
    """OpenInference's flattened messages ─► (semconv messages, tools); None if absent."""
    rows = indexed(attrs, OI_MESSAGES)
    if not rows:
        return None
    messages = [_oi_message(fields) for fields in rows]
    tools = [loads(fields.get("tool.json_schema"), dict) for fields in indexed(attrs, OI_TOOLS)]
    return messages, tools


def _oi_message(fields: dict[str, Any]) -> dict:
    role = _string(fields.get("message.role"))
    if role is None:
        raise Unusable("a message without a role")
    text = _string(fields.get("message.content"))
    call_id = fields.get("message.tool_call_id")
    if call_id is not None:
        return {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": _string(call_id), "response": text}],
        }
    parts: list[dict] = []
    if text is not None:
        parts.append({"type": "text", "content": text})
    for item in indexed(fields, "message.contents."):
        kind = item.get("message_content.type", "text")
        if kind == "text":
            parts.append({"type": "text", "content": _string(item.get("message_content.text"))})
        elif kind == "image":
            parts.append(
                {"type": "uri", "uri": _string(item.get("message_content.image.image.url"))}
            )
        elif kind == "reasoning":
            parts.append(
                {"type": "reasoning", "content": _string(item.get("message_content.text"))}
            )
        elif kind != "tool_use":  # tool_use blocks repeat message.tool_calls
            raise Unusable(f"an OpenInference content of type {kind!r}")
    for call in indexed(fields, "message.tool_calls."):
        parts.append(
            {
                "type": "tool_call",
                "id": _string(call.get("tool_call.id")),
                "name": _string(call.get("tool_call.function.name")),
                "arguments": _string(call.get("tool_call.function.arguments")),
            }
        )
    return {"role": role, "parts": parts}


def event_message(name: str, body: Any) -> dict:
    """One ``gen_ai.<role>.message`` event (openai-v2 event mode) ─► a semconv message."""
    role = name.removeprefix("gen_ai.").removesuffix(".message")
    if role not in ("system", "user", "assistant", "tool") or not name.endswith(".message"):
        raise Unusable(f"not a message event: {name!r}")
    body = body if isinstance(body, dict) else {}
    content = body.get("content")
    if role == "tool":
        return {
            "role": role,
            "parts": [{"type": "tool_call_response", "id": body.get("id"), "response": content}],
        }
    parts: list[dict] = []
    if isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        parts.extend(
            {"type": "text", "content": b.get("text")} for b in content if isinstance(b, dict)
        )
    for call in body.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return {"role": role, "parts": parts}
