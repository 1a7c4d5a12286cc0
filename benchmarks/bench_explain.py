"""Benchmark: explain throughput and peak memory over a day of realistic traffic, alert
rules over ten million rows.

Realistic mode (the default): a day of `cachediag generate` traffic (real bodies,
fingerprinted at ingest with the canonical segment hashes) is generated once into
``benchmarks/.cache/`` (or read from ``--traffic FILE``), ingested hash-only as a
user's service sends it (``--content``: with the renderings captured) into a
database kept beside it, then explained by ``cachediag explain``'s pass in a child
process of its own: requests/s and the child's peak RSS, with DuckDB's memory_limit.
``--baseline-code DIR`` explains the same database with another checkout's code
(e.g. ``git archive main | tar -x -C DIR``) first, for the before column.

Synthetic mode (``--synthetic``): the database is built with SQL (sessions of growing
conversations sharing per-route prefixes; a tenth of the requests miss), as before.

Targets: >= 10,000 requests/s explained at <= 2 GB peak RSS; rules over 10 M rows in
<= 2 s.

    python benchmarks/bench_explain.py [--requests N] [--traffic FILE] [--content]
        [--baseline-code DIR] [--synthetic] [--rule-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("BENCH_CODE", str(ROOT)))

from analysis.explain import Explainer  # noqa: E402
from collector.explanations import explain_new  # noqa: E402
from collector.store import database  # noqa: E402
from collector.store.database import Store  # noqa: E402
from collector.store.migrations import pack_sql  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RECORDS_PER_SESSION_HOUR = 57  # records a day of `generate` makes per --sessions-per-hour
# What the issue measured before (#15, item 6), a generated day of about 1 M requests.
PREVIOUS = (
    "before (issue #15): 1 M requests in 806 s = 1,241 requests/s at 18.5 GB peak RSS "
    "with memory_limit 14 GB; OOM-killed at 24.2 GB without it"
)
SESSIONS = 5000  # synthetic: conversations running at once; each takes 8 turns
HASHES = """list_transform(range(20 + 5 * turn), lambda k: (CASE WHEN k < 20
                   THEN hash(session % 5, k) ELSE hash(session, k) END
                   % 9223372036854775807)::BIGINT)"""


def fill_sessions(store: Store, n: int) -> None:
    """``n`` requests: 5,000 concurrent sessions x 8 turns, 5 routes, 3 replicas."""
    store.con.execute(f"""
        INSERT INTO requests (id, ts, signal, session_key, request_model, provider, route,
                              replica, block_hashes, block_size, total_tokens, prompt_tokens,
                              cached_tokens, segments, ttft_ms)
        WITH base AS (
            SELECT i AS n, i % {SESSIONS} + {SESSIONS} * (i // ({SESSIONS} * 8)) AS session,
                   (i // {SESSIONS}) % 8 AS turn FROM range({n}) t(i))
        SELECT 'r' || n, TIMESTAMP '2026-01-01' + to_microseconds((n * 80000)::BIGINT), 'span',
               's' || session, 'gpt-4o', 'openai', '/r' || (session % 5),
               'rep' || (session % 3),
               {pack_sql(HASHES)},
               64, (20 + 5 * turn) * 64 + 30, (20 + 5 * turn) * 64 + 30,
               CASE WHEN n % 10 = 0 THEN 0 ELSE (20 + 5 * turn) * 64 END,
               '[["tools[0]","tool",0,1280,"t' || (session % 5) || '"],' || array_to_string(
                   list_transform(range(turn + 1), lambda k: format(
                       '["messages[{{}}].content","message",{{}},{{}},"m{{}}_{{}}"]',
                       k, 1280 + k * 320, 1600 + k * 320, session, k)), ',') || ']',
               200 + (n % 97)
        FROM base""")


def fill_flat(store: Store, n: int) -> None:
    """``n`` requests with what the rules read: 10 routes x 2 models x 4 replicas, 30 days."""
    store.con.execute("DROP INDEX requests_ts")
    store.con.execute(f"""
        INSERT INTO requests (id, ts, signal, route, request_model, replica, prompt_version,
                              prompt_tokens, cached_tokens, ttft_ms)
        SELECT 'f' || i, TIMESTAMP '2026-01-01' + to_microseconds((i * 260000)::BIGINT),
               'span', '/r' || (i % 10), CASE WHEN i % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4.1' END,
               'rep' || (i % 4), 'v' || (i // 1000000), 2000 + i % 500,
               CASE WHEN i % 7 = 0 THEN 0 ELSE 1536 END, 150 + (i % 211)
        FROM range({n}) t(i)""")


def day_file(requests: int, seed: int = 1) -> Path:
    """A generated day of about ``requests`` requests, made once and kept in CACHE."""
    path = CACHE / f"day-{requests}.jsonl.gz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        part = CACHE / f"day-{requests}.part.jsonl.gz"
        rate = max(requests / RECORDS_PER_SESSION_HOUR, 1.0)
        print(f"generating {path} (about {requests:,} requests; minutes) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "cachediag", "generate", "--hours", "24"]
            + ["--sessions-per-hour", f"{rate:.0f}", "--seed", str(seed), "--out", str(part)],
            cwd=ROOT,
            check=True,
        )
        part.rename(path)
        labels = CACHE / f"day-{requests}.part.labels.json"
        if labels.exists():
            labels.rename(CACHE / f"day-{requests}.labels.json")
    return path


def _child(*args: str, code: Path = ROOT) -> tuple[dict, int]:
    """Run this script's ``--child`` mode in a process of its own (with the code of
    ``code``): what it prints, and its own peak RSS in KiB (from wait4)."""
    env = dict(os.environ, BENCH_CODE=str(code), PYTHONPATH=str(code))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        cwd=code,
        env=env,
        stdout=subprocess.PIPE,
    )
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"child {args} ({code}) failed: {out[-500:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss


def child(mode: str, db: str, traffic: str = "", option: str = "") -> None:
    """In the child: ingest ``traffic`` into ``db`` (``option`` "content": captured), or
    explain all of ``db`` afresh (``option``: DuckDB's memory_limit in MiB, if given)."""
    if mode == "ingest":
        from collector.records import ingest_file

        store = Store(db)
        start = time.perf_counter()
        report = ingest_file(store, traffic, capture=option == "content")
        took = time.perf_counter() - start
        store.close()
        print(json.dumps({"rows": report.stored, "seconds": took}))
        return
    store = Store(db) if not option else Store(db, memory_mib=int(option))
    store.con.execute("DELETE FROM explanations").fetchall()
    limit = store.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    explainer = Explainer()
    start, cpu = time.perf_counter(), time.process_time()
    _, counts = explain_new(store, explainer)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    store.close()
    state = {  # what the explainer holds at the end
        "remembered": len(explainer._remembered),
        "bytes": getattr(explainer, "_bytes", None),
        "blocks": len(explainer._blocks),
    }
    done = {"rows": counts.total(), "seconds": took, "cpu": cpu, "limit": limit}
    print(json.dumps({**done, **state}))


def ingested(traffic: Path, content: bool) -> Path:
    """The database of ``traffic`` ingested (hash-only unless ``content``), made once."""
    mode = "content" if content else "hash"
    db = CACHE / f"{traffic.name.split('.')[0]}.{mode}.duckdb"
    if not db.exists():
        part = db.with_suffix(".part")
        for old in CACHE.glob(part.name + "*"):
            old.unlink()
        print(f"ingesting {traffic} into {db} ({mode}) ...", flush=True)
        done, peak = _child("ingest", str(part), str(traffic), mode)
        part.rename(db)
        print(
            f"ingest: {done['rows']:,} rows in {done['seconds']:.0f} s = "
            f"{done['rows'] / done['seconds']:,.0f} rows/s (peak RSS {peak / 1024:,.0f} MiB); "
            "not part of the explain figures"
        )
    return db


def replicated(db: Path, copies: int) -> Path:
    """``copies`` copies of an ingested day in the same day, made once: new ids and
    session keys, each copy's block hashes its own (xor the copy's number), a copy a
    millisecond after the one before. A day ``copies`` times as busy, for when
    generating it whole takes too long (an hour a million on 2 idle cores)."""
    out = db.with_name(db.name.replace(".duckdb", f".x{copies}.duckdb"))
    if out.exists():
        return out
    part = out.with_suffix(".part")
    shutil.copyfile(db, part)
    con = duckdb.connect(str(part))
    columns = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'requests'"
        ).fetchall()
    ]
    xored = pack_sql(
        "list_transform(range(octet_length(block_hashes) // 8), lambda i: xor(('0x' || "
        "substr(hex(block_hashes), i * 16 + 1, 16))::UBIGINT, k::UBIGINT))"
    )
    made = {
        "id": "'c' || k || '-' || id",
        "session_key": "'c' || k || '-' || session_key",
        "conversation_id": "'c' || k || '-' || conversation_id",
        "ts": "ts + to_milliseconds(k)",
        "block_hashes": xored,
    }
    select = ", ".join(made.get(c, c) for c in columns)
    print(f"making {out.name}: {copies} copies of {db.name} ...", flush=True)
    con.execute(
        f"INSERT INTO requests ({', '.join(columns)}) SELECT {select} "
        f"FROM requests, range(1, {copies}) t(k)"
    )
    con.execute(
        "INSERT INTO request_content SELECT 'c' || k || '-' || id, content "
        f"FROM request_content, range(1, {copies}) t(k)"
    )
    con.close()
    part.rename(out)
    return out


def realistic(args: argparse.Namespace) -> None:
    traffic = Path(args.traffic) if args.traffic else day_file(args.requests // args.copies)
    db = ingested(traffic, args.content)
    if args.copies > 1:
        db = replicated(db, args.copies)
    runs = [("this checkout", ROOT)]
    if args.baseline_code:
        runs.insert(0, (f"baseline {args.baseline_code}", Path(args.baseline_code)))
    copies = f" x {args.copies} copies" if args.copies > 1 else ""
    print(f"explain over {traffic.name}{copies} ({'content' if args.content else 'hash-only'}):")
    print(
        f"  {'code':<30} {'requests':>9} {'s':>6} {'req/s':>6} {'peak RSS MiB':>12} "
        f"{'limit':>8} {'remembered':>10} {'MiB':>4} {'blocks':>9} {'CPU s':>6}"
    )
    for name, code in runs:
        medians = []
        for _ in range(args.repeat):
            limit = str(args.memory_limit_mib or "")
            done, peak = _child("explain", str(db), "", limit, code=code)
            medians.append((done["seconds"], peak, done))
        seconds, peak, done = sorted(medians, key=lambda m: m[0])[len(medians) // 2]
        state = f"{(done['bytes'] or 0) / 2**20:>4.0f}" if done["bytes"] else "   ?"
        print(
            f"  {name:<30} {done['rows']:>9,} {seconds:>6.1f} {done['rows'] / seconds:>6,.0f} "
            f"{peak / 1024:>12,.0f} {done['limit']:>8} {done['remembered']:>10,} {state} "
            f"{done['blocks']:>9,} {done['cpu']:>6.1f}",
            flush=True,
        )
    print(f"  {PREVIOUS}")
    print(
        "  targets: >= 10,000 requests/s, peak RSS <= 2,048 MiB. MiB: the remembered requests'"
        " own estimate (_Seen.size); CPU s: all the child's threads (DuckDB's too)"
    )


def synthetic(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/explain.duckdb")
        fill_sessions(store, requests)
        start = time.perf_counter()
        store.con.execute(
            "SELECT sum(octet_length(block_hashes)), max(segments) FROM requests"
        ).fetchall()
        scan = time.perf_counter() - start
        start = time.perf_counter()
        _, counts = explain_new(store, Explainer())
        took = time.perf_counter() - start
        store.close()
    print(
        f"explain (synthetic rows): {counts.total():,} requests in {took:.1f} s = "
        f"{counts.total() / took:,.0f} requests/s (target 10,000); "
        f"DuckDB scans the same rows in {scan:.2f} s"
    )
    print("  causes: " + ", ".join(f"{c} {n:,}" for c, n in counts.most_common()))


def rules(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        from collector.service import alerts as service_alerts

        flat = Store(f"{tmp}/rules.duckdb")
        fill_flat(flat, rows)
        cur = flat.cursor()
        start = time.perf_counter()
        cur.execute("SELECT count(*), sum(prompt_tokens) FROM requests").fetchall()
        scan = time.perf_counter() - start
        start = time.perf_counter()
        found = service_alerts.find(cur)
        took = time.perf_counter() - start
        flat.close()
    print(
        f"alert rules over {rows:,} rows: {took:.2f} s (target 2 s), "
        f"{len(found)} alerts; DuckDB scans them in {scan:.2f} s"
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--traffic", help="a traffic file to explain instead of a day")
    parser.add_argument("--content", action="store_true", help="ingest with capture on")
    parser.add_argument(
        "--copies", type=int, default=1, help="a day of --requests / N requests, N times"
    )
    parser.add_argument("--baseline-code", help="explain with this checkout's code first")
    parser.add_argument(
        "--memory-limit-mib",
        type=int,
        # (a baseline checkout may predate it: its child is given the limit)
        default=getattr(database, "EXPLAIN_MEMORY_MIB", database.MEMORY_LIMIT_MIB),
        help="DuckDB's memory_limit for the explain pass",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per code (median)")
    parser.add_argument("--synthetic", action="store_true", help="SQL-built rows instead")
    parser.add_argument("--rule-rows", type=int, default=10_000_000, help="0: no rules")
    args = parser.parse_args()
    if args.synthetic:
        synthetic(args.requests)
    else:
        realistic(args)
    if args.rule_rows:
        rules(args.rule_rows)


if __name__ == "__main__":
    main()
