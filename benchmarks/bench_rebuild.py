"""Benchmark: mapping spans whose prompt another library captured (rebuilt and
fingerprinted at ingest) against the same spans carrying our fingerprint.

A 30-turn conversation (tests' 3-tool spec, a ~2k-token system prompt) is
recorded once per turn in each convention; each turn's span is mapped in turn
order, as ingest sees a conversation, so the fingerprint memo holds the earlier
turns. Prints the median time per span for each convention next to the
baseline (the spans our instrumentation exports, fingerprint already attached)
and their ratio.

    python benchmarks/bench_rebuild.py [--turns N] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector import bodies, captured, mapping  # noqa: E402
from collector.decoded import Record  # noqa: E402
from tests import cases, conventions  # noqa: E402


def conversation(turns: int) -> list[dict]:
    spec = cases.base_spec()
    spec["system"] = spec["system"] + "\n\n" + "\n\n".join(cases.DOCS * 60)
    spec["turns"] = [{"role": "user", "text": "Where is my order 1182?"}]
    out = []
    for turn in range(turns):
        out.append(cases.build("openai_chat", spec))
        spec["turns"] = [
            *spec["turns"],
            {"role": "assistant", "text": f"It shipped on day {turn}."},
            {"role": "user", "text": f"And order {1183 + turn}?"},
        ]
    return out


def records(attrs: list[dict]) -> list[Record]:
    return [
        Record(signal="span", trace_id=f"{i:032x}", span_id=f"{i:016x}", name="chat gpt-4o",
               start_ns=10**18 + i, end_ns=10**18 + i + 10**9, attributes=a)
        for i, a in enumerate(attrs)
    ]  # fmt: skip


def per_span_ms(spans: list[Record], repeat: int) -> float:
    """Median milliseconds per span, mapping the whole conversation ``repeat`` times
    (a fresh memo each time: the process's memo is reset between runs)."""
    runs = []
    for _ in range(repeat):
        captured._MEMO = type(captured._MEMO)()
        start = time.perf_counter()
        for record in spans:
            mapping.map_record(record)
        runs.append((time.perf_counter() - start) * 1000 / len(spans))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bodies_ = conversation(args.turns)
    ours = [{"gen_ai.provider.name": "openai", **bodies.fingerprint_body(b)[1]} for b in bodies_]
    base = per_span_ms(records(ours), args.repeat)
    print(f"{args.turns} turns; baseline (our fingerprint attached): {base:.3f} ms/span")
    for name, encode in sorted(conventions.CHAT.items()):
        took = per_span_ms(records([encode(b) for b in bodies_]), args.repeat)
        print(f"  {name:20s} {took:8.3f} ms/span  {took / base:6.1f}x baseline")


if __name__ == "__main__":
    main()
