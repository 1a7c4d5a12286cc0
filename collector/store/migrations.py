"""Schema migrations: functions that are only ever appended, each run in one transaction.

A database records in ``schema_migrations`` which ones it has; opening a
store applies the rest in order. Never edit or reorder a migration that has
shipped: add a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import duckdb

log = logging.getLogger(__name__)


def _001_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE requests (
            id VARCHAR PRIMARY KEY,          -- trace_id + span_id (hex)
            trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR,
            signal VARCHAR,                  -- span | log | record
            service VARCHAR, name VARCHAR,
            ts TIMESTAMP NOT NULL,           -- request start, UTC
            duration_ms DOUBLE,
            provider VARCHAR, operation VARCHAR, request_model VARCHAR, response_model VARCHAR,
            conversation_id VARCHAR, session_key VARCHAR, route VARCHAR, replica VARCHAR,
            prompt_version VARCHAR, schema_version VARCHAR,
            prefix_hash VARCHAR, tools_hash VARCHAR, tools_count INTEGER,
            encoding VARCHAR, block_size INTEGER, block_hashes BIGINT[],
            segments VARCHAR,                -- JSON segment map
            total_tokens BIGINT,             -- tokens of our rendering
            prompt_tokens BIGINT,            -- all input tokens, cached included
            cached_tokens BIGINT, cache_write_tokens BIGINT, output_tokens BIGINT,
            ttft_ms DOUBLE, is_error BOOLEAN, error_type VARCHAR,
            provider_verdict VARCHAR,        -- provider's own miss diagnostics, JSON
            attributes VARCHAR,              -- unclaimed attributes, JSON
            ingested_at TIMESTAMP DEFAULT current_timestamp
        )""")
    con.execute("CREATE TABLE request_content (id VARCHAR PRIMARY KEY, content VARCHAR)")
    con.execute("""
        CREATE TABLE explanations (
            id VARCHAR PRIMARY KEY, cause VARCHAR, segment VARCHAR, path VARCHAR,
            first_diff_token BIGINT, first_diff_block INTEGER,
            expected_cached BIGINT, reported_cached BIGINT,
            missed_tokens BIGINT, missed_cost_usd DOUBLE,
            predecessor_id VARCHAR, provider_verdict VARCHAR, detail VARCHAR,
            explained_at TIMESTAMP DEFAULT current_timestamp
        )""")
    con.execute("""
        CREATE TABLE alerts (
            id VARCHAR PRIMARY KEY, rule VARCHAR, group_key VARCHAR, state VARCHAR,
            started_at TIMESTAMP, resolved_at TIMESTAMP, value DOUBLE, baseline DOUBLE,
            attribution VARCHAR, top_causes VARCHAR, cost_per_hour DOUBLE,
            updated_at TIMESTAMP
        )""")
    con.execute("CREATE INDEX requests_ts ON requests (ts)")


def pack_sql(column: str) -> str:
    """SQL turning a BIGINT[] into the stored BLOB (big-endian, 8 bytes per hash)."""
    return (
        f"from_hex(array_to_string(list_transform({column}, lambda v: printf('%016x', "
        "((v::HUGEINT + 18446744073709551616) % 18446744073709551616)::UBIGINT)), ''))"
    )


def _002_block_hashes_blob(con: duckdb.DuckDBPyConnection) -> None:
    """Block hashes as one BLOB per row instead of a BIGINT list: DuckDB inserts rows
    with a 200-entry list at about half the rate. An index pins the column, so the table
    is rebuilt (with its key and index) rather than altered."""
    columns = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'requests' "
            "ORDER BY column_index"
        ).fetchall()
    ]
    select = ", ".join(f"{pack_sql(c)} AS {c}" if c == "block_hashes" else c for c in columns)
    con.execute(f"CREATE TABLE requests_v2 AS SELECT {select} FROM requests")
    con.execute("DROP TABLE requests")
    con.execute("ALTER TABLE requests_v2 RENAME TO requests")
    con.execute("ALTER TABLE requests ADD PRIMARY KEY (id)")
    con.execute("ALTER TABLE requests ALTER COLUMN ts SET NOT NULL")
    con.execute("ALTER TABLE requests ALTER COLUMN ingested_at SET DEFAULT current_timestamp")
    con.execute("CREATE INDEX requests_ts ON requests (ts)")


def _003_block_hashes_uncompressed(con: duckdb.DuckDBPyConnection) -> None:
    """Block hashes stored without compression: they are random bytes, which no codec
    shrinks, and DuckDB's search for one halved the insert rate (checkpoints included)
    for a database of the same size. The table is rebuilt from its own definition."""
    (ddl,) = con.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = 'requests'"
    ).fetchall()[0]
    column = " block_hashes BLOB,"
    if column not in ddl:  # a definition this DuckDB writes otherwise: keep the table as is
        log.warning("block hashes left compressed: unexpected table definition %r", ddl)
        return
    ddl = ddl.replace("CREATE TABLE requests(", "CREATE TABLE requests_v3(", 1).replace(
        column, " block_hashes BLOB USING COMPRESSION uncompressed,", 1
    )
    con.execute(ddl)
    con.execute("INSERT INTO requests_v3 SELECT * FROM requests")
    con.execute("DROP TABLE requests")
    con.execute("ALTER TABLE requests_v3 RENAME TO requests")
    con.execute("CREATE INDEX requests_ts ON requests (ts)")


def _004_null_impossible_token_counts(con: duckdb.DuckDBPyConnection) -> None:
    """Token counts outside 0..2^31 (stored before ingest checked ranges, e.g. -2^63) become
    NULL: they are no count any provider reports, and summing them overflowed the series,
    the alert windows and the explainer's arithmetic. Ingest now rejects such spans."""
    for column in (
        "total_tokens",
        "prompt_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "output_tokens",
    ):
        con.execute(
            f"UPDATE requests SET {column} = NULL "
            f"WHERE {column} < 0 OR {column} > {2**31}"  # mapping.MAX_TOKENS when written
        )


def _005_breakpoints(con: duckdb.DuckDBPyConnection) -> None:
    """The token positions of a request's cache_control breakpoints (JSON), the only
    places where Anthropic writes and reads cache entries. NULL for requests stored
    before: the explainer then applies the provider's minimum alone."""
    con.execute("ALTER TABLE requests ADD COLUMN breakpoints VARCHAR")


def _006_retention(con: duckdb.DuckDBPyConnection) -> None:
    """The cache lifetime a request asked for (OpenAI prompt_cache_retention, Anthropic
    cache_control ttl), seconds; NULL: the provider's default, as for requests before."""
    con.execute("ALTER TABLE requests ADD COLUMN retention_s INTEGER")


def _007_call_parts(con: duckdb.DuckDBPyConnection) -> None:
    """What enriches an LLM call and arrived before it (a log record exported before its
    span, Logfire's stream tail): the columns of a request row, waiting for the call's row
    to merge into (``collector.store.linking``), then deleted."""
    con.execute("CREATE TABLE call_parts AS SELECT * EXCLUDE (ingested_at) FROM requests LIMIT 0")
    con.execute("ALTER TABLE call_parts ADD COLUMN arrived TIMESTAMP DEFAULT current_timestamp")


def _008_metric_series(con: duckdb.DuckDBPyConnection) -> None:
    """GenAI client metrics (token usage, operation duration, time to first token) as
    exported: one row per histogram data point, cumulative or delta, so routes that send
    metrics and no spans still have series (``collector.store.metric_series``)."""
    con.execute("""
        CREATE TABLE metric_points (
            series VARCHAR NOT NULL,        -- hash of resource, scope, name, point attributes
            name VARCHAR, unit VARCHAR,
            service VARCHAR, route VARCHAR, replica VARCHAR,
            provider VARCHAR, operation VARCHAR, request_model VARCHAR, response_model VARCHAR,
            token_type VARCHAR, server_address VARCHAR, error_type VARCHAR,
            start_ns BIGINT, end_ns BIGINT NOT NULL,
            ts TIMESTAMP NOT NULL,          -- the point's time (end_ns), UTC
            cumulative BOOLEAN,             -- count/sum since start_ns, else since the last point
            count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE,
            bounds DOUBLE[], bucket_counts BIGINT[],
            attributes VARCHAR,             -- the point's attributes, JSON
            ingested_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (series, end_ns)
        )""")


def _009_incidents(con: duckdb.DuckDBPyConnection) -> None:
    """An alert is an incident now: its cause, its signals (a JSON list of {rule, value,
    baseline, at}) and a sparkline (a JSON list of its cause's missed $/h per window).
    NULL for alerts stored before (the next evaluation replaces them all)."""
    for column in ("cause", "signals", "sparkline"):
        con.execute(f"ALTER TABLE alerts ADD COLUMN {column} VARCHAR")


MIGRATIONS: tuple[Callable[[duckdb.DuckDBPyConnection], None], ...] = (
    _001_initial,
    _002_block_hashes_blob,
    _003_block_hashes_uncompressed,
    _004_null_impossible_token_counts,
    _005_breakpoints,
    _006_retention,
    _007_call_parts,
    _008_metric_series,
    _009_incidents,
)


def apply(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration the database lacks (in order; each is known by the number in
    its name, so one added on another branch keeps its number); return the names applied."""
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR,
        applied_at TIMESTAMP DEFAULT current_timestamp)""")
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for migration in MIGRATIONS:
        version = int(migration.__name__[1:4])  # _NNN_name: a number skipped stays free
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            migration(con)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                [version, migration.__name__.lstrip("_")],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        log.info("applied migration %s", migration.__name__)
        applied.append(migration.__name__.lstrip("_"))
    if applied:
        # Schema changes go to the file at once, never left in the WAL: duckdb 1.5.5 cannot
        # replay an ALTER ... SET DEFAULT current_timestamp (002) after a crash.
        con.execute("CHECKPOINT")
    return applied
