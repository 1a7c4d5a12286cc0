"""What-if replays: the same stored traffic under another router, TTL or warmup."""

from __future__ import annotations

from analysis.simulate import ProviderModel
from analysis.whatif import compare
from tests.cli_run import cachediag


def _traffic(sessions=25, turns=6):
    rows = []
    for turn in range(turns):
        for s in range(sessions):
            hashes = [hash(("shared", i)) for i in range(20)] + [
                hash((s, i)) for i in range(20, 30 + 5 * turn)
            ]
            rows.append(
                {
                    "ts": turn * 60.0 + s,
                    "route": "/chat",
                    "session_key": f"u{s}",
                    "request_model": "gpt-4o",
                    "prefix_hash": "p1",
                    "segments": [
                        ["tools[0]", "tool", 0, 1280, "h"],
                        ["messages[1].content", "message", 1280, 9999, "x"],
                    ],
                    "block_hashes": hashes,
                    "prompt_tokens": len(hashes) * 64,
                    "cached_tokens": 0,
                    "ttft_ms": 500.0,
                }
            )
    return rows


def test_sticky_beats_round_robin_and_both_beat_no_cache():
    rows = _traffic()
    sticky = compare(rows, ProviderModel(replicas=6, router="sticky"))["/chat"]
    rr = compare(rows, ProviderModel(replicas=6, router="round_robin"))["/chat"]
    observed, simulated = sticky
    assert observed.hit_ratio == 0 and observed.requests == len(rows)
    assert simulated.hit_ratio > rr[1].hit_ratio + 0.2
    assert simulated.missed_cost_usd < observed.missed_cost_usd
    assert simulated.p95_ttft_ms is not None


def test_warmup_serves_the_stable_prefix_on_every_replica():
    rows = _traffic(sessions=6, turns=1)  # one request each: only warmup can help
    cold = compare(rows, ProviderModel(replicas=3, router="random"))["/chat"][1]
    warm = compare(rows, ProviderModel(replicas=3, router="random"), warmup=True)["/chat"][1]
    assert warm.cached_tokens >= 6 * 1280 > cold.cached_tokens


def test_a_malformed_segment_map_warms_nothing_and_breaks_nothing():
    rows = _traffic(sessions=6, turns=1)
    for row, bad in zip(rows, ["{", "[[1, 2]]", '"x"', "[", "null", "[" * 5000], strict=False):
        row["segments"] = bad
    warm = compare(rows, ProviderModel(replicas=3, router="sticky"), warmup=True)["/chat"][1]
    cold = compare(rows, ProviderModel(replicas=3, router="sticky"))["/chat"][1]
    assert warm.requests == len(rows) and warm.cached_tokens == cold.cached_tokens


def test_cli_prints_the_saving_per_day(tmp_path):
    traffic, db = str(tmp_path / "t.jsonl"), str(tmp_path / "db.duckdb")
    gen = cachediag("generate", "--hours", "1", "--sessions-per-hour", "120", "--out", traffic)
    assert gen.exit_code == 0, gen.stderr
    assert cachediag("ingest", traffic, "--db", db).exit_code == 0
    result = cachediag("simulate", "--db", db, "--router", "round_robin", "--ttl", "5m")
    assert result.exit_code == 0, result.stderr
    assert "/support" in result.stdout and "/day" in result.stdout
    bad = cachediag("simulate", "--db", db, "--ttl", "soon")
    assert bad.exit_code == 2 and "--ttl 'soon'" in bad.stderr
