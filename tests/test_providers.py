"""Provider cache rules turn shared tokens into cacheable tokens and dollars."""

from __future__ import annotations

import pytest

from analysis import providers

TABLE = providers.load_table()


@pytest.mark.parametrize(
    "fmt, model, provider",
    [
        ("openai_chat", "gpt-4o", "openai"),
        ("openai_responses", "o3", "openai"),
        ("anthropic", "claude-sonnet-4-5", "anthropic"),
        ("openai_chat", "deepseek-chat", "deepseek"),
        ("openai_chat", "gemini-2.5-pro", "gemini"),
        ("openai_chat", "meta-llama/Llama-3", "generic"),
        ("openai_chat", "kimi-k2", "generic"),
    ],
)
def test_provider_for(fmt, model, provider):
    assert providers.provider_for(fmt, model) == provider


@pytest.mark.parametrize(
    "provider, model, shared, want",
    [
        ("openai", "gpt-4o", 1023, 0),  # under the minimum
        ("openai", "gpt-4o", 1024, 1024),
        ("openai", "gpt-4o", 1151, 1024),  # 128-token increments
        ("openai", "gpt-4o", 1152, 1152),
        ("deepseek", "deepseek-chat", 200, 192),
        ("gemini", "gemini-2.5-flash", 2047, 0),
        ("gemini", "gemini-2.5-pro", 3000, 0),  # pro needs 4096
        ("gemini", "gemini-2.5-pro", 5000, 5000),
        ("generic", "llama", 100, 64),  # the block size
    ],
)
def test_cacheable_tokens(provider, model, shared, want):
    assert providers.cacheable_tokens(TABLE, provider, model, shared, [], 64) == want


def test_anthropic_reads_only_up_to_a_breakpoint_past_its_minimum():
    rule = providers.cacheable_tokens
    assert rule(TABLE, "anthropic", "claude-sonnet-4-5", 5000, [], 64) == 0
    assert rule(TABLE, "anthropic", "claude-sonnet-4-5", 5000, [900, 3000, 6000], 64) == 3000
    assert rule(TABLE, "anthropic", "claude-haiku-4-5", 5000, [3000], 64) == 0  # 4096 minimum


def test_missed_cost_uses_the_price_difference():
    impl = providers.implications(TABLE, "openai", "gpt-4o-2024-08-06", 0, 1_000_000, [], 64)
    assert impl.missed_tokens == 1_000_000
    assert impl.missed_cost_usd == pytest.approx(2.50 - 1.25)  # gpt-4o, longest prefix match
    assert (
        providers.implications(TABLE, "openai", "gpt-4o-mini", 0, 10**6, [], 64).input_usd_per_mtok
        == 0.15
    )


def test_override_file_merges_into_the_table(tmp_path):
    override = tmp_path / "prices.toml"
    override.write_text(
        '[prices]\n"gpt-4o" = { input = 10.0, cached = 1.0 }\n[profiles.openai]\nminimum = 2048\n'
    )
    table = providers.load_table(str(override))
    assert table["prices"]["gpt-4o"]["input"] == 10.0
    assert table["prices"]["gpt-4.1"]["input"] == 2.00  # untouched
    assert table["profiles"]["openai"] == {
        "ttl_s": 600,
        "max_ttl_s": 86400,
        "minimum": 2048,
        "increment": 128,
    }


@pytest.mark.parametrize(
    "provider, model", [("openai", "gpt-4o"), ("deepseek", "deepseek-chat"), ("gemini", None)]
)
def test_the_simulated_provider_caches_what_the_provider_rule_allows(provider, model):
    from analysis.simulate import ProviderModel, Simulator

    sim = Simulator(ProviderModel.of(provider, model))
    assert sim.model.ttl_s == TABLE["profiles"][provider]["ttl_s"]
    for blocks in range(0, 80, 3):
        shared = blocks * 64
        want = providers.cacheable_tokens(TABLE, provider, model, shared, None, 64)
        assert sim.cacheable(blocks, 10**6) == want, shared


def test_prefix_rule_steps_from_an_off_grid_minimum():
    assert providers.prefix_rule(999, 1000, 128) == 0
    assert providers.prefix_rule(1127, 1000, 128) == 1000
    assert providers.prefix_rule(1128, 1000, 128) == 1128
    assert providers.prefix_rule(300, 0, 128) == 256
    assert providers.prefix_rule(0, 0, 1) == 0


def test_missed_cost_is_the_price_difference_per_token():
    assert providers.missed_cost_usd(TABLE, "gpt-4o") == pytest.approx((2.50 - 1.25) / 1e6)
    assert providers.missed_cost_usd(TABLE, "gpt-4o", 2_000_000) == pytest.approx(2.5)
    assert providers.missed_cost_usd(TABLE, "unknown-model", 10**6) == pytest.approx(0.9)
