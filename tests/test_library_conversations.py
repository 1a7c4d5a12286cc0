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

Live or recorded: every library here is *recorded* (tests/record_libraries.py runs it
around the real SDK in a venv of its own and keeps what it exported; this test replays
that). None installs beside our pins: OpenLIT 1.45 needs openai < 3 and anthropic < 1;
traceloop-sdk 0.62.4 pins contrib instrumentations the registry has no matching set of
(installed without them); openai-v2 2.4b0 needs opentelemetry-util-genai 0.4b0 (1.x moved
its ``instruments``). Versions are in each fixture's ``versions``: OpenInference openai
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

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = {
    p.stem: json.loads(p.read_text())
    for p in sorted((ROOT / "sample_data" / "libraries" / "conversations").glob("*.json"))
}
JSON = {"Content-Type": "application/json"}
STREAMED = (2, 4)


def _replay(server: Server, fixture: dict) -> None:
    """Post a library's exports one by one, its log records before its spans."""
    exports = fixture["exports"]
    ordered = [e for e in exports if e["path"] == "/v1/logs"]
    ordered += [e for e in exports if e["path"] == "/v1/traces"]
    for export in ordered:
        body = json.dumps(export["otlp"]).encode()
        status, _, answer = server.request("POST", export["path"], body, JSON)
        assert status == 200, answer


def _groups() -> list[list[str]]:
    """Libraries by server: one of each SDK in each, of two families (the explainer keys
    its lookups by model and session: such conversations never meet; two of one SDK, or
    one family's two sessions "conv-1", would)."""
    by_sdk: dict[str, list[str]] = {}
    for name, fixture in FIXTURES.items():
        by_sdk.setdefault(fixture["sdk"], []).append(name)
    openai, anthropic = by_sdk["openai"], by_sdk["anthropic"]
    # rotated: one family's two conversations (one session id) never share a server
    pairs = itertools.zip_longest(openai, anthropic[1:] + anthropic[:1])
    return [[n for n in pair if n] for pair in pairs]


def _through_server(db: Path, names: list[str]) -> dict[str, dict]:
    server = Server(db, "--workers", "0", "--no-grpc").start()
    try:
        for name in names:
            _replay(server, FIXTURES[name])
        stats = server.api("stats?wait=1")
        rows = server.api("requests?limit=100")["data"]
        explained = {e["id"]: e for e in server.api("explanations?limit=100")["data"]}
        details = {r["id"]: server.api(f"requests/{r['id']}") for r in rows}
        diffs = {}  # turn 6 of each library against its predecessor
        for name in names:
            mine = sorted((r for r in rows if r["service"] == name), key=lambda r: r["ts"])
            if len(mine) == 6:
                diffs[name] = server.api(f"requests/{mine[5]['id']}/diff")
    finally:
        server.stop()
    out = {}
    for name in names:
        mine = sorted((r for r in rows if r["service"] == name), key=lambda r: r["ts"])
        out[name] = {
            "rows": [details[r["id"]] for r in mine],
            "explained": [explained.get(r["id"]) for r in mine],
            "diff": diffs.get(name),
            "stats": stats,
            "libraries": len(names),
        }
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, dict]:
    """Every library's conversation through a real server (a few servers side by side):
    per library (its service name), its rows in time order, their explanations and diffs,
    and its server's stats."""
    groups = _groups()
    dbs = [tmp_path_factory.mktemp("libs") / "db.duckdb" for _ in groups]  # not thread-safe
    with ThreadPoolExecutor(len(groups)) as pool:
        done = pool.map(_through_server, dbs, groups)
        return {name: found for result in done for name, found in result.items()}


# What each library records beyond model and token counts: "ttft" on streamed turns, the
# "session" id, "cache" reads and writes (else absent), the three "tools" (else none: their
# definitions are not on the span). Found by running them (see the module docstring).
RECORDS = {
    "logfire-anthropic": {"cache", "tools"},
    "logfire-openai": {"cache", "tools"},
    "openinference-anthropic": {"ttft", "session", "cache", "tools"},
    "openinference-openai": {"ttft", "session", "cache", "tools"},
    "openlit-anthropic": {"ttft", "cache"},
    "openlit-openai": {"ttft", "cache"},
    "openllmetry-anthropic": {"ttft", "session", "cache", "tools"},
    "openllmetry-openai": {"ttft", "session", "cache", "tools"},
    "otel-openai-v2": set(),
    "otel-openai-v2-events": set(),
}
# Where a library itself reports other counts than the provider sent, on streamed turns:
# OpenLIT's anthropic streams carry no cache counts (its input count is the uncached part);
# OpenLLMetry's anthropic streams count one output token more (message_start's and
# message_delta's added).
STREAM_QUIRKS = {"openlit-anthropic": "no cache", "openllmetry-anthropic": "output + 1"}


def _provider(fixture: dict, turn: int) -> dict:
    """What the fake provider answered on ``turn`` (1-6), as row columns."""
    usage = fixture["turns"][turn - 1]["usage"]
    if fixture["sdk"] == "openai":
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        prompt, output = usage["prompt_tokens"], usage["completion_tokens"]
        return {"prompt_tokens": prompt, "cached_tokens": cached,
                "cache_write_tokens": None, "output_tokens": output}  # fmt: skip
    read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    return {"prompt_tokens": usage["input_tokens"] + read + write, "cached_tokens": read,
            "cache_write_tokens": write, "output_tokens": usage["output_tokens"]}  # fmt: skip


def test_every_library_is_recorded():
    assert set(FIXTURES) == set(RECORDS)
    assert all(f["exports"] for f in FIXTURES.values())


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_six_turns_are_six_rows_with_the_providers_counts(replayed, name):
    fixture, got = FIXTURES[name], replayed[name]
    rows, records = got["rows"], RECORDS[name]
    assert len(rows) == 6, [r["name"] for r in rows]
    for turn, row in enumerate(rows, start=1):
        want = _provider(fixture, turn)
        quirk = STREAM_QUIRKS.get(name) if turn in STREAMED else None
        if quirk == "no cache":
            uncached = fixture["turns"][turn - 1]["usage"]["input_tokens"]
            want = {**want, "cached_tokens": 0, "cache_write_tokens": 0, "prompt_tokens": uncached}
        if quirk == "output + 1":
            want["output_tokens"] += 1
        if "cache" not in records:
            want = {**want, "cached_tokens": None, "cache_write_tokens": None}
        found = {k: row[k] for k in want}
        if want["cache_write_tokens"] is None:  # OpenAI reports no writes: absent or 0
            found["cache_write_tokens"] = found["cache_write_tokens"] or None
        assert found == want, (turn, found, want)
        model = fixture["turns"][turn - 1]["body"]["model"]
        assert row["request_model"] == row["response_model"] == model
        assert row["tools_count"] == (3 if "tools" in records else 0)
        if turn in STREAMED and "ttft" in records:
            assert row["ttft_ms"] is not None and row["ttft_ms"] >= 0, turn
        if "session" in records:
            assert row["conversation_id"] == "conv-1"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_timestamp_of_turn_six_is_found_in_the_system_part(replayed, name):
    got = replayed[name]
    rows, sixth = got["rows"], got["explained"][5]
    assert rows[0]["prefix_hash"] and len({r["prefix_hash"] for r in rows[:5]}) == 1
    assert rows[5]["prefix_hash"] != rows[0]["prefix_hash"]
    assert sixth["cause"] == "dynamic_value", sixth
    assert sixth["segment"] in ("messages[0].content", "system", "system[0]")
    assert sixth["predecessor_id"] in {r["id"] for r in rows[:5]}
    if "session" in RECORDS[name]:  # compared with its own turn 5
        assert sixth["predecessor_id"] == rows[4]["id"]
        assert "17:40:00Z" in json.dumps(got["diff"]["comparison"])
    # every library here captured the content: to the token, whichever turn it came from
    assert sixth["first_diff_token"] is not None, sixth


def test_no_log_record_or_duplicate_span_adds_or_removes_a_row(replayed):
    """Logs went first (event mode's messages, OpenLIT's operation details), the anthropic
    SDK's own span came beside or inside the library's: each server holds six rows per
    library it was sent, all explained, none waiting."""
    for got in replayed.values():
        stats = got["stats"]
        assert stats["committed_rows"] == 6 * got["libraries"], stats
        assert stats["explained_rows"] >= stats["committed_rows"]
        assert stats["rejected"] == stats["pending_rows"] == 0
