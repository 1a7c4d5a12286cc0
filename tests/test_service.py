"""The service layer under both faces: the CLI and the query API say the same thing for
the same data (one diff, one what-if default, one alert text), every endpoint of the
generated OpenAPI document answers, and a GET never writes."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from analysis import alerts as rules
from cachediag.cli import main
from collector.service import alerts, explaining, whatif
from collector.store.database import Store, save_alerts
from tests.servers import Server

SYSTEM = "\n".join(f"Rule {i}: answer politely and cite policy section {i}." for i in range(150))
START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
REQUESTS = 60  # every 90 s: six 15-minute alert windows of ten requests
REPLICAS = 3


def _records() -> list[dict]:
    """A day's hour on three replicas with a timestamp in the system prompt; the last
    window's hit ratio drops from 90% to 10% (a cached_drop alert)."""
    out = []
    for i in range(REQUESTS):
        at = START + timedelta(seconds=90 * i)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        cached = 2700 if i < REQUESTS - 10 else 300
        system = f"Now: {stamp}\n{SYSTEM}"
        out.append(
            {
                "time": stamp,
                "id": f"r{i}",
                "route": "/chat",
                "replica": f"r{i % REPLICAS}",
                "session_key": "u1",
                "request": {
                    "model": "gpt-4o",
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": "Hello?"},
                    ],
                },
                "response": {
                    "usage": {
                        "prompt_tokens": 3000,
                        "prompt_tokens_details": {"cached_tokens": cached},
                    }
                },
            }
        )
    return out


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A database of those records, ingested and explained (no process holds it)."""
    folder = tmp_path_factory.mktemp("seeded")
    records = folder / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    db = folder / "db.duckdb"
    assert _cli("ingest", str(records), "--db", str(db)).exit_code == 0
    assert _cli("explain", "--db", str(db)).exit_code == 0
    return db


def _copy(db, tmp_path):
    """A copy of the seeded database, for a test that changes it or runs a CLI on it."""
    shutil.copy(db, tmp_path / "db.duckdb")
    return tmp_path / "db.duckdb"


@pytest.fixture(scope="module")
def server(seeded, tmp_path_factory):
    srv = Server(_copy(seeded, tmp_path_factory.mktemp("srv")), "--workers", "0", "--no-grpc")
    yield srv.start()
    assert "Traceback" not in srv.stop()


def _filled(path: str, request_id: str) -> str:
    return path.replace("{request_id}", request_id)


def test_every_endpoint_in_the_generated_openapi_answers(server):
    doc = server.api("openapi.json")
    rid = server.api("requests?limit=1")["data"][0]["id"]
    assert {"/api/v1/requests/{request_id}/diff", "/api/v1/alerts/evaluate"} <= set(doc["paths"])
    for path, operations in doc["paths"].items():
        for method in operations:
            status, _, body = server.request(method.upper(), _filled(path, rid))
            assert status == 200, (method, path, body)
            json.loads(body)
    stats = doc["paths"]["/api/v1/stats"]["get"]["responses"]
    assert list(stats["200"]["content"]) == ["application/json"]  # an object: no Arrow
    assert (
        "application/vnd.apache.arrow.stream"
        in (doc["paths"]["/api/v1/requests"]["get"]["responses"]["200"]["content"])
    )
    assert all("422" not in op["responses"] for p in doc["paths"].values() for op in p.values())


def test_stats_wait_writes_nothing_and_post_evaluate_evaluates(seeded, tmp_path):
    db = _copy(seeded, tmp_path)
    store = Store(str(db))
    sentinel = rules.Alert("cached_drop", {"route": "/sentinel"}, START, 0.1, 0.9)
    save_alerts(store, [sentinel.row()])
    store.close()
    srv = Server(db, "--workers", "0", "--no-grpc", "--alert-every", "0").start()
    try:
        srv.api("stats?wait=1")
        assert [a["id"] for a in srv.api("alerts")["data"]] == [sentinel.id]
        assert srv.request("GET", "/api/v1/alerts/evaluate")[0] == 405  # not by a GET
        status, _, body = srv.request("POST", "/api/v1/alerts/evaluate")
        assert status == 200, body
        evaluated = json.loads(body)["data"]
        listed = srv.api("alerts")["data"]
    finally:
        srv.stop()
    assert sentinel.id not in {a["id"] for a in listed}
    assert "cached_drop" in {a["rule"] for a in evaluated}
    assert {a["id"]: a["text"] for a in evaluated} == {a["id"]: a["text"] for a in listed}


def test_cli_and_api_show_the_same_diff_with_the_rows_provider_rules(seeded, server, tmp_path):
    got = _cli(
        "explain", "--db", str(_copy(seeded, tmp_path)), "--request", "r5", "--format", "json"
    )
    cli = json.loads(got.output)
    api = server.api("requests/r5/diff")
    assert cli["predecessor_id"] == api["predecessor_id"] == "r4"
    assert cli["diff"] == api["comparison"]
    assert api["comparison"]["cause"] == "dynamic_value"
    assert (api["provider"], api["comparison"]["provider"]) == ("openai", "openai")
    assert api["comparison"]["minimum_tokens"] == 1024  # openai's, not generic's 0


def test_cli_simulate_and_api_whatif_use_the_same_default_replicas(seeded, server, tmp_path):
    got = _cli("simulate", "--db", str(_copy(seeded, tmp_path)), "--router", "round_robin")
    assert got.exit_code == 0, got.output
    replicas = int(re.search(r"round_robin, (\d+) replicas", got.output).group(1))
    answer = server.api("whatif?router=round_robin")
    assert replicas == answer["replicas"] == REPLICAS  # as many as the traffic used
    assert server.api("whatif?router=round_robin&replicas=2")["replicas"] == 2


def test_cli_and_api_say_the_same_alert_text(seeded, server, tmp_path):
    assert server.request("POST", "/api/v1/alerts/evaluate")[0] == 200
    api = [a["text"] for a in server.api("alerts")["data"]]
    from_server = _cli("alerts", "--server", server.url)
    from_db = _cli("alerts", "--db", str(_copy(seeded, tmp_path)))
    assert from_server.exit_code == from_db.exit_code == 1  # firing
    assert api and from_server.output.splitlines() == api
    assert sorted(from_db.output.splitlines()) == sorted(api)


def test_service_operations_return_plain_data(seeded, tmp_path):
    store = Store(str(_copy(seeded, tmp_path)))
    seen = []
    try:
        summary = explaining.explain(store, True, lambda n, total: seen.append((n, total)))
        assert sum(row["requests"] for row in summary) == REQUESTS
        assert explaining.diff(store.con, "nope") is None
        found = explaining.diff(store.con, "r0")
        assert found["predecessor_id"] is None and found["comparison"] is None
        assert whatif.whatif(store.con).model.replicas == REPLICAS
        evaluated = alerts.evaluate(store, rules.Rules())
        listed = alerts.listed(store.con).to_dicts()
    finally:
        store.close()
    assert sum(n for n, _ in seen) == REQUESTS and {t for _, t in seen} == {REQUESTS}
    assert evaluated and {r["id"]: r["text"] for r in listed} == {
        a.id: rules.slack_text(a) for a in evaluated
    }
