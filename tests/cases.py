"""Request pairs for every cause in every format, built from one conversation spec."""

from __future__ import annotations

import copy
import json

FORMATS = ("openai_chat", "openai_responses", "anthropic")

POLICY = (
    "You are the support assistant of Acme Outfitters. Refunds are accepted within 30 "
    "days of delivery. Be brief.  Be kind."
)
DOCS = [
    '<document id="d1">Returns need the original receipt.</document>',
    '<document id="d2">Store credit never expires.</document>',
    '<document id="d3">Sale items are final.</document>',
]
TOOLS = [
    (
        "get_order",
        "Look up an order by id.",
        {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
        },
    ),
    (
        "refund",
        "Refund an order.",
        {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "order_id": {"type": "string"}},
        },
    ),
    (
        "search_docs",
        "Search the policy documents.",
        {"type": "object", "properties": {"query": {"type": "string"}}},
    ),
]
EXTRA_TOOL = (
    "escalate",
    "Hand the case to a human.",
    {"type": "object", "properties": {"reason": {"type": "string"}}},
)


def base_spec() -> dict:
    return {
        "model": "gpt-4o",
        "tools": copy.deepcopy(TOOLS),
        "system": POLICY + "\n\n" + "\n\n".join(DOCS),
        "turns": [
            {"role": "user", "text": "Where is my order 1182?"},
            {
                "role": "assistant",
                "reasoning": "The user wants order status; call get_order.",
                "call": ("call_1", "get_order", json.dumps({"order_id": "1182"})),
            },
            {"role": "tool", "id": "call_1", "text": '{"status": "shipped"}'},
            {"role": "assistant", "text": "Order 1182 has shipped."},
            {"role": "user", "text": "Can I return it?"},
        ],
    }


def _chat(spec: dict) -> dict:
    messages: list[dict] = [{"role": "system", "content": spec["system"]}]
    for t in spec["turns"]:
        if t["role"] == "tool":
            messages.append({"role": "tool", "tool_call_id": t["id"], "content": t["text"]})
            continue
        msg: dict = {"role": t["role"], "content": t.get("text")}
        if t.get("reasoning") is not None:
            msg["reasoning_content"] = t["reasoning"]
        if t.get("call"):
            cid, name, args = t["call"]
            msg["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            ]
        messages.append(msg)
    tools = [
        {"type": "function", "function": {"name": n, "description": d, "parameters": s}}
        for n, d, s in spec["tools"]
    ]
    return {"model": spec["model"], "tools": tools, "messages": messages}


def _responses(spec: dict) -> dict:
    items: list[dict] = []
    for t in spec["turns"]:
        if t["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": t["id"], "output": t["text"]})
            continue
        if t.get("reasoning") is not None:
            items.append(
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": t["reasoning"]}],
                }
            )
        if t.get("text") is not None:
            items.append({"role": t["role"], "content": t["text"]})
        if t.get("call"):
            cid, name, args = t["call"]
            items.append({"type": "function_call", "call_id": cid, "name": name, "arguments": args})
    tools = [
        {"type": "function", "name": n, "description": d, "parameters": s}
        for n, d, s in spec["tools"]
    ]
    return {"model": spec["model"], "tools": tools, "instructions": spec["system"], "input": items}


def _anthropic(spec: dict) -> dict:
    messages: list[dict] = []
    for t in spec["turns"]:
        if t["role"] == "tool":
            block = {"type": "tool_result", "tool_use_id": t["id"], "content": t["text"]}
            messages.append({"role": "user", "content": [block]})
            continue
        blocks: list[dict] = []
        if t.get("reasoning") is not None:
            blocks.append({"type": "thinking", "thinking": t["reasoning"], "signature": "sig"})
        if t.get("text") is not None:
            blocks.append({"type": "text", "text": t["text"]})
        if t.get("call"):
            cid, name, args = t["call"]
            blocks.append({"type": "tool_use", "id": cid, "name": name, "input": json.loads(args)})
        messages.append({"role": t["role"], "content": blocks})
    tools = [{"name": n, "description": d, "input_schema": s} for n, d, s in spec["tools"]]
    model = (
        spec["model"].replace("gpt-4o", "claude-sonnet-4-5").replace("gpt-4.1", "claude-opus-4-1")
    )
    return {
        "model": model,
        "max_tokens": 1024,
        "tools": tools,
        "system": [
            {"type": "text", "text": spec["system"], "cache_control": {"type": "ephemeral"}}
        ],
        "messages": messages,
    }


BUILD = {"openai_chat": _chat, "openai_responses": _responses, "anthropic": _anthropic}


def build(fmt: str, spec: dict) -> dict:
    return BUILD[fmt](spec)


def _edit(cause: str, spec: dict) -> None:
    """Turn spec A into spec B for ``cause``."""
    turns, tools = spec["turns"], spec["tools"]
    if cause == "appended":
        turns.append({"role": "assistant", "text": "Yes, within 30 days."})
    elif cause == "dynamic_value":
        spec["system"] = spec["system"].replace("10:00:00Z", "10:05:00Z")
    elif cause == "tools_reordered":
        tools[0], tools[1] = tools[1], tools[0]
    elif cause == "tools_changed":
        tools.append(copy.deepcopy(EXTRA_TOOL))
    elif cause == "key_order":
        props = tools[1][2]["properties"]
        tools[1][2]["properties"] = dict(reversed(list(props.items())))
    elif cause == "whitespace":
        spec["system"] = spec["system"].replace("Be brief.  Be kind.", "Be brief. Be kind.")
    elif cause == "system_changed":
        spec["system"] = spec["system"].replace("30 days", "45 days")
    elif cause == "history_rewritten":
        turns[0]["text"] = "Where is order 1182?"
    elif cause == "reasoning_dropped":
        turns[1]["reasoning"] = None
    elif cause == "context_reordered":
        spec["system"] = POLICY + "\n\n" + "\n\n".join([DOCS[2], DOCS[0], DOCS[1]])
    elif cause == "model_changed":
        spec["model"] = "gpt-4.1"


def _spec_a(cause: str) -> dict:
    spec = base_spec()
    if cause == "dynamic_value":
        spec["system"] = spec["system"].replace("Be brief.", "Now: 2026-11-22T10:00:00Z. Be brief.")
    return spec


def pair(cause: str, fmt: str) -> tuple[dict, dict]:
    """Request bodies A (earlier) and B (later) whose divergence has ``cause``."""
    a = _spec_a(cause)
    b = copy.deepcopy(a)
    _edit(cause, b)
    body_b = build(fmt, b)
    if cause == "identical":
        body_b = dict(reversed(list(body_b.items())))  # envelope only: key order
        body_b["temperature"] = 0.2
    return build(fmt, a), body_b


# The segment each cause must name, per format.
SEGMENT = {
    "identical": {f: None for f in FORMATS},
    "model_changed": {f: None for f in FORMATS},
    "appended": {
        "openai_chat": "messages[6].content",
        "openai_responses": "input[6]",
        "anthropic": "messages[5].content[0]",
    },
    "dynamic_value": {
        "openai_chat": "messages[0].content",
        "openai_responses": "instructions",
        "anthropic": "system[0]",
    },
    "tools_reordered": {f: "tools[0]" for f in FORMATS},
    "tools_changed": {f: "tools[3]" for f in FORMATS},
    "key_order": {f: "tools[1]" for f in FORMATS},
    "whitespace": {
        "openai_chat": "messages[0].content",
        "openai_responses": "instructions",
        "anthropic": "system[0]",
    },
    "system_changed": {
        "openai_chat": "messages[0].content",
        "openai_responses": "instructions",
        "anthropic": "system[0]",
    },
    "context_reordered": {
        "openai_chat": "messages[0].content",
        "openai_responses": "instructions",
        "anthropic": "system[0]",
    },
    "history_rewritten": {
        "openai_chat": "messages[1].content",
        "openai_responses": "input[0]",
        "anthropic": "messages[0].content[0]",
    },
    "reasoning_dropped": {
        "openai_chat": "messages[2].reasoning_content",
        "openai_responses": "input[1]",
        "anthropic": "messages[1].content[0]",
    },
}
