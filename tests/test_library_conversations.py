"""Every instrumentation library, a six-turn conversation, a real `cachediag serve`.

Each fixture in sample_data/libraries/conversations/ is what one real library exported
(over OTLP/HTTP, as sent) while the real `openai` or `anthropic` SDK held a six-turn
conversation with tests/fake_llm.py: a system prompt past every cache minimum, three tools,
turns 2 and 4 streamed, turn 6 with a new timestamp at the head of the system prompt; the
fake provider answered the usage the fixture's plan names. Replayed here into a real server,
logs before spans (each export posted alone: a service's log batches leave first), it must
give exactly six rows: the provider's model and token counts, TTFT where the library
records it, the session id where it sends one, one prefix hash over turns 1-5, and turn 6
explained ``dynamic_value`` in the system part, to the token.

Recorded: tests/record_libraries.py ran each library around the real SDK in a venv of its
own and kept what it exported; this test replays that. OpenInference, Logfire and
OpenLLMetry's instrumentations also run live, in our venv (tests/test_libraries_live.py).
These do not install beside our pins: OpenLIT 1.45 needs openai < 3 and anthropic < 1
(pip picks OpenLIT 1.34 with openai 1.109 and anthropic 0.125 instead); traceloop-sdk
pins every contrib instrumentation at one release, and pip, adding it to our venv, spent
ten minutes backtracking to traceloop-sdk 0.45.6 on opentelemetry-sdk 1.34, which breaks
Logfire; openai-v2 2.4b0 needs opentelemetry-util-genai 0.4b0 (1.x moved its
``instruments``; pip picks 1.3b0). Versions are in each fixture's ``versions``: OpenInference openai
0.1.66 / anthropic 3.1.0, OpenLLMetry 0.62.4 (traceloop-sdk), Logfire 5.4.0, OpenLIT
1.45.0, openai-v2 2.4b0 in span mode and in event mode. ``RECORDS`` says what each one
records beyond models and token counts.

Known gaps (not asserted): without a session id the sixth turn is explained from the
conversation it opens like (``analysis.kin``), an earlier turn rather than its own turn 5;
OpenLIT's spans carry no tool definitions (its log record does: the span's fingerprint
wins); Logfire's stream record links to its call only under a parent span (a root call's
stream record is a trace of its own).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conversation_checks import (
    RECORDS,
    check_rows,
    check_sixth,
    check_stats,
    collect,
    groups,
)
from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = {
    p.stem: json.loads(p.read_text())
    for p in sorted((ROOT / "sample_data" / "libraries" / "conversations").glob("*.json"))
}
JSON = {"Content-Type": "application/json"}


def _replay(server: Server, fixture: dict) -> None:
    """Post a library's exports one by one, its log records before its spans."""
    exports = fixture["exports"]
    ordered = [e for e in exports if e["path"] == "/v1/logs"]
    ordered += [e for e in exports if e["path"] == "/v1/traces"]
    for export in ordered:
        body = json.dumps(export["otlp"]).encode()
        status, _, answer = server.request("POST", export["path"], body, JSON)
        assert status == 200, answer


def _through_server(db: Path, names: list[str]) -> dict[str, dict]:
    server = Server(db, "--workers", "0", "--no-grpc").start()
    try:
        for name in names:
            _replay(server, FIXTURES[name])
        return collect(server, names)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, dict]:
    """Every library's conversation through a real server (a few servers side by side):
    per library (its service name), its rows in time order, their explanations and diffs,
    and its server's stats."""
    found = groups({name: f["sdk"] for name, f in FIXTURES.items()})
    dbs = [tmp_path_factory.mktemp("libs") / "db.duckdb" for _ in found]  # not thread-safe
    with ThreadPoolExecutor(len(found)) as pool:
        done = pool.map(_through_server, dbs, found)
        return {name: got for result in done for name, got in result.items()}


def test_every_library_is_recorded():
    assert set(FIXTURES) == set(RECORDS)
    assert all(f["exports"] for f in FIXTURES.values())


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_six_turns_are_six_rows_with_the_providers_counts(replayed, name):
    fixture = FIXTURES[name]
    check_rows(name, fixture["sdk"], fixture["turns"], replayed[name], RECORDS[name])


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_timestamp_of_turn_six_is_found_in_the_system_part(replayed, name):
    check_sixth(replayed[name], RECORDS[name])


def test_no_log_record_or_duplicate_span_adds_or_removes_a_row(replayed):
    """Logs went first (event mode's messages, OpenLIT's operation details), the anthropic
    SDK's own span came beside or inside the library's: each server holds six rows per
    library it was sent, all explained, none waiting."""
    for got in replayed.values():
        check_stats(got)
