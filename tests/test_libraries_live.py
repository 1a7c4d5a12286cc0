"""The instrumentation libraries that install beside our pins, run live: each around the real
``openai`` or ``anthropic`` SDK against tests/fake_llm.py, in a process of its own
(tests/library_conversation.py), exporting over OTLP/HTTP straight into a real
``cachediag serve``; the six-turn conversation must give what tests/conversation_checks.py
asks, as the recorded libraries' replays must (tests/test_library_conversations.py).

Live: OpenInference (openinference-instrumentation-openai 0.1.66, -anthropic 3.1.0),
Logfire 5.4.0, OpenLLMetry's instrumentations (opentelemetry-instrumentation-openai and
-anthropic 0.62.4) set up without traceloop-sdk, which does not install beside our pins: they
send no session id then (traceloop-sdk's association properties are its own). Versions are
pinned in the ``test`` extra. OpenLIT, traceloop-sdk and openai-v2: recorded only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conversation_checks import RECORDS, check_rows, check_sixth, check_stats, collect, groups
from tests.library_conversation import CONVERSING, SCRIPT, plan
from tests.servers import Server

LIVE = {
    name: RECORDS[name] - ({"session"} if name.startswith("openllmetry") else set())
    for name in (
        "openinference-openai", "openinference-anthropic", "logfire-openai",
        "logfire-anthropic", "openllmetry-openai", "openllmetry-anthropic",
    )
}  # fmt: skip
PLANS = {sdk: plan(sdk) for sdk in ("openai", "anthropic")}


def _converse(name: str, url: str, folder: Path) -> None:
    """One library's six turns, exported to ``url`` by the library itself."""
    sdk, _, env = CONVERSING[name]
    turns = folder / f"{name}.json"
    turns.write_text(json.dumps(PLANS[sdk]))
    command = [sys.executable, str(SCRIPT), name, str(turns), url]
    run = subprocess.run(command, env={**_environ(), **env}, capture_output=True, text=True,
                         timeout=180, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    kept = json.loads(run.stdout.strip().splitlines()[-1])
    assert kept["exports"] == []  # sent to the server, none kept by the child


def _environ() -> dict[str, str]:
    """This process's environment without OTel or Traceloop settings of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}


def _live(folder: Path, names: list[str]) -> dict[str, dict]:
    server = Server(folder / "db.duckdb", "--workers", "0", "--no-grpc").start()
    try:
        for name in names:
            _converse(name, server.url, folder)
        return collect(server, names)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> dict[str, dict]:
    """Every live library's conversation, a few servers side by side (as in the replay)."""
    found = groups({name: CONVERSING[name][0] for name in LIVE})
    folders = [tmp_path_factory.mktemp("live") for _ in found]
    with ThreadPoolExecutor(len(found)) as pool:
        done = pool.map(_live, folders, found)
        return {name: got for result in done for name, got in result.items()}


@pytest.mark.parametrize("name", sorted(LIVE))
def test_six_live_turns_are_six_rows_with_the_providers_counts(live, name):
    sdk = CONVERSING[name][0]
    check_rows(name, sdk, PLANS[sdk], live[name], LIVE[name])


@pytest.mark.parametrize("name", sorted(LIVE))
def test_the_live_timestamp_of_turn_six_is_found_in_the_system_part(live, name):
    check_sixth(live[name], LIVE[name])


def test_live_logs_and_sdk_spans_add_or_remove_no_row(live):
    for got in live.values():
        check_stats(got)
