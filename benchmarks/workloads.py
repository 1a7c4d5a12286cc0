"""Deterministic request bodies for the benchmarks: large RAG prompts, agent loops."""

from __future__ import annotations

import json
import random

_WORDS = (  # noqa: SIM905 (one line of words reads better than a column)
    "cache prefix token replica route policy refund order shipping tool schema agent "
    "latency window retrieval document chunk summary invoice customer warehouse "
    "кэш префикс запрос 缓存 前缀 请求 🙂 2026 42 1182 3.14 — «quoted» naïve café"
).split()


def _text(rng: random.Random, words: int) -> str:
    out = []
    for i in range(words):
        out.append(rng.choice(_WORDS))
        out.append(rng.choice([".\n", ".\n\n", ",\n  - ", "; "]) if i % 17 == 16 else " ")
    return "".join(out).strip()


def agent_tools(count: int = 30, seed: int = 7) -> list[dict]:
    """OpenAI-style tool declarations with realistic schemas."""
    rng = random.Random(seed)
    tools = []
    for i in range(count):
        props = {
            f"arg_{j}": {
                "type": rng.choice(["string", "integer", "boolean"]),
                "description": _text(rng, 12),
            }
            for j in range(5)
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i:02d}",
                    "description": _text(rng, 30),
                    "parameters": {"type": "object", "properties": props, "required": ["arg_0"]},
                },
            }
        )
    return tools


def agent_conversation(turns: int, seed: int = 7, system_words: int = 2200) -> dict:
    """A coding agent's Chat Completions body after ``turns`` tool-calling turns."""
    rng = random.Random(seed)
    messages = [{"role": "system", "content": _text(rng, system_words)}]
    for t in range(turns):
        messages.append({"role": "user", "content": _text(rng, 40)})
        call = {
            "id": f"call_{t}",
            "type": "function",
            "function": {
                "name": f"tool_{t % 30:02d}",
                "arguments": json.dumps({"arg_0": _text(rng, 6)}),
            },
        }
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": _text(rng, 60),
                "tool_calls": [call],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"call_{t}", "content": _text(rng, 150)})
        messages.append({"role": "assistant", "content": _text(rng, 50)})
    return {"model": "gpt-4o", "tools": agent_tools(seed=seed), "messages": messages}


def rag_request(approx_tokens: int, seed: int = 11) -> dict:
    """A long RAG request: a system prompt and many retrieved-document turns."""
    rng = random.Random(seed)
    messages = [{"role": "system", "content": _text(rng, 1500)}]
    words = int(approx_tokens / 1.6)
    while words > 0:
        chunk = min(words, 600)
        messages.append({"role": "user", "content": _text(rng, chunk)})
        messages.append({"role": "assistant", "content": _text(rng, 40)})
        words -= chunk + 40
    return {"model": "gpt-4o", "messages": messages}
