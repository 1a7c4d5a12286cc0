"""One request body as each library records it: encoders written from the libraries'
own source (read August 2026), so a test can send the same call in every convention.

OpenAI Chat bodies: semconv as openai-v2 / OpenLLMetry >= 0.55 write it (arguments
parsed, flat tool definitions), semconv as Logfire writes it (tools as sent),
OpenLLMetry < 0.55 (``gen_ai.prompt.N.*``), OpenInference (``input.value`` and the
flattened ``llm.input_messages.*``), Logfire's ``request_data``. Anthropic bodies:
the same, Anthropic-shaped.
"""

from __future__ import annotations

import json
from typing import Any


def _parts_chat(msg: dict) -> list[dict]:
    """OpenLLMetry >= 0.55 ``_set_input_messages`` / openai-v2 ``_prepare_input_messages``."""
    content = msg.get("content")
    if msg["role"] == "tool":
        return [{"type": "tool_call_response", "id": msg["tool_call_id"], "response": content}]
    parts = [{"type": "text", "content": content}] if isinstance(content, str) else []
    for call in msg.get("tool_calls") or []:
        parts.append(
            {
                "type": "tool_call",
                "name": call["function"]["name"],
                "id": call["id"],
                "arguments": json.loads(call["function"]["arguments"]),
            }
        )
    return parts


def semconv_chat(body: dict, tools_as_sent: bool = False) -> dict[str, Any]:
    messages = [{"role": m["role"], "parts": _parts_chat(m)} for m in body["messages"]]
    if tools_as_sent:  # Logfire: json.dumps(tools)
        tools = body["tools"]
    else:  # OpenLLMetry _build_tool_def_dict, openai-v2 FunctionToolDefinition
        tools = [{"type": t["type"], **t["function"]} for t in body["tools"]]
    return {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": body["model"],
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.tool.definitions": json.dumps(tools),
    }


def openllmetry_chat(body: dict) -> dict[str, Any]:
    """OpenLLMetry < 0.55 ``_set_prompts`` and ``set_tools_attributes``."""
    attrs: dict[str, Any] = {"gen_ai.system": "openai", "gen_ai.request.model": body["model"]}
    for i, msg in enumerate(body["messages"]):
        prefix = f"gen_ai.prompt.{i}"
        attrs[f"{prefix}.role"] = msg["role"]
        if msg.get("content"):
            content = msg["content"]
            attrs[f"{prefix}.content"] = (
                json.dumps(content) if isinstance(content, list) else content
            )
        if msg.get("tool_call_id"):
            attrs[f"{prefix}.tool_call_id"] = msg["tool_call_id"]
        for j, call in enumerate(msg.get("tool_calls") or []):
            attrs[f"{prefix}.tool_calls.{j}.id"] = call["id"]
            attrs[f"{prefix}.tool_calls.{j}.name"] = call["function"]["name"]
            attrs[f"{prefix}.tool_calls.{j}.arguments"] = call["function"]["arguments"]
    for i, tool in enumerate(body["tools"]):
        function = tool["function"]
        attrs[f"llm.request.functions.{i}.name"] = function["name"]
        attrs[f"llm.request.functions.{i}.description"] = function["description"]
        attrs[f"llm.request.functions.{i}.parameters"] = json.dumps(function["parameters"])
    return attrs


def openinference_body(body: dict, provider: str = "openai") -> dict[str, Any]:
    """OpenInference: ``input.value`` is safe_json_dumps of the request parameters."""
    return {
        "openinference.span.kind": "LLM",
        "llm.provider": provider,
        "llm.model_name": body["model"],
        "input.value": json.dumps(body, ensure_ascii=False),
        "input.mime_type": "application/json",
    }


def logfire_body(body: dict, provider: str = "openai") -> dict[str, Any]:
    """Logfire: ``request_data`` is the SDK's json_data (a JSON attribute)."""
    return {
        "gen_ai.system": provider,
        "gen_ai.request.model": body["model"],
        "request_data": json.dumps(body),
    }


def openinference_chat(body: dict) -> dict[str, Any]:
    """OpenInference's flattened chat messages and ``llm.tools.N.tool.json_schema``."""
    attrs: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.provider": "openai"}
    attrs["llm.model_name"] = body["model"]
    for i, msg in enumerate(body["messages"]):
        prefix = f"llm.input_messages.{i}.message"
        attrs[f"{prefix}.role"] = msg["role"]
        if msg.get("tool_call_id"):
            attrs[f"{prefix}.tool_call_id"] = msg["tool_call_id"]
        if isinstance(msg.get("content"), str) and msg["content"]:
            attrs[f"{prefix}.content"] = msg["content"]
        for j, call in enumerate(msg.get("tool_calls") or []):
            attrs[f"{prefix}.tool_calls.{j}.tool_call.id"] = call["id"]
            attrs[f"{prefix}.tool_calls.{j}.tool_call.function.name"] = call["function"]["name"]
            args = call["function"]["arguments"]
            attrs[f"{prefix}.tool_calls.{j}.tool_call.function.arguments"] = args
    for i, tool in enumerate(body["tools"]):
        attrs[f"llm.tools.{i}.tool.json_schema"] = json.dumps(tool)
    return attrs


def _parts_anthropic(content: Any) -> list[dict]:
    """OpenLLMetry >= 0.55 anthropic ``_content_to_parts``."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for block in content:
        kind = block["type"]
        if kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": block["id"],
                    "name": block["name"],
                    "arguments": block["input"],
                }
            )
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block["thinking"]})
        elif kind == "text":
            parts.append({"type": "text", "content": block["text"]})
        elif kind == "tool_result":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block["tool_use_id"],
                    "response": block["content"],
                }
            )
    return parts


def semconv_anthropic(body: dict) -> dict[str, Any]:
    system = body["system"]
    system_parts = (
        [{"type": "text", "content": system}]
        if isinstance(system, str)
        else [{"type": "text", "content": b["text"]} for b in system]
    )
    messages = [
        {"role": m["role"], "parts": _parts_anthropic(m["content"])} for m in body["messages"]
    ]
    tools = [
        {"name": t["name"], "description": t["description"], "input_schema": t["input_schema"]}
        for t in body["tools"]
    ]
    return {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": body["model"],
        "gen_ai.system_instructions": json.dumps(system_parts),
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.tool.definitions": json.dumps(tools),
    }


def _dump_content(content: Any) -> str:
    """OpenLLMetry < 0.55 anthropic ``_dump_content``."""
    if isinstance(content, str):
        return content
    if all(b.get("type") == "text" for b in content):
        return "".join(b["text"] for b in content)
    return json.dumps(content)


def openllmetry_anthropic(body: dict) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.system": "Anthropic", "gen_ai.request.model": body["model"]}
    attrs["gen_ai.prompt.0.content"] = _dump_content(body["system"])
    attrs["gen_ai.prompt.0.role"] = "system"
    for i, msg in enumerate(body["messages"], start=1):
        attrs[f"gen_ai.prompt.{i}.content"] = _dump_content(msg["content"])
        attrs[f"gen_ai.prompt.{i}.role"] = msg["role"]
        blocks = msg["content"] if isinstance(msg["content"], list) else []
        for n, block in enumerate(b for b in blocks if b["type"] == "tool_use"):
            attrs[f"gen_ai.prompt.{i}.tool_calls.{n}.id"] = block["id"]
            attrs[f"gen_ai.prompt.{i}.tool_calls.{n}.name"] = block["name"]
            attrs[f"gen_ai.prompt.{i}.tool_calls.{n}.arguments"] = json.dumps(block["input"])
    for i, tool in enumerate(body["tools"]):
        attrs[f"llm.request.functions.{i}.name"] = tool["name"]
        attrs[f"llm.request.functions.{i}.description"] = tool["description"]
        attrs[f"llm.request.functions.{i}.input_schema"] = json.dumps(tool["input_schema"])
    return attrs


def openinference_anthropic(body: dict) -> dict[str, Any]:
    """OpenInference anthropic ``_get_llm_input_messages`` (system as message 0)."""
    attrs: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.provider": "anthropic"}
    attrs["llm.model_name"] = body["model"]
    attrs["llm.input_messages.0.message.role"] = "system"
    attrs["llm.input_messages.0.message.content"] = body["system"]
    for i, msg in enumerate(body["messages"], start=1):
        prefix = f"llm.input_messages.{i}.message"
        attrs[f"{prefix}.role"] = msg["role"]
        if isinstance(msg["content"], str):
            attrs[f"{prefix}.content"] = msg["content"]
            continue
        calls = 0
        for j, block in enumerate(msg["content"]):
            at = f"{prefix}.contents.{j}.message_content"
            if block["type"] == "text":
                attrs[f"{at}.type"], attrs[f"{at}.text"] = "text", block["text"]
            elif block["type"] == "thinking":
                attrs[f"{at}.type"], attrs[f"{at}.text"] = "reasoning", block["thinking"]
            elif block["type"] == "tool_use":
                call = f"{prefix}.tool_calls.{calls}.tool_call"
                attrs[f"{call}.id"] = block["id"]
                attrs[f"{call}.function.name"] = block["name"]
                attrs[f"{call}.function.arguments"] = json.dumps(block["input"])
                attrs[f"{at}.type"] = "tool_use"
                calls += 1
            elif block["type"] == "tool_result":
                attrs[f"{prefix}.tool_call_id"] = block["tool_use_id"]
                attrs[f"{prefix}.content"] = block["content"]
    for i, tool in enumerate(body["tools"]):
        attrs[f"llm.tools.{i}.tool.json_schema"] = json.dumps(tool)
    return attrs


CHAT = {
    "semconv": semconv_chat,
    "semconv_logfire": lambda b: semconv_chat(b, tools_as_sent=True),
    "openllmetry_legacy": openllmetry_chat,
    "openinference_body": openinference_body,
    "openinference_flat": openinference_chat,
    "logfire_body": logfire_body,
}
ANTHROPIC = {
    "semconv": semconv_anthropic,
    "openllmetry_legacy": openllmetry_anthropic,
    "openinference_body": lambda b: openinference_body(b, "anthropic"),
    "openinference_flat": openinference_anthropic,
    "logfire_body": lambda b: logfire_body(b, "anthropic"),
}
