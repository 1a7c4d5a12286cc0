"""Do the alert rules catch every injected incident, in time, with the right cause, and
stay quiet otherwise?

For each seed of the extended generator (``analysis.traffic``: four services,
seventeen injected incidents a day, every request labelled with its true
cause) it generates a day of traffic, stores and explains it twice — hashes
only (content capture off, the default) and with content captured — evaluates
the alert rules, and scores the incidents (one row each) against the labels:

- an incident is **caught** when an incident (alert) on its route is raised
  within ``DELAY_WINDOWS`` windows of the incident's first window (the window its
  first signal completed the evidence in, not the start it is dated back to) with
  the injected cause among its top two causes. The incident's first window is the window of
  its first request on its route (a quiet night shows nothing until a request
  comes);
- a **false alarm** is an alert that starts outside every incident on its route
  (from one window before its start to its end, or to the last window it could be
  caught in when later).

The ``true`` column counts the requests of the incident whose true cause (from
the simulator's cache state, not from our explainer) is the injected one, and
``in time`` those of them an alert raised in time could have seen: in the
incident's first window or the ``DELAY_WINDOWS`` after it. An incident with fewer
than ``VISIBLE`` in time is marked ``unseen`` when missed (no rule with a minimum
of evidence can catch it in time), and the summary gives the share caught both
over all incidents and over the visible ones.

Seeds were named before any tuning: the rules were tuned on ``TUNING_SEEDS``
only; ``HELD_OUT_SEEDS`` were run once, and what that run showed informed one
change, so ``FRESH_SEEDS`` (named before that change) were the held-out figures; after
they had been looked at, ``LATEST_SEEDS`` were named for the next run, after those
``NEXT_SEEDS``, ``AFTER_SEEDS`` before the rules changed on what 107-112 showed, and
``LATER_SEEDS`` before that change was scored on 113-115.

    python benchmarks/eval_alerts.py [--seeds tuning|held-out|fresh|latest|next|after|later|1,2]
        [--cache DIR]
        [--hashes-only|--content]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import alerts  # noqa: E402
from analysis.explain import Explainer  # noqa: E402
from analysis.traffic import labels_path  # noqa: E402
from collector import files  # noqa: E402
from collector.explanations import explain_new  # noqa: E402
from collector.records import ingest_file  # noqa: E402
from collector.service import alerts as service_alerts  # noqa: E402
from collector.store.database import Store  # noqa: E402

# Chosen before any tuning (the same seeds as eval_explain.py).
TUNING_SEEDS = (1, 2)
HELD_OUT_SEEDS = (101, 102, 103)
# The first held-out run (4.3 false alarms a day) showed sporadic causes firing on three
# or four requests; the rules then learned the route's cause mix over the day before.
# Since 101-103 informed that change, these were named before it and never looked at
# before the final run: the held-out figures to quote.
FRESH_SEEDS = (104, 105, 106)
# Named on 2026-12-01 before anything of that session's was scored, after 104-106 had been
# looked at: the figures to quote for the rules as they stand now (no thresholds changed
# since 104-106; the judge was made faster with the same results on the tuning seeds).
LATEST_SEEDS = (107, 108, 109)
# Named on 2026-12-01 (the second session that day), before anything was scored: the
# rules unchanged, the scorer's "visible" made "in time" (above).
NEXT_SEEDS = (110, 111, 112)
# Named on 2026-12-01 before any change to the rules was tried on 107-112 (whose misses
# were then looked at): the figures to quote for a version changed after that.
AFTER_SEEDS = (113, 114, 115)
# The change scored on 113-115: the usual mix only from windows at least as busy (the
# outage on /research, missed on 107-112, read the night's lapses as its usual mix);
# mix_density was set to 0.5 before any run, then scored on 1, 2 and 107-112 (seen) and
# once on 113-115. Named on 2026-12-01 before 113-115 were scored, for the next change.
LATER_SEEDS = (116, 117, 118)
SESSIONS_PER_HOUR = 200.0  # about 17k requests a seed over 24 h, as eval_explain.py
DELAY_WINDOWS = 2  # how late an alert may start, in windows after the incident's first
TOP = 2  # the injected cause must be among the alert's top this many causes
MODES = ("hashes", "content")
# An incident is visible when its injected cause truly broke this many requests in time
# to be caught (the rules' minimum of evidence, ``Rules.min_count``): one with fewer (a
# quiet night whose sessions mostly end before the TTL, an outage most prefixes outlive)
# shows a request or two by its deadline. Until 2026-12-01 the count was taken over any
# two windows of the incident, however late; a quiet night's third lapse two hours in
# made it "visible" though no alert raised then is in time.
VISIBLE = 3


def _at(truth: dict, seconds: float) -> datetime:
    return datetime.fromtimestamp(truth["start"] + seconds, UTC).replace(tzinfo=None)


def raised(alert: alerts.Alert) -> datetime:
    """The window an alert is raised in: the one its first signal completed the
    evidence in (an incident's start is dated back to its first broken request)."""
    return datetime.fromisoformat(alert.signals[0]["at"]) if alert.signals else alert.started_at


def score(
    found: list[alerts.Alert], seen: list[datetime], truth: dict, rules: alerts.Rules
) -> tuple[list[dict], list[alerts.Alert]]:
    """(one outcome per incident, the alerts outside every incident); ``seen`` holds
    each incident's first request (``first_requests``)."""
    step = timedelta(seconds=rules.window_s)
    outcomes = []
    for incident, first in zip(truth["incidents"], seen, strict=True):
        first -= timedelta(seconds=(first - _at(truth, 0)).total_seconds() % rules.window_s)
        near = [
            a
            for a in found
            if a.group.get("route") == incident["route"]
            and first - step <= a.started_at
            and raised(a) <= first + DELAY_WINDOWS * step
        ]
        right = [a for a in near if incident["cause"] in [c[0] for c in a.top_causes[:TOP]]]
        alert = (right or near or [None])[0]
        delay = max((raised(alert) - first) / step, 0) if alert else None
        outcomes.append(
            {
                "incident": incident["name"],
                "route": incident["route"],
                "cause": incident["cause"],
                "true": incident.get("true"),
                "in_time": incident.get("in_time"),
                "visible": incident.get("visible", True),
                "rule": alert.rule if alert else None,
                "delay": delay,
                "top": [c[0] for c in alert.top_causes[:TOP]] if alert else [],
                "caught": bool(right),
            }
        )
    false = [
        a
        for a in found
        if not any(
            i["route"] == a.group.get("route")
            and _at(truth, i["start"]) - step
            <= a.started_at
            <= max(_at(truth, i["end"]), first + DELAY_WINDOWS * step)
            for i, first in zip(truth["incidents"], seen, strict=True)
        )
    ]
    return outcomes, false


def first_requests(con: duckdb.DuckDBPyConnection, truth: dict) -> list[datetime]:
    """The time of each incident's first request on its route: its first request from
    its start on (an outage holds every request back until it ends)."""
    seen = []
    for incident in truth["incidents"]:
        since = _at(truth, incident["start"])
        (first,) = con.execute(
            "SELECT min(ts) FROM requests WHERE route = ? AND ts >= ?",
            [incident["route"], since],
        ).fetchall()[0]
        seen.append(first or since)
    return seen


def true_counts(path: str, truth: dict, window_s: int) -> list[tuple[int, int]]:
    """Per incident: its requests whose true cause is the injected one, and how many of
    them come in time to be caught: in its first window (that of its first request on
    its route, windows counted from the traffic's start) or the ``DELAY_WINDOWS`` after."""
    times: dict[tuple, list[float]] = {}
    routes: dict[str, list[float]] = {}
    with files.reading(path) as (_, handle):
        for line in handle:
            record = json.loads(line)
            stamp = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
            t = stamp.timestamp() - truth["start"]
            routes.setdefault(record["route"], []).append(t)
            key = (record.get("incident"), record["route"], record.get("cause"))
            times.setdefault(key, []).append(t)
    out = []
    for i in truth["incidents"]:
        found = times.get((i["name"], i["route"], i["cause"]), [])
        first = min((t for t in routes.get(i["route"], []) if t >= i["start"]), default=i["start"])
        since = first - first % window_s
        until = since + (DELAY_WINDOWS + 1) * window_s
        out.append((len(found), sum(since <= t < until for t in found)))
    return out


def traffic(seed: int, cache: Path) -> Path:
    """A generated day for ``seed`` (with its labels), made once in ``cache``."""
    path = cache / f"seed{seed}.jsonl.gz"
    if not path.exists():
        part = cache / f"seed{seed}.part.jsonl.gz"
        subprocess.run(
            [sys.executable, "-m", "cachediag", "generate", "--seed", str(seed)]
            + ["--hours", "24", "--sessions-per-hour", str(SESSIONS_PER_HOUR)]
            + ["--out", str(part)],
            cwd=ROOT,
            check=True,
        )
        Path(labels_path(str(part))).rename(labels_path(str(path)))
        part.rename(path)
    labels = Path(labels_path(str(path)))
    truth = json.loads(labels.read_text())
    if truth["incidents"] and "in_time" not in truth["incidents"][0]:
        counted = true_counts(str(path), truth, alerts.Rules().window_s)
        for incident, (n, in_time) in zip(truth["incidents"], counted, strict=True):
            incident.update(true=n, in_time=in_time, visible=in_time >= VISIBLE)
        labels.write_text(json.dumps(truth))
    return path


def database(path: Path, mode: str, cache: Path) -> Path:
    """The traffic stored (content captured or not) and explained, made once in
    ``cache``."""
    db = cache / f"{path.name.removesuffix('.jsonl.gz')}-{mode}.duckdb"
    if not db.exists():
        part = db.with_suffix(".part")
        store = Store(str(part))
        ingest_file(store, str(path), capture=mode == "content")
        explain_new(store, Explainer())
        store.close()
        part.rename(db)
    return db


def evaluate(db: Path, truth: dict, rules: alerts.Rules) -> tuple[list[dict], list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = service_alerts.find(con.cursor(), rules)
        return score(found, first_requests(con, truth), truth, rules)
    finally:
        con.close()


def scored_file(path: str, truth: dict, rules: alerts.Rules) -> tuple[list[dict], list]:
    """Score one traffic file with its labels, stored (content captured) and explained
    in a scratch database."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/eval.duckdb")
        try:
            ingest_file(store, path, capture=True)
            explain_new(store, Explainer())
            found = service_alerts.find(store.cursor(), rules)
            return score(found, first_requests(store.cursor(), truth), truth, rules)
        finally:
            store.close()


def _report(name: str, outcomes: list[dict], false: list) -> None:
    print(f"\n{name}")
    head = f"{'incident':22} {'route':10} {'cause':20} {'true':>5} {'in time':>7}"
    print(f"  {head}  result  delay  rule / top")
    for o in outcomes:
        when = f"+{o['delay']:.0f}" if o["delay"] is not None else "-"
        mark = "caught" if o["caught"] else "MISSED" if o["visible"] else "unseen"
        top = ", ".join(o["top"]) or "no alert"
        print(
            f"  {o['incident']:22} {o['route']:10} {o['cause']:20} {o['true'] or 0:5} "
            f"{o['in_time'] or 0:7}  "
            f"{mark:7} {when:5}  {o['rule'] or '':13} {top}"
        )
    for alert in false:
        print(f"  FALSE ALARM  {alerts.slack_text(alert)}")


SEED_SETS = {  # --seeds NAME: (the title printed, the seeds)
    "tuning": ("tuning", TUNING_SEEDS),
    "held-out": ("HELD OUT (never used for tuning; its first run informed one change)",
                 HELD_OUT_SEEDS),
    "fresh": ("FRESH HELD OUT (named before the last change, run once)", FRESH_SEEDS),
    "latest": ("LATEST HELD OUT (named before this version was scored, run once)", LATEST_SEEDS),
    "next": ("NEXT HELD OUT (named before the in-time scoring was run, run once)", NEXT_SEEDS),
    "after": ("AFTER HELD OUT (named before the rules changed on 107-112, run once)",
              AFTER_SEEDS),
    "later": ("LATER HELD OUT (named before 113-115 were scored, for the next change)",
              LATER_SEEDS),
}  # fmt: skip


def _seeds(text: str) -> tuple[str, tuple[int, ...]]:
    if text in SEED_SETS:
        return SEED_SETS[text]
    return "ad hoc", tuple(int(s) for s in text.split(",") if s.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="tuning", help=f"{', '.join(SEED_SETS)} or 1,2,...")
    parser.add_argument("--cache", help="keep generated days and databases here")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--hashes-only", action="store_true")
    mode.add_argument("--content", action="store_true")
    args = parser.parse_args()
    title, seeds = _seeds(args.seeds)
    modes = ("hashes",) if args.hashes_only else ("content",) if args.content else MODES
    rules = alerts.Rules()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        totals = {m: [0, 0, 0, 0, 0] for m in modes}  # caught, incidents, false, visible
        for seed in seeds:
            path = traffic(seed, cache)
            truth = json.loads(Path(labels_path(str(path))).read_text())
            for m in modes:
                outcomes, false = evaluate(database(path, m, cache), truth, rules)
                _report(f"seed {seed}, {m}", outcomes, false)
                totals[m][0] += sum(o["caught"] for o in outcomes)
                totals[m][1] += len(outcomes)
                totals[m][2] += len(false)
                totals[m][3] += sum(o["caught"] for o in outcomes if o["visible"])
                totals[m][4] += sum(o["visible"] for o in outcomes)
    print(f"\n== {title}: seeds {', '.join(map(str, seeds))}")
    for m, (caught, incidents, false, seen, visible) in totals.items():
        days = len(seeds) * truth["hours"] / 24
        print(
            f"{m:8} {caught} of {incidents} incidents caught ({caught / max(incidents, 1):.1%}) "
            f"within {DELAY_WINDOWS} windows with the injected cause in the top {TOP}; "
            f"of the visible ones {seen} of {visible} ({seen / max(visible, 1):.1%}); "
            f"{false} false alarms over {days:g} days ({false / days:.2f} a day)"
        )


if __name__ == "__main__":
    main()
