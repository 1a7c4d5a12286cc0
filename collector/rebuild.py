"""Other libraries' captured prompt content ─► the provider request it stands for.

Pure: a span's (or log record's) attributes in, a request body out, shaped for
the provider (OpenAI Chat ``{"model", "messages", "tools"}``, Anthropic
``{"model", "system", "messages", "tools"}``, or the exact body as sent), or
None when the content is absent, incomplete or not understood. The body is then
fingerprinted by ``collector.bodies``, the very step the instrumentation runs.
Read from each library's source (snapshots of March-August 2026); recorded live
around the real SDKs (``tests/record_libraries.py`` ─► ``sample_data/libraries``,
replayed by tests/test_rebuild.py and tests/test_library_conversations.py):
OpenInference openai 0.1.66 and anthropic 3.1.0, OpenLLMetry 0.62.4 (traceloop-sdk),
Logfire 5.4.0, OpenLIT 1.45.0, openai-v2 2.4b0 (span and event mode); OpenLLMetry <
0.55 from source only.

- OpenInference (openai, anthropic): ``input.value`` with ``input.mime_type``
  JSON on an LLM span is the request as sent: rebuilt from it. Else its
  flattened ``llm.input_messages.N.message.*`` and ``llm.tools.N.tool.json_schema``.
- Logfire: with its semconv version 1, ``request_data`` is a JSON attribute of
  the body as sent (Chat Completions, Anthropic Messages). With ``latest`` (what
  logfire 5.4 sent when recorded) ``request_data`` holds only the model and the
  ``gen_ai.input.messages`` it adds are read. Version 1's Responses API spans put
  the input in an ``events`` attribute with the output appended (not told
  apart): not read.
- GenAI semconv (openai-v2 and opentelemetry-util-genai, OpenLLMetry >= 0.55,
  Logfire, OpenLIT): ``gen_ai.input.messages`` (role + parts), with
  ``gen_ai.system_instructions`` and ``gen_ai.tool.definitions``. The same names
  on a log record (``gen_ai.client.inference.operation.details``) read the same.
- OpenLLMetry < 0.55: ``gen_ai.prompt.N.role/content/tool_call_id/tool_calls.M.*``
  and ``llm.request.functions.N.name/description/parameters|input_schema``.
- openai-v2 event mode: one ``gen_ai.<role>.message`` log record per message;
  ``from_message_events`` reads them once the span stream has grouped a call's
  records (one record alone is not a request).

A full JSON body wins (it is what was sent, up to JSON formatting, which the
rendering ignores); otherwise the message list. What a message list loses, so
the fingerprint can differ from our own instrumentation's on the same call (it
stays stable across the turns recorded by one library, so prefix hashes and
block runs still compare turn to turn):

- Anthropic ``cache_control`` markers (so breakpoints), except in full bodies and
  OpenLLMetry < 0.55's JSON-dumped block lists; tool-result ``is_error``;
  thinking signatures (never rendered anyway); chat ``reasoning_content``.
- Whether a one-text message was a string or a one-block list: rebuilt as a
  string (same text and hashes; the segment path lacks the ``[0]``).
- Tool-call arguments a library parsed into an object (semconv writers,
  OpenLLMetry >= 0.55, openai-v2) are re-serialized compactly (``{"a":1}``, as
  OpenAI models emit them): an original spaced otherwise renders differently
  from that segment on (the prefix hash is unaffected).
- Tool definitions keep only name, description and schema in OpenLLMetry and
  openai-v2 (``strict`` is dropped); a schema's key order is kept everywhere.
- The Responses API recorded as a message list is rebuilt as Chat Completions:
  text renders the same, tool definitions and calls do not.
- openai-v2 drops non-text user content; its event mode drops an assistant's
  text when it also called tools and strips newlines from arguments.
- OpenLLMetry < 0.55 joins an all-text Anthropic block list into one string and
  omits empty content; a content string that is itself JSON of a content list
  is read as that list.
- OpenLIT's Anthropic system prompt of one text block is a part holding that block list.
- OpenLIT truncates text to ``max_content_length`` when that is set, marked only
  by a trailing "...": undetectable, so such a row is fingerprinted as captured
  (a change past the cut does not show, and the cut text is what is stored).
  OpenLIT's older ``gen_ai.content.prompt`` span event ("role: text" lines)
  cannot be rebuilt and is not read (span events reach the mapping by name only).

Decision on partial content: it is never fingerprinted, so the explainer never
calls a gap a change. A message list with a missing index, an unparseable JSON
attribute (an SDK attribute-length limit cuts JSON, which then fails to parse), a
message without a role, OpenInference's ``__REDACTED__`` inputs: no fingerprint.
Hostile shapes (wrong types, huge indexes, non-JSON strings) give None, never
an exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from collector import rebuild_flat as flat
from collector.rebuild_flat import Unusable, loads

INPUT_VALUE, INPUT_MIME = "input.value", "input.mime_type"
OI_KIND = "openinference.span.kind"
LOGFIRE_BODY = "request_data"
INPUT_MESSAGES = "gen_ai.input.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
# Attributes holding input content, read here and consumed once rebuilt.
CONTENT_NAMES = (INPUT_VALUE, LOGFIRE_BODY, INPUT_MESSAGES, SYSTEM_INSTRUCTIONS, TOOL_DEFINITIONS)
CONTENT_PREFIXES = flat.CONTENT_PREFIXES
FULL_BODIES = (INPUT_VALUE, LOGFIRE_BODY)  # a request as sent, cache_control markers and all
_SYSTEM_ROLES = ("system", "developer")


# What every capture of each convention holds (an indexed one: its first message's
# role or its first tool), looked up in one set operation on every span without our
# fingerprint; content_keys is the thorough scan.
_PRESENT = frozenset(
    (
        *CONTENT_NAMES,
        "gen_ai.prompt.0.role",
        "llm.input_messages.0.message.role",
        "llm.request.functions.0.name",
        "llm.tools.0.tool.json_schema",
    )
)


def has_content(attrs: Mapping[str, Any]) -> bool:
    """Does a record carry input content some library captured (in full: a message list
    without its first message is not a request)?"""
    return not _PRESENT.isdisjoint(attrs)


def content_keys(attrs: Mapping[str, Any]) -> list[str]:
    """The attributes of ``attrs`` that hold input content (to drop once rebuilt, or
    when only hashes are kept)."""
    return [k for k in attrs if k in CONTENT_NAMES or k.startswith(CONTENT_PREFIXES)]


def is_anthropic(provider: str | None, model: str | None) -> bool:
    return str(provider or "").lower().startswith("anthropic") or str(model or "").startswith(
        "claude"
    )


def request_body(
    attrs: Mapping[str, Any], provider: str | None = None, model: str | None = None
) -> tuple[dict, str] | None:
    """The request a record's captured content stands for, and the attribute it came
    from; None when there is none (or it is incomplete). Never raises."""
    try:
        return _request_body(attrs, provider, model)
    except (Unusable, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def _request_body(attrs: Mapping[str, Any], provider: str | None, model: str | None):
    for name in FULL_BODIES:
        body = _full_body(attrs, name)
        if body is not None:
            return body, name
    anthropic = is_anthropic(provider, model)
    if INPUT_MESSAGES in attrs:
        messages = loads(attrs[INPUT_MESSAGES], list)
        return _shaped(
            anthropic,
            model,
            messages,
            _system_parts(attrs.get(SYSTEM_INSTRUCTIONS)),
            loads(attrs.get(TOOL_DEFINITIONS), list, []),
        ), INPUT_MESSAGES
    found = flat.openllmetry(attrs, anthropic)
    if found is not None:
        system, messages, tools = found
        return _body(anthropic, model, system, messages, tools), "gen_ai.prompt"
    found = flat.openinference(attrs)
    if found is not None:
        messages, tools = found
        return _shaped(anthropic, model, messages, [], tools), "llm.input_messages"
    return None


def _full_body(attrs: Mapping[str, Any], name: str) -> dict | None:
    """A whole request body carried as JSON (OpenInference input.value of an LLM span
    with a JSON mime type, Logfire's request_data), if it holds a conversation."""
    value = attrs.get(name)
    if value is None:
        return None
    if name == INPUT_VALUE and (
        "json" not in str(attrs.get(INPUT_MIME, "")) or attrs.get(OI_KIND, "LLM") != "LLM"
    ):
        return None
    try:
        body = loads(value, dict)
    except Unusable:
        return None
    if isinstance(body.get("messages"), list) or body.get("input") is not None:
        return body
    return None


def _system_parts(value: Any) -> list:
    """gen_ai.system_instructions: a list of parts (as JSON or not); a bare string."""
    if value is None:
        return []
    if isinstance(value, str) and value[:1] not in ("[", "{"):
        return [{"type": "text", "content": value}]
    found = loads(value, (list, dict))
    return found if isinstance(found, list) else [found]


def _shaped(anthropic: bool, model: str | None, messages: list, system: list, tools: list) -> dict:
    """A semconv message list (role + parts) ─► the provider's body."""
    if any(_role(m) in _SYSTEM_ROLES for m in messages):
        system = []  # already in the conversation (OpenLIT sends it in both)
    if anthropic:
        lead = [m for m in messages if _role(m) in _SYSTEM_ROLES]
        parts = [p for m in lead for p in _parts(m)] + list(system)
        rest = [_anthropic_message(m) for m in messages if _role(m) not in _SYSTEM_ROLES]
        return _body(True, model, _anthropic_system(parts), rest, tools)
    out = [{"role": "system", "content": _chat_content(system)}] if system else []
    for message in messages:
        out.extend(_chat_messages(message))
    return _body(False, model, None, out, tools)


def _body(anthropic: bool, model: str | None, system: Any, messages: list, tools: list) -> dict:
    body: dict[str, Any] = {"model": model} if model else {}
    if anthropic and system is not None:
        body["system"] = system
    body["messages"] = messages
    if tools:
        body["tools"] = [_anthropic_tool(t) if anthropic else _chat_tool(t) for t in tools]
    return body


def _role(message: Any) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise Unusable("a message without a role")
    return message["role"]


def _parts(message: dict) -> list[dict]:
    parts = message.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise Unusable("parts must be a list of objects")
    return parts


def _text(part: dict) -> str:
    value = part.get("content", part.get("text"))
    if isinstance(value, list) and value:  # OpenLIT: Anthropic's text blocks as one part
        texts = [b.get("text") if isinstance(b, dict) else None for b in value]
        if all(isinstance(t, str) for t in texts) and len(texts) == 1:
            value = texts[0]
    if not isinstance(value, str):
        raise Unusable("a text part without text")
    return value


def _arguments(value: Any) -> str:
    """Tool-call arguments as OpenAI sends them: a string, kept; an object, compact."""
    if isinstance(value, str):
        return value
    return json.dumps({} if value is None else value, separators=(",", ":"), ensure_ascii=False)


def _arguments_object(value: Any) -> Any:
    """Tool-call arguments as Anthropic sends them (``tool_use.input``): an object."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {} if value is None else value


def _media(part: dict, anthropic: bool) -> dict:
    """A uri/blob/file or unknown part back to a content block, as near as it goes."""
    kind = part.get("type")
    if kind == "uri" and isinstance(part.get("uri"), str):
        if anthropic:
            return {"type": "image", "source": {"type": "url", "url": part["uri"]}}
        return {"type": "image_url", "image_url": {"url": part["uri"]}}
    if kind == "blob" and isinstance(part.get("content"), str):
        mime = part.get("mime_type") or part.get("media_type") or "application/octet-stream"
        if anthropic:
            source = {"type": "base64", "media_type": mime, "data": part["content"]}
            return {"type": "image", "source": source}
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{part['content']}"}}
    return dict(part)


def _chat_content(parts: list[dict]) -> Any:
    """Content parts ─► an OpenAI message's content: one text a string, several a list."""
    if len(parts) == 1 and parts[0].get("type", "text") == "text":
        return _text(parts[0])
    if not parts:
        return None
    return [
        {"type": "text", "text": _text(p)} if p.get("type", "text") == "text" else _media(p, False)
        for p in parts
    ]


def _chat_messages(message: dict) -> list[dict]:
    """One semconv message ─► OpenAI Chat messages (a tool message per tool response)."""
    role, parts = _role(message), _parts(message)
    responses = [p for p in parts if p.get("type") == "tool_call_response"]
    if responses:
        return [
            {"role": "tool", "tool_call_id": p.get("id"), "content": _response_text(p)}
            for p in responses
        ]
    calls = [p for p in parts if p.get("type") == "tool_call"]
    reasoning = [_text(p) for p in parts if p.get("type") == "reasoning"]
    content = [p for p in parts if p.get("type") not in ("tool_call", "reasoning")]
    out: dict[str, Any] = {"role": role, "content": _chat_content(content)}
    if out["content"] is None and not calls:
        out["content"] = ""
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if calls:
        out["tool_calls"] = [
            {
                "id": p.get("id"),
                "type": "function",
                "function": {"name": p.get("name"), "arguments": _arguments(p.get("arguments"))},
            }
            for p in calls
        ]
    return [out]


def _response_text(part: dict) -> str:
    value = part.get("response")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _anthropic_block(part: dict) -> dict:
    kind = part.get("type", "text")
    if kind == "text":
        return {"type": "text", "text": _text(part)}
    if kind == "reasoning":
        return {"type": "thinking", "thinking": _text(part)}
    if kind == "tool_call":
        return {
            "type": "tool_use",
            "id": part.get("id"),
            "name": part.get("name"),
            "input": _arguments_object(part.get("arguments")),
        }
    if kind == "tool_call_response":
        return {
            "type": "tool_result",
            "tool_use_id": part.get("id"),
            "content": part.get("response"),
        }
    return _media(part, True)


def _anthropic_message(message: dict) -> dict:
    role, parts = _role(message), _parts(message)
    blocks = [_anthropic_block(p) for p in parts]
    if role == "tool":
        role = "user"  # a tool response travels in a user turn
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": role, "content": blocks[0]["text"]}
    return {"role": role, "content": blocks}


def _anthropic_system(parts: list[dict]) -> Any:
    if not parts:
        return None
    if len(parts) == 1 and parts[0].get("type", "text") == "text":
        return _text(parts[0])
    return [{"type": "text", "text": _text(p)} for p in parts]


def _chat_tool(tool: Any) -> dict:
    """A tool definition in any library's shape ─► OpenAI's ``{"type", "function"}``."""
    if not isinstance(tool, dict):
        raise Unusable("a tool definition that is not an object")
    if isinstance(tool.get("function"), dict):
        return tool
    function = {k: v for k, v in tool.items() if k != "type" and v is not None}
    if "input_schema" in function and "parameters" not in function:
        function["parameters"] = function.pop("input_schema")
    return {"type": tool.get("type") or "function", "function": function}


def _anthropic_tool(tool: Any) -> dict:
    """A tool definition in any library's shape ─► Anthropic's ``{name, ..., input_schema}``."""
    if not isinstance(tool, dict):
        raise Unusable("a tool definition that is not an object")
    source = tool["function"] if isinstance(tool.get("function"), dict) else tool
    out = {
        k: v for k, v in source.items() if v is not None and not (k == "type" and v == "function")
    }
    if "parameters" in out and "input_schema" not in out:
        out["input_schema"] = out.pop("parameters")
    return out


def from_message_events(
    events: list[tuple[str, Any]], provider: str | None = None, model: str | None = None
) -> dict | None:
    """openai-v2's event mode: the ``gen_ai.<role>.message`` log records of one call,
    in order, as (event name, body) ─► its request; None if not understood. The span
    stream groups a call's records; this only reads them."""
    try:
        messages = [flat.event_message(name, body) for name, body in events]
        return _shaped(is_anthropic(provider, model), model, messages, [], [])
    except (Unusable, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
