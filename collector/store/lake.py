"""DuckLake: one store shared by many collectors and any number of readers.

The catalog lives in PostgreSQL (or, on one machine, a DuckDB file), the rows in Parquet
files under a data path; DuckDB reaches it with the same SQL as the embedded store, the
lake attached as ``lake`` and made the default catalog, so every reader query runs on it
unchanged.

A collector keeps its own embedded file as its working copy (linking the records of a
call, the explainer's TTL-bounded index and its reads) and, inside each group commit,
ships the rows that commit made new to the lake: the local transaction commits only after
the lake's did, so an acknowledgement still means committed to the catalog. DuckLake has
no PRIMARY KEY, UNIQUE or ON CONFLICT, so a re-sent span is kept once by three things:
the gateway routes an id to one collector (whose own file has the key), a commit inserts
only the ids the lake lacks among the rows of its time range (an anti-join the files'
``ts`` statistics prune), and ``dedupe`` (run by ``cachediag lake maintain``) deletes any
copy left over. Commits of several collectors clash on the catalog's snapshot ids:
DuckLake retries them (``ducklake_max_retry_count``), and a ``TransactionException``
that still escapes is retried here.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from collector.store import migrations

log = logging.getLogger(__name__)

ALIAS = "lake"
MAX_RETRY_COUNT = 100  # DuckLake's own retries of a commit that clashed (default 10)
COMMIT_ATTEMPTS = 6  # then ours, with backoff, around a whole transaction
BACKOFF_S = 0.05
# A collector's group commit gathers this long: DuckLake hands out snapshot ids through the
# catalog, and all collectors together get some 16-30 commits a second on one machine.
LAKE_BATCH_S = 1.0
LOCAL_TABLES = ("call_parts", "schema_migrations")  # each collector's own, never shared
# The extensions and the PyPI wheels (extra ``cachediag[lake]``) that carry them.
WHEELS = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
}


class LakeError(RuntimeError):
    """The lake cannot be reached or its extensions cannot be loaded."""


@dataclass(frozen=True)
class LakeConfig:
    """``catalog``: a DuckLake catalog, e.g. ``postgres:host=db dbname=lake`` or a file
    ``meta.ducklake``; ``data_path``: where the Parquet files go (a shared directory or an
    object-store URL)."""

    catalog: str
    data_path: str

    @property
    def uri(self) -> str:
        return self.catalog if self.catalog.startswith("ducklake:") else f"ducklake:{self.catalog}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _wheel_file(name: str) -> Path | None:
    """The extension file a PyPI wheel ships for this duckdb, if installed."""
    spec = importlib.util.find_spec(WHEELS[name])
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    found = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    return found if found.exists() else None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Load ``name``: installed already, else DuckDB's own INSTALL (network), else the
    wheel's file (offline); returns which way worked."""
    try:
        con.execute(f"LOAD {name}")
        return "installed"
    except duckdb.Error:
        pass
    try:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
        return "install"
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
    path = _wheel_file(name)
    if path is None:
        raise LakeError(
            f"cannot load DuckDB's {name} extension ({reason}); offline, install the "
            f"wheels built for duckdb {duckdb.__version__}: pip install 'cachediag[lake]'"
        )
    con.execute(f"LOAD {_quote(str(path))}")
    return "wheel"


def connect(config: LakeConfig, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached as the default catalog (its tables created or
    brought up to the local schema unless ``read_only``)."""
    con = duckdb.connect()
    try:
        load_extension(con, "ducklake")
        if "postgres:" in config.uri:
            load_extension(con, "postgres_scanner")
        options = f"DATA_PATH {_quote(config.data_path)}" + (", READ_ONLY" if read_only else "")
        con.execute(f"ATTACH {_quote(config.uri)} AS {ALIAS} ({options})")
    except duckdb.Error as exc:
        con.close()
        raise LakeError(f"cannot attach the lake {config.catalog}: {exc}") from None
    con.execute(f"USE {ALIAS}")
    con.execute(f"SET ducklake_max_retry_count = {MAX_RETRY_COUNT}")
    if not read_only:
        retrying(con, lambda: ensure_schema(con))
    return con


@functools.cache
def _schema() -> dict[str, list[tuple[str, str, str | None]]]:
    """Every shared table of a freshly migrated store, with its columns (name, type,
    default): the embedded schema is the lake's, its keys and indexes left out."""
    scratch = duckdb.connect()
    quiet = logging.getLogger(migrations.__name__)
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # a scratch store's migrations are no news
    try:
        migrations.apply(scratch)
        rows = scratch.execute(
            "SELECT table_name, column_name, data_type, column_default FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "ORDER BY table_name, column_index"
        ).fetchall()
    finally:
        quiet.setLevel(level)
        scratch.close()
    tables: dict[str, list[tuple[str, str, str | None]]] = {}
    for table, column, kind, default in rows:
        if table not in LOCAL_TABLES:
            tables.setdefault(table, []).append((column, kind, default))
    return tables


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the shared tables the lake lacks and add the columns a newer migration
    added (migrations only ever add, so the lake follows by adding)."""
    have: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ?", [ALIAS]
    ).fetchall():
        have.setdefault(table, set()).add(column)
    for table, columns in _schema().items():
        if table not in have:
            body = ", ".join(f"{c} {k}" + (f" DEFAULT {d}" if d else "") for c, k, d in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            continue
        for column, kind, _ in columns:
            if column not in have[table]:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def retrying(con: duckdb.DuckDBPyConnection, work, attempts: int = COMMIT_ATTEMPTS):
    """Run ``work`` in one lake transaction, again (after a backoff) when the commit clashes
    with another writer's beyond DuckLake's own retries; returns what ``work`` returned."""
    for attempt in range(attempts):
        con.execute("BEGIN TRANSACTION")
        try:
            result = work()
            con.execute("COMMIT")
            return result
        except (duckdb.TransactionException, duckdb.CatalogException) as exc:
            con.execute("ROLLBACK")
            if attempt + 1 == attempts:
                raise
            log.info("lake commit clashed (%s); retrying", str(exc).splitlines()[0])
            time.sleep(BACKOFF_S * 2**attempt)
        except BaseException:
            con.execute("ROLLBACK")
            raise
    raise AssertionError("unreachable")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        c
        for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [ALIAS, table],
        ).fetchall()
    ]


class LakeWriter:
    """A collector's connection to the lake: ships what its commits made new."""

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
        self.con = connect(config)
        self.commit_s: list[float] = []  # each lake commit's duration (benchmarks read it)
        self.rows = 0

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for another thread, the lake its default catalog too (a cursor starts
        in the in-memory one)."""
        cur = self.con.cursor()
        cur.execute(f"USE {ALIAS}")
        return cur

    def ship(self, local: duckdb.DuckDBPyConnection, ids: list[str], stale: list[str]) -> int:
        """Copy the local rows (and captured contents) of ``ids`` to the lake in one lake
        transaction, replacing the ``stale`` ones; the rows the lake lacked are inserted
        (returns how many). ``local`` is the collector's connection inside its open
        transaction, so it sees the rows about to commit."""
        if not ids and not stale:
            return 0
        wanted = pl.DataFrame({"id": ids}, schema={"id": pl.String})
        local.register("lake_ids", wanted)
        try:
            rows = local.execute(
                "SELECT * FROM requests WHERE id IN (SELECT id FROM lake_ids)"
            ).pl()
            content = local.execute(
                "SELECT * FROM request_content WHERE id IN (SELECT id FROM lake_ids)"
            ).pl()
        finally:
            local.unregister("lake_ids")
        started = time.perf_counter()
        inserted = retrying(self.con, lambda: self._write(rows, content, stale))
        self.commit_s.append(time.perf_counter() - started)
        self.rows += inserted
        return inserted

    def _write(self, rows: pl.DataFrame, content: pl.DataFrame, stale: list[str]) -> int:
        con = self.con
        if stale:
            con.register("stale_ids", pl.DataFrame({"id": stale}, schema={"id": pl.String}))
            try:
                for table in ("explanations", "request_content", "requests"):
                    con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM stale_ids)")
            finally:
                con.unregister("stale_ids")
        if not len(rows):
            return 0
        lo, hi = rows["ts"].min(), rows["ts"].max()
        con.register("incoming", rows)
        try:
            present = {
                i
                for (i,) in con.execute(
                    "SELECT id FROM requests WHERE ts BETWEEN ? AND ? "
                    "AND id IN (SELECT id FROM incoming)",
                    [lo, hi],
                ).fetchall()
            }
        finally:
            con.unregister("incoming")
        if present:
            rows = rows.filter(~pl.col("id").is_in(list(present)))
            content = content.filter(~pl.col("id").is_in(list(present)))
        self._append("requests", rows)
        self._append("request_content", content)
        return len(rows)

    def _append(self, table: str, frame: pl.DataFrame) -> None:
        if not len(frame):
            return
        names = ", ".join(c for c in _columns(self.con, table) if c in frame.columns)
        self.con.register("incoming_rows", frame)
        try:
            self.con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming_rows")
        finally:
            self.con.unregister("incoming_rows")

    def save_explanations(self, frame: pl.DataFrame) -> None:
        """Write explanations beside the rows (one per id: a new one replaces the old)."""
        if not len(frame):
            return

        def work() -> None:
            self.con.register("incoming_explanations", frame)
            try:
                self.con.execute(
                    "DELETE FROM explanations WHERE id IN (SELECT id FROM incoming_explanations)"
                )
                self._append("explanations", frame)
            finally:
                self.con.unregister("incoming_explanations")

        retrying(self.con, work)

    def close(self) -> None:
        if self.commit_s:
            ms = sorted(1000 * s for s in self.commit_s)
            log.info(
                "lake commits: %d, %d rows, p50 %.1f ms, p99 %.1f ms",
                len(ms),
                self.rows,
                ms[len(ms) // 2],
                ms[min(len(ms) - 1, int(len(ms) * 0.99))],
            )
        self.con.close()


def replace_alerts(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """Replace the lake's alerts with a fresh evaluation (one evaluator at a time; a
    second one's evaluation of the same rows is the same, so either may win)."""

    def work() -> None:
        con.execute("DELETE FROM alerts")
        if len(frame):
            con.register("incoming_alerts", frame)
            try:
                con.execute("INSERT INTO alerts BY NAME SELECT * FROM incoming_alerts")
            finally:
                con.unregister("incoming_alerts")

    retrying(con, work)
