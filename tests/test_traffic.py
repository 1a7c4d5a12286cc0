"""Generated traffic: deterministic, realistic, and every incident visible in the numbers."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict

import duckdb
import pytest

from analysis import prompt
from analysis.incidents import ALWAYS
from analysis.traffic import TrafficGenerator, incidents
from analysis.truth import NOT_MISSES
from analysis.usage import from_provider
from tests.cli_run import cachediag


@pytest.fixture(scope="module")
def day():
    generator = TrafficGenerator(seed=3, hours=24, sessions_per_hour=40)
    return generator, list(generator.records())


def test_same_seed_same_traffic_other_seed_other_traffic():
    first = [
        json.dumps(r) for _, r in zip(range(150), TrafficGenerator(5, 6).records(), strict=False)
    ]
    again = [
        json.dumps(r) for _, r in zip(range(150), TrafficGenerator(5, 6).records(), strict=False)
    ]
    other = [
        json.dumps(r) for _, r in zip(range(150), TrafficGenerator(6, 6).records(), strict=False)
    ]
    assert first == again and first != other


def test_records_are_time_ordered_and_complete(day):
    _, records = day
    times = [r["time"] for r in records]
    assert times == sorted(times)
    routes = {r["route"] for r in records}
    assert routes == {"/support", "/agent", "/rag", "/research"}
    for r in records[:200]:
        assert {
            "time",
            "id",
            "service",
            "route",
            "replica",
            "request",
            "response",
            "ttft_ms",
            "prompt_version",
            "incident",
            "cause",
            "missed",
        } <= set(r)
    assert len({r["id"] for r in records}) == len(records)


def _hit_ratios(records):
    tokens = defaultdict(lambda: [0, 0])
    for r in records:
        use = from_provider(r["response"]["usage"])
        key = (r["route"], r["incident"])
        tokens[key][0] += use.cached_tokens
        tokens[key][1] += use.prompt_tokens
    return {k: cached / total for k, (cached, total) in tokens.items()}


def test_every_incident_shows_in_the_hit_ratio(day):
    generator, records = day
    ratio = _hit_ratios(records)
    normal = {route: ratio[(route, None)] for route in ("/support", "/agent", "/rag")}
    assert normal["/support"] > 0.8 and normal["/agent"] > 0.8
    assert ratio[("/support", "deploy_timestamp")] < 0.05
    assert ratio[("/support", "quiet_night_ttl")] < normal["/support"] - 0.3
    assert ratio[("/agent", "dynamic_tool_subsets")] < 0.2
    assert ratio[("/agent", "request_id_in_schema")] < 0.2
    assert ratio[("/agent", "scale_out_round_robin")] < normal["/agent"] - 0.1
    fanout = [r for r in records if r["incident"] == "fanout_before_warm"]
    twins = [r for r in fanout if r["session_key"] and r["session_key"].count("-") == 3]
    cold = [
        r
        for r in twins
        if from_provider(r["response"]["usage"]).cached_tokens
        < 0.9 * from_provider(r["response"]["usage"]).prompt_tokens
    ]
    # Most land before the first prefill is done: they reuse the warm system prompt at
    # most, never the documents they share (warm, those would make 99% of the prompt).
    assert len(cold) >= 0.75 * len(twins) > 0
    always = {name for name, _ in ALWAYS.values()}
    named = {r["incident"] for r in records} - {None}
    assert {i.name for i in generator.incidents} | always == named


def test_stripped_reasoning_only_drops_reasoning_before_the_last_user_message(day):
    _, records = day
    stripped = [r for r in records if r["incident"] == "stripped_reasoning"]
    assert stripped
    for r in stripped:
        messages = r["request"]["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        assert all("reasoning_content" not in m for m in messages[:last_user])


def test_incidents_sit_inside_the_traffic():
    for incident in incidents(24):
        assert 0 <= incident.start < incident.end <= 24 * 3600


def test_generate_then_ingest_lands_every_request(tmp_path):
    out = tmp_path / "traffic.jsonl.gz"
    gen = cachediag(
        "generate", "--seed", "2", "--hours", "2", "--sessions-per-hour", "60", "--out", str(out)
    )
    assert gen.exit_code == 0, gen.stderr
    labels = json.loads((tmp_path / "traffic.labels.json").read_text())
    assert labels["seed"] == 2 and len(labels["incidents"]) == len(incidents(2))
    with gzip.open(out, "rt") as handle:
        ids = {json.loads(line)["id"] for line in handle}
    db = tmp_path / "db.duckdb"
    ingest = cachediag("ingest", str(out), "--db", str(db))
    assert ingest.exit_code == 0, ingest.stderr
    stored = {
        row[0] for row in duckdb.connect(str(db)).execute("SELECT id FROM requests").fetchall()
    }
    assert stored == ids


def test_every_incident_gives_its_cause_to_some_of_its_requests(day):
    generator, records = day
    table = {i.name: i.cause for i in generator.incidents} | dict(ALWAYS.values())
    for name, cause in table.items():
        causes = Counter(r["cause"] for r in records if r["incident"] == name)
        assert causes[cause] > 0, (name, causes)


def test_true_causes_agree_with_the_usage_the_provider_reports(day):
    _, records = day
    assert {r["cause"] for r in records} >= {"no_miss", "below_minimum", "cold_start"}
    for r in records:
        use = from_provider(r["response"]["usage"])
        if r["cause"] in NOT_MISSES:
            assert r["missed"] == 0
        else:
            assert 1 <= r["missed"] <= use.prompt_tokens - use.cached_tokens, r["id"]
        if r["cause"] == "below_minimum":
            assert 80 <= use.prompt_tokens < 1024 and r["request"]["model"] == "gpt-4o-mini"


def test_research_runs_use_the_responses_api_with_a_cache_key(day):
    _, records = day
    runs = [r for r in records if r["route"] == "/research"]
    assert runs and all(
        {"instructions", "input", "prompt_cache_key"} <= set(r["request"]) for r in runs
    )
    assert prompt.parse(runs[0]["request"]).format == "openai_responses"
