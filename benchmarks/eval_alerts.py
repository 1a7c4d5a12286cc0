"""Do the alert rules catch every labelled incident, in time, with the right cause?

For each traffic file (the committed sample, plus days generated with other
seeds) it stores and explains every request, evaluates the cache-hit rules,
and scores them against the labels: an incident is caught when an alert on its
route starts within two windows of the incident's first window and names the
injected cause first; an alert that starts outside every incident (or the
window before one) is a false alarm. An incident's first window is the window
of its first request on its route: a quiet night that has no traffic for an
hour shows nothing to alert on until a request arrives. Other seeds show
whether the rules fit the traffic or only the one sample they were tuned on.

    python benchmarks/eval_alerts.py [--seeds 2,3,4,5] [FILE...]
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
from collector.explanations import explain_new  # noqa: E402
from collector.records import ingest_file  # noqa: E402
from collector.service import alerts as service_alerts  # noqa: E402
from collector.store.database import Store  # noqa: E402

DELAY_WINDOWS = 2  # how late an alert may start, in windows after the incident's first


def score(
    found: list[alerts.Alert], seen: list[datetime], truth: dict, rules: alerts.Rules
) -> tuple[list, list]:
    """(one outcome per incident, the alerts outside every incident); ``seen`` holds
    each incident's first request (``first_requests``)."""
    step = rules.window_s

    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(truth["start"] + seconds, UTC).replace(tzinfo=None)

    outcomes = []
    for incident, first in zip(truth["incidents"], seen, strict=True):
        first -= timedelta(seconds=(first - at(0)).total_seconds() % step)
        raised = [
            a
            for a in found
            if a.group["route"] == incident["route"]
            and first <= a.started_at <= at(incident["end"])
        ]
        alert = raised[0] if raised else None
        delay = (alert.started_at - first).total_seconds() / step if alert else None
        top = alert.top_causes[0][0] if alert and alert.top_causes else None
        outcomes.append(
            {
                "incident": incident["name"],
                "cause": incident["cause"],
                "rule": alert.rule if alert else None,
                "delay": delay,
                "top": top,
                "caught": alert is not None and delay <= DELAY_WINDOWS and top == incident["cause"],
            }
        )
    false = [
        a
        for a in found
        if not any(
            i["route"] == a.group["route"] and at(i["start"] - step) <= a.started_at <= at(i["end"])
            for i in truth["incidents"]
        )
    ]
    return outcomes, false


def first_requests(con: duckdb.DuckDBPyConnection, truth: dict) -> list[datetime]:
    """The time of each incident's first request on its route."""
    seen = []
    for incident in truth["incidents"]:
        since, until = (
            datetime.fromtimestamp(truth["start"] + incident[k], UTC).replace(tzinfo=None)
            for k in ("start", "end")
        )
        (first,) = con.execute(
            "SELECT min(ts) FROM requests WHERE route = ? AND ts >= ? AND ts < ?",
            [incident["route"], since, until],
        ).fetchall()[0]
        seen.append(first or since)
    return seen


def cache_alerts(
    path: str, truth: dict, rules: alerts.Rules
) -> tuple[list[alerts.Alert], list[datetime]]:
    """Every cache-hit alert (not TTFT) over one traffic file, stored and explained, and
    the first request of each incident in its labels (``truth``)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/eval.duckdb")
        ingest_file(store, path, capture=True)
        explain_new(store, Explainer())
        found = service_alerts.find(store.cursor(), rules)
        seen = first_requests(store.cursor(), truth)
        store.close()
    return [a for a in found if a.rule != "ttft_p95_rise"], seen


def _report(name: str, outcomes: list, false: list) -> None:
    print(f"\n{name}")
    for o in outcomes:
        when = f"+{o['delay']:.0f} windows" if o["rule"] else "no alert"
        mark = "caught" if o["caught"] else "MISSED"
        print(f"  {o['incident']:24} {mark:7} {when:11} {o['rule'] or '':13} top={o['top']}")
    for alert in false:
        print(f"  FALSE ALARM  {alerts.slack_text(alert)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="traffic files with .labels.json beside them")
    parser.add_argument("--seeds", default="2,3,4,5", help="also generate a day per seed")
    args = parser.parse_args()
    rules = alerts.Rules()
    files = args.files or [str(ROOT / "sample_data/traffic.jsonl.gz")]
    caught = incidents = false_alarms = 0
    with tempfile.TemporaryDirectory() as tmp:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        print(f"generating a day for each of seeds {seeds} …", flush=True)
        jobs = [
            subprocess.Popen(
                [sys.executable, "-m", "cachediag", "generate", "--seed", str(seed), "--out"]
                + [f"{tmp}/seed{seed}.jsonl.gz"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            for seed in seeds
        ]
        if any(job.wait() for job in jobs):
            sys.exit("generating traffic failed (see above)")
        files += [f"{tmp}/seed{seed}.jsonl.gz" for seed in seeds]
        for path in files:
            truth = json.loads(Path(labels_path(path)).read_text())
            outcomes, false = score(*cache_alerts(path, truth, rules), truth, rules)
            _report(Path(path).name, outcomes, false)
            caught += sum(o["caught"] for o in outcomes)
            incidents += len(outcomes)
            false_alarms += len(false)
    print(
        f"\n{caught} of {incidents} incidents caught within {DELAY_WINDOWS} windows with the "
        f"injected cause on top; {false_alarms} false alarms over {len(files)} days"
    )


if __name__ == "__main__":
    main()
