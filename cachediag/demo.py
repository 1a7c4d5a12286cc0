"""`cachediag demo`: the whole pipeline on this machine, from a recorded day to the dashboard.

Starts a server on free loopback ports, replays the sample traffic through
the instrumentation as OTLP, waits until every request is stored, explained
and alerted on, starts the dashboard, and prints the URLs and what was found
for each injected incident. Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "traffic.jsonl.gz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], ready: str, timeout: float = 120) -> subprocess.Popen:
    """A child process, returned once it printed ``ready`` (or fails with what it said)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    said, ended = b"", False  # the raw pipe: a buffered reader could hold the ready line back
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            ended = True
            break
        said += chunk
        if ready.encode() in said:
            return proc
    why = f"exited with code {proc.wait()}" if ended else f"not ready after {timeout:.0f} s"
    proc.kill()
    tail = "\n".join(said.decode(errors="replace").splitlines()[-5:])
    raise RuntimeError(f"{cmd[3]} did not start ({why}):\n{tail}")


def api(base: str, path: str) -> dict:
    """GET from the demo server (with the token it requires when CACHEDIAG_TOKEN is set)."""
    from dashboard.client import Client

    return Client(base, timeout=120).get(path)


def post(base: str, path: str) -> dict:
    """POST to the demo server (alerts/evaluate), with its token like ``api``."""
    from dashboard.client import Client

    return Client(base, timeout=120).post(path)


def _at(labels: dict, seconds: float) -> str:
    stamp = datetime.fromtimestamp(labels["start"] + seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")


def summary(base: str, labels: dict) -> list[str]:
    """One line per injected incident: the alert that caught it, or what its misses say."""
    alerts = api(base, "alerts")["data"]
    lines = []
    for incident in labels["incidents"]:
        since, until = _at(labels, incident["start"]), _at(labels, incident["end"])
        caught = sorted(
            (
                a
                for a in alerts
                if a["rule"] != "ttft_p95_rise"
                and json.loads(a["group_key"]).get("route") == incident["route"]
                and since[:13] <= a["started_at"][:13] <= until[:13]
            ),
            key=lambda a: a["started_at"],
        )
        misses = api(
            base, f"explanations?route={incident['route']}&since={since}&until={until}&limit=10000"
        )["data"]
        causes = Counter(m["cause"] for m in misses if m["cause"] not in ("no_miss", "cold_start"))
        top = causes.most_common(1)[0][0] if causes else "none"
        head = (
            f"{incident['name']} on {incident['route']} {since[11:16]}-{until[11:16]} UTC "
            f"(injected: {incident['cause']})"
        )
        if caught:
            first = json.loads(caught[0]["top_causes"] or "[]")
            cause = first[0][0] if first else top
            lines.append(
                f"  ✓ {head}: alert at {caught[0]['started_at'][11:16]}, top cause {cause}"
            )
        else:
            lines.append(f"  · {head}: no alert; its misses explained as {top}")
    return lines


def _replay_day(base: str) -> None:
    """Replay the recorded day into the server at ``base`` and say what it stored."""
    from collector.replay import Services, read_records, replay
    from collector.settings import TOKEN_ENV
    from dashboard.client import bearer

    # serve takes CACHEDIAG_TOKEN as its token: send it too
    services = Services(base, bearer(os.environ.get(TOKEN_ENV)) or None, capture_content=True)
    sent = replay(services, read_records(str(SAMPLE)))
    services.finish()
    stats = api(base, "stats?wait=1")
    post(base, "alerts/evaluate")  # the alerts see every explained request
    print(
        f"replayed  {sent:,} requests of a recorded day; {stats['committed_rows']:,} "
        f"stored, {stats['explained_rows']:,} explained",
        flush=True,
    )


def _start_dashboard(base: str) -> subprocess.Popen:
    """The dashboard over the server at ``base``, once it listens."""
    dash_port = free_port()
    cmd = [sys.executable, "-m", "cachediag", "dashboard", "--server", base]
    child = start([*cmd, "--port", str(dash_port)], "You can now view")
    print(f"dashboard http://127.0.0.1:{dash_port}", flush=True)
    return child


def run(dashboard: bool, keep: bool, db: str) -> int:
    """The demo; returns the exit status."""
    for stale in (db, db + ".wal"):  # every demo starts from an empty database
        Path(stale).unlink(missing_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            child.wait(timeout=60)

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        children.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "cachediag",
                    "serve",
                    "--db",
                    db,
                    "--port",
                    str(port),
                    "--no-grpc",
                ],
                "cachediag serving",
            )
        )
        print(f"server    {base} (database {db})", flush=True)
        _replay_day(base)
        if dashboard:
            children.append(_start_dashboard(base))
        labels = json.loads(SAMPLE.with_name("traffic.labels.json").read_text())
        print("incidents injected into the day, and what cachediag found:")
        print("\n".join(summary(base, labels)), flush=True)
        if keep:
            print("Ctrl-C stops the server and the dashboard.", flush=True)
            while all(child.poll() is None for child in children):
                time.sleep(1)  # the demo idles until interrupted
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
