"""End to end: a conversation recorded in GenAI semconv form by another library,
exported to a real `cachediag serve`, is fingerprinted at ingest and its broken turn
explained as ours would be."""

from __future__ import annotations

import json

import pytest

from collector import bodies
from tests import cases, conventions
from tests.otlp_build import traces
from tests.servers import Server

PB = {"Content-Type": "application/x-protobuf"}
START = 1_764_518_400_000_000_000  # 2025-11-30T16:00:00Z, one turn every 20 s
SYSTEM = cases.POLICY + "\n\n" + "\n\n".join(cases.DOCS * 40)  # past every cache minimum
STAMP = "Now: 2026-11-30T16:00:00Z. "  # stamped once; turn 6 stamps it anew


def conversation(turns: int = 6) -> list[dict]:
    """Six turns of one chat whose system prompt carries a timestamp; the sixth turn
    renews it. (A timestamp *inserted* where there was none is system_changed to
    analysis.causes, whoever recorded the call: the value must be on both sides.)"""
    tools = [
        {"type": "function", "function": {"name": n, "description": d, "parameters": s}}
        for n, d, s in cases.TOOLS
    ]
    history: list[dict] = []
    out = []
    for turn in range(1, turns + 1):
        history.append({"role": "user", "content": f"Question {turn}: where is order {turn}?"})
        stamp = STAMP.replace("16:00", "17:40") if turn == 6 else STAMP
        system = stamp + SYSTEM
        body = {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": system}, *history],
            "tools": tools,
        }
        out.append(body)
        history.append({"role": "assistant", "content": f"Order {turn} has shipped."})
    return out


def spans(requests: list[dict]) -> list[dict]:
    """The spans a semconv library exports for these calls, with the provider's usage:
    turns 2-5 read the previous turn's prefix from the cache, turn 6 reads nothing."""
    out, previous = [], 0
    for turn, body in enumerate(requests, start=1):
        _, ours = bodies.fingerprint_body(body)
        prompt = ours["cachediag.total_tokens"]
        cached = 0 if turn in (1, 6) else previous // 128 * 128
        attrs = {
            **conventions.semconv_chat(body),
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.usage.input_tokens": prompt,
            "gen_ai.usage.cache_read.input_tokens": cached,
            "gen_ai.usage.output_tokens": 8,
        }
        start = START + turn * 20 * 10**9
        out.append(
            {"name": "chat gpt-4o", "start": start, "end": start + 10**9, "attributes": attrs}
        )
        previous = prompt
    return out


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "db.duckdb", "--workers", "0", "--no-grpc").start()
    yield srv
    srv.stop()


def test_a_semconv_conversation_is_fingerprinted_and_its_timestamp_found(server):
    requests = conversation()
    status, _, body = server.request(
        "POST", "/v1/traces", traces(spans(requests), seed=7).SerializeToString(), PB
    )
    assert status == 200, body
    stats = server.api("stats?wait=1")
    assert stats["explained_rows"] == stats["committed_rows"] == 6
    rows = sorted(server.api("requests?limit=10")["data"], key=lambda r: r["ts"])
    assert len({r["prefix_hash"] for r in rows[:5]}) == 1 and rows[0]["prefix_hash"]
    assert rows[5]["prefix_hash"] != rows[0]["prefix_hash"]
    assert all(r["tools_count"] == 3 for r in rows)
    explained = {e["id"]: e for e in server.api("explanations?limit=10")["data"]}
    sixth = explained[rows[5]["id"]]
    assert sixth["cause"] == "dynamic_value", sixth
    assert sixth["segment"] == "messages[0].content"
    assert sixth["predecessor_id"] == rows[4]["id"]
    assert explained[rows[0]["id"]]["cause"] == "cold_start"
    diff = server.api(f"requests/{rows[5]['id']}/diff")
    assert diff["comparison"] and diff["predecessor_id"] == rows[4]["id"]
    assert "2026-11-30T17:40:00Z" in json.dumps(diff["comparison"])
    assert sixth["first_diff_token"] is not None


def test_with_no_content_only_hashes_are_kept_and_still_explain(tmp_path):
    srv = Server(tmp_path / "db.duckdb", "--workers", "0", "--no-grpc", "--no-content").start()
    try:
        export = traces(spans(conversation()), seed=8).SerializeToString()
        assert srv.request("POST", "/v1/traces", export, PB)[0] == 200
        srv.api("stats?wait=1")
        rows = sorted(srv.api("requests?limit=10")["data"], key=lambda r: r["ts"])
        sixth = srv.api(f"requests/{rows[5]['id']}")
        assert "Acme" not in json.dumps(sixth) and sixth.get("content") is None
        assert sixth["prefix_hash"] and sixth["explanation"]
        assert json.loads(sixth["explanation"])["cause"] == "dynamic_value"  # hash-only
        assert srv.api(f"requests/{rows[5]['id']}/diff")["comparison"] is None
    finally:
        srv.stop()
