"""Benchmark: peak memory of `cachediag ingest` does not grow with the file.

Generates a day of traffic with `cachediag generate` (about 1,000,000 request
records, ~2.4 GB gzip; kept in a cache directory outside the repository and
reused by later runs), then runs `cachediag ingest` in a child process twice,
into fresh databases: on the first ``--baseline`` records (the baseline,
measured in the same run) and on the whole file. Prints the peak RSS of each
child (its own ru_maxrss, from wait4) and its rows/s. The figure: peak RSS of
the whole file, which must stay under 1 GiB, beside the baseline's.

    python benchmarks/bench_ingest_memory.py [--records N] [--baseline N] [--cache DIR]
        [--distinct N]

With --distinct N, only N records are generated and repeated, with new ids, up to
--records (every line is still a new row with its own content; memory is what grows
with rows stored, and generating a whole day is slower than ingesting it).

The earlier ingest kept growing with the data (11.9 GB peak on a 1 M-record day).
On 2 busy cores generating the day takes about 45 minutes, ingesting it about 20.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS_PER_SESSION_HOUR = 57  # records a day of `generate` makes per --sessions-per-hour
LIMIT_MIB = 1024


def cachediag(*args: str) -> list[str]:
    return [sys.executable, "-m", "cachediag", *args]


def day_file(cache: Path, records: int) -> Path:
    """The generated day, made once and reused (written aside, renamed when complete)."""
    path = cache / f"day-{records}.jsonl.gz"
    if not path.exists():
        part = cache / f"day-{records}.part.jsonl.gz"
        rate = max(records / RECORDS_PER_SESSION_HOUR, 1.0)
        print(f"generating {path} (about {records:,} records) ...", flush=True)
        subprocess.run(
            cachediag("generate", "--hours", "24", "--sessions-per-hour", f"{rate:.0f}")
            + ["--seed", "1", "--out", str(part)],
            cwd=ROOT,
            check=True,
        )
        part.rename(path)
    return path


def repeated_file(source: Path, cache: Path, records: int) -> Path:
    """``records`` lines made of ``source``'s over and over, each copy with ids of its
    own (so every line is a new row), when generating them all would take too long."""
    path = cache / f"{source.name.split('.')[0]}-repeated-{records}.jsonl.gz"
    if not path.exists():
        part = path.with_suffix(".part")
        written = copy = 0
        with gzip.open(part, "wb", compresslevel=1) as dst:
            while written < records:
                with gzip.open(source, "rb") as src:
                    for line in src:
                        if written == records:
                            break
                        dst.write(line.replace(b'"id":"', b'"id":"c%d-' % copy, 1))
                        written += 1
                copy += 1
        part.rename(path)
    return path


def head_file(source: Path, cache: Path, records: int) -> Path:
    """The first ``records`` lines of ``source``, gzip too."""
    path = cache / f"{source.name.split('.')[0]}-head-{records}.jsonl.gz"
    if not path.exists():
        part = path.with_suffix(".part")
        with gzip.open(source, "rb") as src, gzip.open(part, "wb", compresslevel=1) as dst:
            for _, line in zip(range(records), src, strict=False):
                dst.write(line)
        part.rename(path)
    return path


def ingest(path: Path, workdir: Path) -> tuple[int, float, int]:
    """(rows stored, seconds, peak RSS in KiB) of `cachediag ingest` on ``path``."""
    db = workdir / f"{path.name}.duckdb"
    started = time.monotonic()
    proc = subprocess.Popen(
        cachediag("ingest", "--db", str(db), str(path)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The child's own rusage (not every child's maximum); the pipes are small enough
    # not to fill, as ingest prints one summary line and no progress off a terminal.
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"ingest of {path} exited {proc.returncode}: {err.strip()[:500]}")
    found = re.search(r"([\d,]+) requests stored", out)
    rows = int(found.group(1).replace(",", "")) if found else 0
    for leftover in workdir.glob(f"{path.name}.duckdb*"):
        leftover.unlink()
    return rows, seconds, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument(
        "--distinct",
        type=int,
        default=None,
        help="generate only this many records and repeat them (new ids) up to --records",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "cachediag-bench"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.distinct and args.distinct < args.records:
        day = repeated_file(day_file(args.cache, args.distinct), args.cache, args.records)
    else:
        day = day_file(args.cache, args.records)
    small = head_file(day, args.cache, args.baseline)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        for name, path in (("baseline", small), ("whole day", day)):
            print(f"ingesting {path} ...", flush=True)
            results[name] = (path, *ingest(path, Path(tmp)))
    print(f"\n{'run':<10} {'gzip MiB':>9} {'rows':>11} {'rows/s':>8} {'peak RSS MiB':>13}")
    for name, (path, rows, seconds, peak) in results.items():
        size = path.stat().st_size / 2**20
        print(f"{name:<10} {size:>9,.0f} {rows:>11,} {rows / seconds:>8,.0f} {peak / 1024:>13,.0f}")
    (_, base_rows, _, base_peak), (_, rows, _, peak) = results.values()
    print(
        f"\n{rows / max(base_rows, 1):.1f}x the rows, {peak / base_peak:.2f}x the peak RSS; "
        f"peak {peak / 1024:,.0f} MiB ({'within' if peak / 1024 <= LIMIT_MIB else 'OVER'} "
        f"the {LIMIT_MIB:,} MiB bound)"
    )


if __name__ == "__main__":
    main()
