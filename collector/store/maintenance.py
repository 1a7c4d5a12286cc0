"""Maintenance of a shared DuckLake, run while collectors keep writing
(``cachediag lake maintain``).

Every collector commit leaves small Parquet files and a snapshot; deletes leave delete
files. A run drops the copies of a re-sent span that reached the lake twice (two
collectors, or a crash between the lake's commit and a collector's own), merges adjacent
small files, expires the snapshots older than ``keep`` and deletes the files nothing
refers to any more. Each step is its own lake transaction, retried when it clashes with a
writer's commit.
"""

from __future__ import annotations

import duckdb

from collector.store.lake import ALIAS, retrying

KEYED = ("requests", "request_content", "explanations")  # one row per id


def dedupe(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Delete every row of ``table`` whose id an earlier row (lower rowid) has; returns
    how many went."""
    sql = (
        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() "
        f"OVER (PARTITION BY id ORDER BY rowid) AS n FROM {table}) WHERE n > 1)"
    )
    return retrying(con, lambda: con.execute(sql).fetchall()[0][0])


def maintain(con: duckdb.DuckDBPyConnection, keep: str = "1 hour") -> dict[str, int]:
    """Dedupe, then merge, expire and clean up; what each step did."""
    (before,) = con.execute(
        "SELECT strftime(now() - CAST(? AS INTERVAL), '%Y-%m-%d %H:%M:%S.%f%z')", [keep]
    ).fetchone()  # checked as an interval; a string, as a datetime with a zone needs pytz
    done = {f"duplicates_{table}": dedupe(con, table) for table in KEYED}
    older = f"older_than => TIMESTAMPTZ '{before}'"
    steps = {
        "flushed_inlined": f"ducklake_flush_inlined_data('{ALIAS}')",
        "merged": f"ducklake_merge_adjacent_files('{ALIAS}')",
        "expired_snapshots": f"ducklake_expire_snapshots('{ALIAS}', {older})",
    }
    for name, call in steps.items():
        sql = f"SELECT count(*) FROM {call}"
        done[name] = retrying(con, lambda sql=sql: con.execute(sql).fetchone()[0])
    # Files are deleted outside a transaction: a reader's snapshot may still name them
    # until it expires, which is what ``keep`` waits for.
    cleanup = f"SELECT count(*) FROM ducklake_cleanup_old_files('{ALIAS}', {older})"
    done["files_deleted"] = con.execute(cleanup).fetchone()[0]
    return done
