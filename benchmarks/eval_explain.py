"""Per-cause precision and recall of the explanations against a traffic file's labels.

Loads generated traffic (default: the committed sample) into a scratch
database, explains it, and compares each request's cause with the cause of
the incident that was active on it (the generator records one per request).
A request counts for recall when it was labelled and missed the cache. Healthy
requests (no incident active) given a miss cause are counted too, by cause:
the generator's natural pauses past the TTL are among them, rightly.

    python benchmarks/eval_explain.py [FILE] [--hashes-only]

``--hashes-only`` stores no content, as a service with content capture off (the
default) sends: causes then come from the segment maps' hashes alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.explain import NOT_MISSES, Explainer  # noqa: E402
from analysis.traffic import labels_path  # noqa: E402
from collector import files  # noqa: E402
from collector.explanations import explain_new  # noqa: E402
from collector.records import ingest_file  # noqa: E402
from collector.store.database import Store  # noqa: E402


def truth(path: str) -> dict[str, str | None]:
    """Record id ─► the cause its active incident should be explained by."""
    labels = json.loads(Path(labels_path(path)).read_text())
    causes = {i["name"]: i["cause"] for i in labels["incidents"]}
    with files.reading(path) as (_, handle):
        records = (json.loads(line) for line in handle if line.strip())
        return {r["id"]: causes.get(r.get("incident")) for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default=str(ROOT / "sample_data/traffic.jsonl.gz"))
    parser.add_argument("--hashes-only", action="store_true", help="store no content")
    args = parser.parse_args()
    path = args.file
    expected = truth(path)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/eval.duckdb")
        ingest_file(store, path, capture=not args.hashes_only)
        explain_new(store, Explainer())
        got = dict(store.con.execute("SELECT id, cause FROM explanations").fetchall())
        store.close()
    predicted, correct, labelled, healthy = Counter(), Counter(), Counter(), Counter()
    for rid, cause in got.items():
        want = expected.get(rid)
        predicted[cause] += 1
        if not want:
            healthy[cause] += 1
        elif cause not in NOT_MISSES:
            labelled[want] += 1
            correct[want] += cause == want
    print(f"{len(got):,} requests explained; {sum(labelled.values()):,} labelled misses")
    print(f"{'cause':20} {'predicted':>9} {'labelled':>9} {'precision':>9} {'recall':>7}")
    for cause in sorted(set(labelled) | (set(predicted) - set(NOT_MISSES))):
        hits = correct[cause]
        precision = hits / predicted[cause] if predicted[cause] else float("nan")
        recall = hits / labelled[cause] if labelled[cause] else float("nan")
        print(
            f"{cause:20} {predicted[cause]:9,} {labelled[cause]:9,} {precision:9.1%} {recall:7.1%}"
        )
    blamed = {c: n for c, n in healthy.items() if c not in NOT_MISSES}
    share = sum(blamed.values()) / max(sum(healthy.values()), 1)
    print(
        f"healthy requests given a miss cause: {sum(blamed.values()):,} of "
        f"{sum(healthy.values()):,} ({share:.1%})"
        + "".join(f"; {c} {n:,}" for c, n in sorted(blamed.items()))
    )


if __name__ == "__main__":
    main()
