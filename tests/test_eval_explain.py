"""The explanation benchmark scores every request against its true cause."""

from __future__ import annotations

from collections import Counter

from benchmarks import eval_explain


def test_headline_counts_misses_by_true_cause_and_healthy_requests_blamed():
    counts = Counter(
        {
            ("routing", "routing"): 3,
            ("routing", "no_miss"): 1,
            ("no_miss", "ttl_expired"): 1,
            ("below_minimum", "below_minimum"): 2,
            ("cold_start", "no_miss"): 1,
        }
    )
    assert eval_explain.headline(counts) == (4, 0.75, 4, 0.25)


def test_seed_sets_are_fixed_and_apart():
    assert not set(eval_explain.TUNING_SEEDS) & set(eval_explain.HELD_OUT_SEEDS)
    assert eval_explain._seeds("held-out")[1] == eval_explain.HELD_OUT_SEEDS
    assert "HELD OUT" in eval_explain._seeds("1,101")[0]
    assert eval_explain._seeds("tuning") == ("tuning", eval_explain.TUNING_SEEDS)


def test_every_generated_request_is_scored(tmp_path):
    path = str(tmp_path / "day.jsonl.gz")
    n = eval_explain.generate(5, 0.5, 60, path)
    counts = eval_explain.pairs(path, hashes_only=True)
    assert sum(counts.values()) == n > 0
    assert "unexplained" not in {got for _, got in counts}
