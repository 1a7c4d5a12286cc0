"""`cachediag demo`: server, replay, explanations, alerts and dashboard, then a clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_demo_names_every_incident_and_stops_everything(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cachediag",
            "demo",
            "--exit",
            "--db",
            str(tmp_path / "demo.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "server    http://127.0.0.1:" in out and "dashboard http://127.0.0.1:" in out
    labels = json.loads((ROOT / "sample_data" / "traffic.labels.json").read_text())
    for incident in labels["incidents"]:
        assert incident["name"] in out
    caught = [line for line in out.splitlines() if line.startswith("  ✓")]
    assert len(caught) >= 5
    for line in caught:  # an alert that caught an incident names the injected cause on top
        injected = line.split("(injected: ")[1].split(")")[0]
        assert line.endswith(f"top cause {injected}"), line
    # Nothing left running: the server's database can be opened again.
    import duckdb

    duckdb.connect(str(tmp_path / "demo.duckdb")).close()


def test_start_waits_for_the_ready_line_and_says_why_a_child_did_not_start():
    from cachediag.demo import start

    code = "print('booting', flush=True); print('ready now', flush=True); input()"
    proc = start([sys.executable, "-c", code, "x"], "ready now", timeout=60)
    proc.kill()  # it waits on its stdin, like a server that keeps running
    proc.wait(timeout=30)
    with pytest.raises(RuntimeError, match=r"did not start \(exited with code 3\):\nbroken"):
        start([sys.executable, "-c", "print('broken'); raise SystemExit(3)", "x"], "ready")
