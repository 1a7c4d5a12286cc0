"""Series kept between writes: the answers of the bucketed reads (time series, missed
cost by cause, prefixes) and of routing, per query, recomputed only where the store
changed.

Each kept answer remembers the store's write version it was computed at. On the next
ask, ``Changes.since`` says from which request time on any write since then changed
rows; only the buckets from that time's bucket on are computed again (a range the
query prunes on ``ts``) and replace the kept ones. With no write since, the kept answer
is the answer. The full query is the definition: a kept answer always equals it
(tests/test_rollups.py checks that on hostile streams). A store read through a lake
(other collectors write there) keeps nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

import duckdb
import polars as pl

from collector.store import misses, queries
from collector.store.changes import EVERYTHING, Changes

ORIGIN = datetime(2000, 1, 3)  # DuckDB's time_bucket origin for intervals under a month
COUNT_WINDOW_S = 3600  # the kept causes a count of misses is summed from
KEPT = 64  # answers kept (filters and windows asked for), least recently used dropped
Compute = Callable[[queries.Filters], pl.DataFrame]


def bucket_floor(ts: datetime, window_s: int) -> datetime:
    """The start of the ``window_s`` bucket holding ``ts``, as ``time_bucket`` puts it."""
    step = timedelta(seconds=window_s)
    return ORIGIN + ((ts - ORIGIN) // step) * step


@dataclasses.dataclass
class _Kept:
    version: int
    frame: pl.DataFrame


class Rollups:
    """Kept answers over one store's ``changes`` (None: keep nothing, compute each ask)."""

    def __init__(self, changes: Changes | None) -> None:
        self.changes = changes
        self._kept: OrderedDict[tuple, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def series(
        self, cur: duckdb.DuckDBPyConnection, filters: queries.Filters, window_s: int, group=None
    ) -> pl.DataFrame:
        """``queries.timeseries``, kept."""
        return self._bucketed(
            ("series", filters, window_s, group),
            filters,
            window_s,
            lambda f: queries.timeseries(cur, f, window_s, group),
            ("window", "group"),
        )

    def causes(
        self, cur: duckdb.DuckDBPyConnection, filters: queries.Filters, window_s: int
    ) -> pl.DataFrame:
        """``misses.by_cause``, kept."""
        return self._bucketed(
            ("causes", filters, window_s),
            filters,
            window_s,
            lambda f: misses.by_cause(cur, f, window_s),
            ("window", "cause"),
        )

    def prefixes(
        self, cur: duckdb.DuckDBPyConnection, filters: queries.Filters, window_s: int
    ) -> pl.DataFrame:
        """``queries.prefixes``, kept."""
        return self._bucketed(
            ("prefixes", filters, window_s),
            filters,
            window_s,
            lambda f: queries.prefixes(cur, f, window_s),
            ("window", "route"),
        )

    def count(
        self,
        cur: duckdb.DuckDBPyConnection,
        filters: queries.Filters,
        cause: str | None = None,
        misses_only: bool = False,
    ) -> int:
        """``misses.count``: for misses, summed from the kept misses per hour and cause."""
        if not misses_only or self.changes is None:
            return misses.count(cur, filters, cause, misses_only)
        frame = self._hourly_misses(cur, filters, cause)
        return int(frame["misses"].sum()) if len(frame) else 0

    def page(
        self,
        cur: duckdb.DuckDBPyConnection,
        filters: queries.Filters,
        cause: str | None = None,
        limit: int = 100,
        offset: int = 0,
        misses_only: bool = False,
    ) -> pl.DataFrame:
        """``misses.page``: for misses, searched from the hour the kept misses per hour
        say holds the page (one query instead of ever longer spans)."""
        holds = None
        if misses_only and self.changes is not None:
            frame = self._hourly_misses(cur, filters, cause)
            hours = (
                frame.group_by("window").agg(pl.col("misses").sum()).sort("window", descending=True)
            )
            enough = hours.filter(pl.col("misses").cum_sum() >= offset + limit)
            holds = enough["window"][0] if len(enough) else None
        return misses.page(cur, filters, cause, limit, offset, misses_only, holds)

    def _hourly_misses(
        self, cur: duckdb.DuckDBPyConnection, filters: queries.Filters, cause: str | None
    ) -> pl.DataFrame:
        """The kept misses per hour and cause, of ``cause`` only when given."""
        frame = self.causes(cur, filters, COUNT_WINDOW_S)
        return frame if cause is None else frame.filter(pl.col("cause") == cause)

    def routing(self, cur: duckdb.DuckDBPyConnection, filters: queries.Filters) -> pl.DataFrame:
        """``queries.routing``, kept until any write (it is not per bucket)."""
        key = ("routing", filters)
        version = self._version()
        kept = self._get(key)
        if kept is not None and self.changes.since(kept.version) is None:
            return kept.frame
        frame = queries.routing(cur, filters)
        self._put(key, version, frame)
        return frame

    def _bucketed(
        self,
        key: tuple,
        filters: queries.Filters,
        window_s: int,
        compute: Compute,
        order: tuple[str, ...],
    ) -> pl.DataFrame:
        version = self._version()  # before reading: a write during the read is seen next ask
        kept = self._get(key)
        changed = EVERYTHING if kept is None else self.changes.since(kept.version)
        if changed is None:
            return kept.frame
        if changed == EVERYTHING:
            frame = compute(filters)
        else:
            floor = bucket_floor(changed, window_s)
            since = floor if filters.since is None else max(floor, filters.since)
            fresh = compute(dataclasses.replace(filters, since=since))
            old = kept.frame.filter(pl.col("window") < floor)
            parts = [p for p in (old, fresh) if len(p)]
            frame = (
                pl.concat(parts, how="vertical_relaxed").sort(order, nulls_last=True)
                if len(parts) > 1
                else (parts[0] if parts else fresh)
            )
        self._put(key, version, frame)
        return frame

    def _version(self) -> int:
        return self.changes.version if self.changes is not None else -1

    def _get(self, key: tuple) -> _Kept | None:
        if self.changes is None:
            return None
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
            return kept

    def _put(self, key: tuple, version: int, frame: pl.DataFrame) -> None:
        if self.changes is None:
            return
        with self._lock:
            self._kept[key] = _Kept(version, frame)
            self._kept.move_to_end(key)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
