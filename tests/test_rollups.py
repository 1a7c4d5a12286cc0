"""Kept series (collector.service.rollups) equal the direct queries after every kind of
write: late and out-of-order rows, duplicates, re-explained rows, dropped explanations,
rows a merge deletes."""

from __future__ import annotations

import random
from datetime import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from collector.service.rollups import Rollups, bucket_floor
from collector.store import changes, explaining, misses, queries
from collector.store.database import Store

T0 = 1_764_000_000_000_000_000  # ns
ROUTES = ("/chat", "/support", None)
CAUSES = ("ttl_expired", "routing", "dynamic_value", "no_miss", "cold_start")
WINDOWS = (60, 300, 3600)


def _row(rng: random.Random, i: int, at_s: float) -> dict:
    prompt = rng.choice((None, 0, 1200, 5000))
    return {
        "id": f"r{i}",
        "start_ns": T0 + int(at_s * 1e9),
        "signal": "span",
        "route": rng.choice(ROUTES),
        "replica": rng.choice(("a", "b")),
        "request_model": rng.choice(("gpt-4o", "claude-sonnet-4", None)),
        "prefix_hash": rng.choice(("p1", "p2", "p3", None)),
        "prompt_version": rng.choice(("v1", "v2")),
        "session_key": rng.choice(("s1", "s2", None)),
        "tools_count": rng.randint(0, 4),
        "prompt_tokens": prompt,
        "cached_tokens": None if prompt is None else rng.randint(0, prompt),
        "ttft_ms": rng.choice((None, rng.uniform(50, 900))),
    }


def _explanations(rng: random.Random, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "id": i,
                "cause": rng.choice(CAUSES),
                "missed_tokens": rng.randint(0, 4000),
                "missed_cost_usd": rng.uniform(0, 0.01),
            }
            for i in ids
        ]
    )


def _same(kept: Rollups, cur, filters: queries.Filters) -> None:
    for window in WINDOWS:
        for group in (None, "route", "replica"):
            direct = queries.timeseries(cur, filters, window, group)
            assert_frame_equal(kept.series(cur, filters, window, group), direct)
        direct = misses.by_cause(cur, filters, window)
        assert_frame_equal(kept.causes(cur, filters, window), direct)
        direct = queries.prefixes(cur, filters, window)
        assert_frame_equal(kept.prefixes(cur, filters, window), direct)
    assert_frame_equal(kept.routing(cur, filters), queries.routing(cur, filters))
    for cause in (None, "ttl_expired", "no_miss"):
        for only in (True, False):
            assert kept.count(cur, filters, cause, only) == misses.count(cur, filters, cause, only)
            for offset in (0, 7, 40):
                direct = misses.page(cur, filters, cause, 5, offset, only)
                assert_frame_equal(kept.page(cur, filters, cause, 5, offset, only), direct)


FILTERS = (
    queries.Filters(),
    queries.Filters(route="/chat"),
    queries.Filters(since=changes.from_ns(T0 + 1800 * 10**9)),
)


@pytest.mark.parametrize("seed", [1, 2])
def test_kept_series_equal_the_queries_after_every_kind_of_write(tmp_path, seed):
    rng = random.Random(seed)
    store = Store(str(tmp_path / "db.duckdb"))
    kept = Rollups(store.changes)
    cur = store.cursor()
    n = 0
    for step in range(8):
        at = [step * 900 + rng.uniform(0, 900) for _ in range(40)]
        at += [rng.uniform(0, step * 900 + 1) for _ in range(3)]  # late, out of order
        rows = [_row(rng, n + k, s) for k, s in enumerate(at)]
        rows.append(dict(rows[0]))  # a duplicate in the batch
        n += len(at)
        store.insert(Store.frame(rows), [])
        ids = [r["id"] for r in rows[:-1]]
        first = changes.from_ns(min(r["start_ns"] for r in rows))
        store.save_explanations(_explanations(rng, ids), None if step == 3 else first)
        if step >= 2:  # explained again: old rows' causes change, the caller knows when
            again = [f"r{rng.randrange(n)}" for _ in range(10)]
            first = store.con.execute(
                "SELECT min(ts) FROM requests WHERE id IN (SELECT unnest(?))", [again]
            ).fetchone()[0]
            store.save_explanations(_explanations(rng, sorted(set(again))), first)
        if step == 5:  # a rewind drops the explanations from a time on
            sql = "SELECT epoch(ts), id FROM requests WHERE id = 'r30'"
            key = store.con.execute(sql).fetchone()
            explaining.unexplain_from(store, key)
        for filters in FILTERS:
            _same(kept, cur, filters)
    store.close()


def test_a_row_a_merge_replaces_invalidates_everything(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    kept = Rollups(store.changes)
    cur = store.cursor()
    rng = random.Random(3)
    store.insert(Store.frame([_row(rng, i, i * 60.0) for i in range(30)]), [])
    _same(kept, cur, queries.Filters())
    version = store.changes.version
    store.con.execute("DELETE FROM requests WHERE id = 'r3'")  # as linking.forget does
    store.changes.touch(None)
    assert store.changes.since(version) == changes.EVERYTHING
    _same(kept, cur, queries.Filters())
    store.close()


def test_changes_say_the_earliest_time_touched_and_forget_the_oldest():
    log = changes.Changes()
    assert log.since(0) is None
    log.touch(datetime(2025, 1, 1, 12))
    log.touch(datetime(2025, 1, 1, 9))
    log.touch(datetime(2025, 1, 1, 15))
    assert log.since(0) == datetime(2025, 1, 1, 9)
    assert log.since(2) == datetime(2025, 1, 1, 15)
    assert log.since(3) is None
    for _ in range(changes.KEPT):
        log.touch(datetime(2025, 1, 2))
    assert log.since(0) == changes.EVERYTHING  # older than what is remembered
    assert log.since(log.version - 1) == datetime(2025, 1, 2)


def test_bucket_floor_is_where_duckdb_puts_the_bucket(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    for ts in (datetime(2025, 3, 4, 5, 6, 7, 890), datetime(1999, 12, 31, 23, 59, 59)):
        for window in (1, 60, 300, 3600, 86400, 7 * 86400):
            (want,) = store.con.execute(
                "SELECT time_bucket(to_seconds(?::BIGINT), ?::TIMESTAMP)", [window, ts]
            ).fetchone()
            assert bucket_floor(ts, window) == want
    store.close()
