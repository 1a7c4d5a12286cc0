"""The store: migrations, idempotent batched inserts, group commit with back-pressure."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from analysis import fingerprint
from collector.store import migrations
from collector.store.database import Store, Writer

EXPECTED_REQUESTS = {
    "id": "VARCHAR",
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "parent_span_id": "VARCHAR",
    "signal": "VARCHAR",
    "service": "VARCHAR",
    "name": "VARCHAR",
    "ts": "TIMESTAMP",
    "duration_ms": "DOUBLE",
    "provider": "VARCHAR",
    "operation": "VARCHAR",
    "request_model": "VARCHAR",
    "response_model": "VARCHAR",
    "conversation_id": "VARCHAR",
    "session_key": "VARCHAR",
    "route": "VARCHAR",
    "replica": "VARCHAR",
    "prompt_version": "VARCHAR",
    "schema_version": "VARCHAR",
    "prefix_hash": "VARCHAR",
    "tools_hash": "VARCHAR",
    "tools_count": "INTEGER",
    "encoding": "VARCHAR",
    "block_size": "INTEGER",
    "block_hashes": "BLOB",
    "segments": "VARCHAR",
    "total_tokens": "BIGINT",
    "prompt_tokens": "BIGINT",
    "cached_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "ttft_ms": "DOUBLE",
    "is_error": "BOOLEAN",
    "error_type": "VARCHAR",
    "provider_verdict": "VARCHAR",
    "attributes": "VARCHAR",
    "ingested_at": "TIMESTAMP",
    "breakpoints": "VARCHAR",  # migration 005
    "retention_s": "INTEGER",  # migration 006
}


def _columns(con, table):
    return {
        name: kind
        for name, kind in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
    }


def test_blank_database_migrates_to_the_expected_schema(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    assert migrations.apply(con) == [
        "001_initial",
        "002_block_hashes_blob",
        "003_block_hashes_uncompressed",
        "004_null_impossible_token_counts",
        "005_breakpoints",
        "006_retention",
        "007_call_parts",
        "008_metric_series",
        "009_incidents",
    ]
    assert _columns(con, "requests") == EXPECTED_REQUESTS
    assert set(_columns(con, "call_parts")) == set(EXPECTED_REQUESTS) - {"ingested_at"} | {
        "arrived"
    }
    (ddl,) = con.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = 'requests'"
    ).fetchall()[0]
    # duckdb 1.5 leaves the compression out of the DDL it prints (2.0 shows it): ask the
    # storage what it wrote.
    con.execute(
        "INSERT INTO requests (id, ts, block_hashes) "
        "SELECT i::VARCHAR, now(), repeat('ab', 800)::BLOB FROM range(5000) t(i)"
    )
    con.execute("CHECKPOINT")
    assert con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('requests') "
        "WHERE column_name = 'block_hashes' AND segment_type <> 'VALIDITY'"
    ).fetchall() == [("Uncompressed",)]
    assert "PRIMARY KEY(id)" in ddl and "ts TIMESTAMP NOT NULL" in ddl
    assert con.execute(
        "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'requests_ts'"
    ).fetchall() == [(1,)]
    assert set(_columns(con, "explanations")) >= {
        "id",
        "cause",
        "segment",
        "missed_tokens",
        "predecessor_id",
        "provider_verdict",
    }
    assert set(_columns(con, "alerts")) >= {"rule", "group_key", "state", "attribution"}
    assert set(_columns(con, "alerts")) >= {"cause", "signals", "sparkline"}  # migration 009
    assert _columns(con, "request_content") == {"id": "VARCHAR", "content": "VARCHAR"}
    assert migrations.apply(con) == []  # applied once


def test_hash_lists_stored_before_the_blob_migration_survive_it(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR)")
    migrations.MIGRATIONS[0](con)
    con.execute("INSERT INTO schema_migrations VALUES (1, '001_initial')")
    extremes = [0, 1, -1, 2**63 - 1, -(2**63)]
    con.execute(
        "INSERT INTO requests (id, ts, block_hashes, route) VALUES "
        "('a', TIMESTAMP '2026-01-01', ?, '/chat'), ('b', TIMESTAMP '2026-01-02', NULL, NULL)",
        [extremes],
    )
    assert migrations.apply(con)[:2] == ["002_block_hashes_blob", "003_block_hashes_uncompressed"]
    rows = con.execute("SELECT id, block_hashes, route FROM requests ORDER BY id").fetchall()
    assert [(i, fingerprint.unpack_hashes(h), r) for i, h, r in rows] == [
        ("a", extremes, "/chat"),
        ("b", [], None),
    ]
    with pytest.raises(duckdb.ConstraintException):  # the key came back with the table
        con.execute("INSERT INTO requests (id, ts) VALUES ('a', now())")
    assert _columns(con, "requests") == EXPECTED_REQUESTS


def test_impossible_token_counts_stored_before_range_checks_become_null(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR)")
    for version in range(3):
        migrations.MIGRATIONS[version](con)
        con.execute("INSERT INTO schema_migrations VALUES (?, 'old')", [version + 1])
    con.execute(
        "INSERT INTO requests (id, ts, prompt_tokens, cached_tokens, output_tokens) VALUES "
        "('a', TIMESTAMP '2026-01-01', -9223372036854775808, 5, 9223372036854775807), "
        "('b', TIMESTAMP '2026-01-02', 2147483648, 0, 2147483649)"
    )
    assert migrations.apply(con)[:1] == ["004_null_impossible_token_counts"]
    rows = con.execute(
        "SELECT id, prompt_tokens, cached_tokens, output_tokens FROM requests ORDER BY id"
    ).fetchall()
    assert rows == [("a", None, 5, None), ("b", 2**31, 0, None)]
    assert con.execute("SELECT sum(output_tokens)::BIGINT FROM requests").fetchall() == [(None,)]


def _rows(n, start=0):
    return [
        {
            "id": f"id{i}",
            "start_ns": 1_763_800_000_000_000_000 + i,
            "signal": "span",
            "prompt_tokens": 100,
            "cached_tokens": 50,
            "block_hashes": fingerprint.pack_hashes([i, -i]),
        }
        for i in range(start, start + n)
    ]


def test_insert_is_idempotent_within_and_across_batches(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    frame = Store.frame(_rows(3) + _rows(1))  # one duplicate inside the batch
    assert store.insert(frame, [("id0", "rendered")]) == 3
    assert store.insert(Store.frame(_rows(4)), [("id0", "again")]) == 1
    rows = store.con.execute("SELECT id, block_hashes FROM requests ORDER BY id").fetchall()
    assert [(i, fingerprint.unpack_hashes(h)) for i, h in rows] == [
        ("id0", [0, 0]),
        ("id1", [1, -1]),
        ("id2", [2, -2]),
        ("id3", [3, -3]),
    ]
    assert store.con.execute("SELECT content FROM request_content").fetchall() == [("rendered",)]
    store.close()


def test_a_second_process_gets_a_clear_lock_error(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "db.duckdb"
    store = Store(str(path))
    code = (
        "from collector.store.database import Store, StoreLocked\n"
        f"try:\n    Store({str(path)!r})\nexcept StoreLocked as e:\n    print(e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "open in another process" in out
    store.close()


def test_writer_commits_before_acknowledging_and_applies_back_pressure(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    writer = Writer(store, max_pending_rows=10)
    first = writer.try_submit(Store.frame(_rows(5)), [])
    assert first.done.wait(30) and first.error is None
    assert store.con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == 5
    with store._lock:  # hold the commit, so submissions pile up
        batches = [writer.try_submit(Store.frame(_rows(4, 10 * k)), []) for k in range(1, 6)]
    accepted = [b for b in batches if b is not None]
    assert len(accepted) == 2  # refused once more than 10 rows would be pending
    for batch in accepted:
        batch.done.wait(30)
    writer.close()
    assert writer.committed_rows == 5 + 4 * len(accepted)
    assert writer.transactions <= 1 + len(accepted)


@pytest.mark.parametrize("decoding", [True, False])
def test_writer_lingers_only_while_more_exports_are_being_decoded(tmp_path, decoding):
    store = Store(str(tmp_path / "db.duckdb"))
    more = threading.Event()
    if decoding:
        more.set()
    writer = Writer(store, linger_s=30, more_coming=more.is_set)
    first = writer.try_submit(Store.frame(_rows(3)), [])
    if decoding:  # the writer holds the first batch for the second
        assert not first.done.wait(0.2)
        second = writer.try_submit(Store.frame(_rows(3, 10)), [])
        more.clear()
        assert second.done.wait(30)
    assert first.done.wait(30) and first.error is None
    writer.close()
    assert (writer.transactions, writer.committed_rows) == (1, 6 if decoding else 3)


def test_read_only_open_needs_no_writer(tmp_path):
    path = str(tmp_path / "db.duckdb")
    Store(path).close()
    reader = Store(path, read_only=True)
    assert reader.con.execute("SELECT count(*) FROM requests").fetchall()[0][0] == 0
    with pytest.raises(duckdb.Error):
        reader.con.execute("DELETE FROM requests")
    reader.close()


def test_writer_close_commits_what_is_queued_and_waits_only_as_long_as_asked(tmp_path):
    store = Store(str(tmp_path / "db.duckdb"))
    writer = Writer(store)
    with store._lock:  # a commit that cannot finish yet
        batch = writer.try_submit(Store.frame(_rows(3)), [])
        assert writer.close(timeout=0.1) is False
    assert writer.close(timeout=30) is True
    assert batch.done.is_set() and batch.error is None and writer.committed_rows == 3
    store.close()


def test_a_fresh_database_killed_after_migrating_opens_again(tmp_path):
    """duckdb 1.5.5 cannot replay migration 002's ALTER ... SET DEFAULT from the WAL, so
    apply() checkpoints: a process killed right after migrating leaves a file that opens."""
    import subprocess
    import sys

    path = str(tmp_path / "db.duckdb")
    code = (
        "import duckdb, os, signal\n"
        "from collector.store import migrations\n"
        f"con = duckdb.connect({path!r})\n"
        "con.execute(\"SET checkpoint_threshold = '256MiB'\")\n"
        "migrations.apply(con)\n"
        "con.execute(\"INSERT INTO requests (id, ts) VALUES ('a', now())\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent)
    con = duckdb.connect(path)
    assert con.execute("SELECT id FROM requests").fetchall() == [("a",)]
    con.close()
