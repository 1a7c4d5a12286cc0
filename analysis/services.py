"""The request bodies of the generated services, and the edits incidents make to them.

Each builder returns a ``Built``: the body sent, the body that would have been
sent without the incident's edit (``clean``, None when there was no edit), and
the cause the edit breaks the cache with. ``analysis.traffic`` schedules the
sessions and serves the bodies; ``analysis.truth`` turns body and clean body
into the true cause of each request.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

WORDS = (  # noqa: SIM905 (a line of words reads better than a column)
    "order refund shipping invoice account password delivery warranty return size "
    "color address payment card subscription plan upgrade cancel discount coupon"
).split()
CODE = (  # noqa: SIM905
    "parser cache index router replica schema migration test fixture handler "
    "session token buffer encoder decoder queue worker retry timeout"
).split()
TITLE_PROMPT = (
    "Write a title for the conversation that follows. Use at most six words, no quotes, "
    "no final period, and the customer's own terms where they are specific. Never name "
    "the customer. If the message is a greeting only, answer 'General question'. "
    "Answer with the title alone."
)
TASKS = ("Summarise the document.", "List every claim it makes.", "Find its weak points.")
_EPHEMERAL = {"type": "ephemeral"}
REGISTRY_WORKERS = 3  # tool registry workers, each with its own set order


class Built(NamedTuple):
    body: dict
    clean: dict | None = None  # the body without the incident's edit
    edit: str | None = None  # the cause the edit breaks the cache with
    meta: dict | None = None


@dataclass
class Session:
    kind: str
    key: str
    turns_left: int
    messages: list
    started: float
    docs_key: str | None = None  # whose retrieved documents this session reads
    paste: bool = False  # support: the first message carries a long pasted log
    edit: str | None = None  # the cause of the last edit made to this session's bodies
    first_question: str | None = None
    round: list = field(default_factory=list)  # research: the history its fan-out shares
    resume: float | None = None  # when it comes back after an outage
    deferred: Any = None  # the outage it waited out, until its next request


def sentence(rng: random.Random, words: tuple[str, ...] | list[str], n: int) -> str:
    return " ".join(rng.choices(words, k=n)).capitalize() + "."


def policy() -> str:
    clauses = [
        "Refunds are accepted within 30 days of delivery.",
        "Exchanges are free when the item is unworn.",
        "Orders over $50 ship free within the country.",
        "Damaged items are replaced after a photo is sent.",
        "Gift cards cannot be refunded or exchanged.",
        "Loyalty points expire after 12 months without purchases.",
    ]
    lines = [
        f"Policy {i // len(clauses) + 1}.{i % len(clauses) + 1}: {clauses[i % len(clauses)]}"
        " Quote the policy number when you rely on it."
        for i in range(72)
    ]
    return "You are the support assistant of Acme Outfitters.\n" + "\n".join(lines)


def research_instructions() -> str:
    steps = [
        f"Step {i + 1}: read the document section by section and note what it claims about "
        f"{CODE[i % len(CODE)]} and {CODE[(i * 7) % len(CODE)]}, quoting the sentence."
        for i in range(48)
    ]
    return "You are a careful research analyst.\n" + "\n".join(steps)


def tools(rng: random.Random) -> list[dict]:
    """The agent's 30 tools, their schema keys in the order the code writes them."""
    out = []
    for i, verb in enumerate(("read", "write", "search", "run", "list", "diff") * 5):
        props = {
            f"{arg}": {"type": "string", "description": f"The {arg} to {verb}."}
            for arg in ("path", "query", "limit", "mode")[: 2 + i % 3]
        }
        out.append(
            {
                "type": "function",
                "function": {
                    "name": f"{verb}_{CODE[i % len(CODE)]}_{i:02d}",
                    "description": f"{verb.title()} a {CODE[(i + 3) % len(CODE)]} in the "
                    "repository. " + " ".join(rng.choice(CODE) for _ in range(20)),
                    "parameters": {"type": "object", "properties": props, "required": ["path"]},
                },
            }
        )
    return sorted(out, key=lambda t: t["function"]["name"])


def sorted_keys(value: Any) -> Any:
    """What the SDK sent before its upgrade: every JSON object's keys sorted."""
    return json.loads(json.dumps(value, sort_keys=True))


def support(g: Any, s: Session, t: float, incident: Any) -> Built:
    rng, system, version = g.rngs["support"], g.policy, "support-v7"
    if incident and incident.name == "deploy_timestamp":
        stamp = datetime.fromtimestamp(g.start + t, UTC).isoformat(timespec="seconds")
        system, version = f"Current time: {stamp}\n{g.policy}", "support-v8"
    question = sentence(rng, WORDS, 12) + "?"
    if not s.messages:  # an order number: no two chats share more than the system prompt
        question = f"Order {rng.randrange(10**6):06d}: {question}"
        s.first_question = question
        if s.paste:  # a launch-day user pastes the whole order history
            question = "My orders:\n" + sentence(rng, WORDS, 2400) + "\n" + question
    s.messages.append({"role": "user", "content": question})

    def body(text: str) -> dict:
        return {"model": "gpt-4o", "messages": [{"role": "system", "content": text}, *s.messages]}

    s.messages.append({"role": "assistant", "content": sentence(rng, WORDS, 25)})
    meta = {"prompt_version": version, "schema_version": "none"}
    if system != g.policy:
        return Built(body(system), body(g.policy), incident.cause, meta)
    return Built(body(system), meta=meta)


def title(g: Any, s: Session, t: float, incident: Any) -> Built:
    """The title a support chat gets after its first turn: far under the minimum."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": s.first_question or ""},
        ],
    }
    return Built(body, meta={"prompt_version": "title-v1", "schema_version": "none"})


def agent(g: Any, s: Session, t: float, incident: Any) -> Built:
    rng, name = g.rngs["agent"], incident.name if incident else None
    tool_list, system, edit = g.tools, "You are a careful coding agent.", None
    if name == "ab_prompt_flag" and rng.random() < 0.5:
        system += " Prefer small, reviewable diffs, and say which tests cover them."
    if name == "sdk_unsorted_keys" and rng.random() < 0.5:
        tool_list = g.tools_unsorted  # this worker runs the upgraded SDK
    if name == "tool_registry_order":
        tool_list = g.registry[rng.randrange(REGISTRY_WORKERS)]
    if name == "dynamic_tool_subsets":
        tool_list = rng.sample(g.tools, rng.randint(8, 20))
    if name == "request_id_in_schema":
        tool_list = json.loads(json.dumps(g.tools))
        tool_list[0]["function"]["parameters"]["properties"]["path"]["description"] = (
            f"Path. Trace req_{rng.getrandbits(48):012x}."
        )
    if not s.messages:  # a ticket number: no two sessions share more than the tools
        task = f"Ticket T-{rng.randrange(10**6):06d}. " + sentence(rng, CODE, 15)
        s.messages.append({"role": "user", "content": task})
    elif rng.random() < 0.7:  # the user asks again
        s.messages.append({"role": "user", "content": "Next: " + sentence(rng, CODE, 15)})
    history = s.messages
    if name == "stripped_reasoning":
        history = strip_old_reasoning(history)
    if name == "context_truncation":
        history = truncate_old_tool_outputs(history)

    def body(tool_list: list, system: str, history: list) -> dict:
        messages = [{"role": "system", "content": system}, *history]
        return {"model": "deepseek-chat", "tools": tool_list, "messages": messages}

    sent = body(tool_list, system, history)
    clean = body(g.tools, "You are a careful coding agent.", s.messages)
    # dicts compare equal whatever their key order: the unsorted SDK's tools differ anyway
    if incident and (sent != clean or tool_list is g.tools_unsorted):
        edit = incident.cause
    call_id = f"call_{len(s.messages)}"
    tool = rng.choice(g.tools)["function"]["name"]
    s.messages.append(
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": sentence(rng, CODE, 120),
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool, "arguments": json.dumps({"path": "src/app.py"})},
                }
            ],
        }
    )
    s.messages.append(
        {"role": "tool", "tool_call_id": call_id, "content": sentence(rng, CODE, 600)}
    )
    meta = {"prompt_version": "agent-v3", "schema_version": "tools-v12"}
    return Built(sent, clean if edit else None, edit, meta)


@functools.lru_cache(maxsize=512)
def documents(seed: int, key: str, count: int = 10, words: int = 200) -> tuple[str, ...]:
    """A session's retrieved documents (the same for every turn, and for fan-out twins)."""
    rng = random.Random(f"{seed}-{key}")
    return tuple(
        f'<document id="d{rng.randrange(500)}">{sentence(rng, WORDS, words)}</document>'
        for _ in range(count)
    )


def _rag_body(model: str, system: str, docs: str, turns: list[tuple[str, str]]) -> dict:
    """Anthropic Messages with four breakpoints: the system prompt, the documents, and the
    last two user turns (the previous request's end, where its entry was written)."""
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    messages = []
    for i, (role, text) in enumerate(turns):
        if role == "assistant":
            messages.append({"role": role, "content": text})
            continue
        blocks = [{"type": "text", "text": text}]
        if i in users[-2:]:
            blocks[0]["cache_control"] = _EPHEMERAL
        if i == 0:
            blocks.insert(0, {"type": "text", "text": docs, "cache_control": _EPHEMERAL})
        messages.append({"role": role, "content": blocks})
    return {
        "model": model,
        "max_tokens": 512,
        "system": [{"type": "text", "text": system, "cache_control": _EPHEMERAL}],
        "messages": messages,
    }


def rag(g: Any, s: Session, t: float, incident: Any) -> Built:
    rng, name = g.rngs["rag"], incident.name if incident else None
    if not s.messages:
        s.messages.append(("user", sentence(rng, WORDS, 10) + "?"))
    else:
        s.messages.append(("assistant", sentence(rng, WORDS, 40)))
        s.messages.append(("user", sentence(rng, WORDS, 10) + "?"))
    docs = documents(g.seed, s.docs_key or s.key)
    model, order, sep = "claude-sonnet-4-5", list(docs), "\n"
    if name == "model_canary" and rng.random() < 0.2:
        model = "claude-haiku-4-5"
    if name == "retriever_ties":  # documents 0-5 score in tied pairs: either order
        for i in range(0, 6, 2):
            if rng.random() < 0.5:
                order[i], order[i + 1] = order[i + 1], order[i]
    if name == "template_whitespace" and rng.random() < 0.5:
        sep = "\n\n"  # the new template on half the workers
    sent = _rag_body(model, g.policy, sep.join(order), s.messages)
    clean = _rag_body("claude-sonnet-4-5", g.policy, "\n".join(docs), s.messages)
    meta = {"prompt_version": "rag-v2", "schema_version": "none"}
    if sent != clean:
        return Built(sent, clean, incident.cause, meta)
    return Built(sent, meta=meta)


def research(g: Any, s: Session, t: float, task: int) -> Built:
    """A Responses API run: three tasks on one document, sent in parallel each round."""
    rng = g.rngs["research"]
    if task == 0:
        if not s.messages:
            doc = f"Run {rng.getrandbits(32):08x}\n" + "\n".join(
                documents(g.seed, s.key, count=6, words=220)
            )
            s.messages.append({"role": "user", "content": doc})
        s.round = list(s.messages)
    question = TASKS[task] + " " + sentence(rng, CODE, 8)
    body = {
        "model": "gpt-4.1",
        "instructions": g.instructions,
        "input": [*s.round, {"role": "user", "content": question}],
        "prompt_cache_key": s.key,
    }
    if task == 0:
        s.messages.append({"role": "user", "content": question})
        s.messages.append({"role": "assistant", "content": sentence(rng, CODE, 80)})
    return Built(body, meta={"prompt_version": "research-v1", "schema_version": "none"})


def strip_old_reasoning(history: list[dict]) -> list[dict]:
    """What some clients send: reasoning kept only after the last user message."""
    last_user = max(i for i, m in enumerate(history) if m["role"] == "user")
    return [
        {k: v for k, v in m.items() if k != "reasoning_content"} if i < last_user else m
        for i, m in enumerate(history)
    ]


def truncate_old_tool_outputs(history: list[dict], keep: int = 2, words: int = 30) -> list[dict]:
    """A context manager's trim: tool outputs before the last ``keep`` cut to ``words``."""
    tools_at = [i for i, m in enumerate(history) if m["role"] == "tool"]
    old = set(tools_at[:-keep]) if keep else set(tools_at)
    return [
        {**m, "content": " ".join(m["content"].split()[:words]) + " [truncated]"} if i in old else m
        for i, m in enumerate(history)
    ]
