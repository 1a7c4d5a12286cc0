"""The reads of an explain pass: stored requests in time order, with what the explainer
needs of each, a chunk at a time (``collector.explanations`` runs the pass).

The explanations table says what is done: ``unexplained`` reads the requests without
one, ``remembered`` the explained ones a resuming explainer would still remember.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb

_COLUMNS = (
    "id",
    "ts",
    "session_key",
    "conversation_id",
    "request_model",
    "provider",
    "route",
    "replica",
    "block_hashes",
    "block_size",
    "total_tokens",
    "prompt_tokens",
    "cached_tokens",
    "segments",
    "breakpoints",
    "encoding",
    "provider_verdict",
)


def _select(where: str, order: str = "r.ts, r.id", limit: str = "") -> str:
    """The rows a pass reads, with what the explainer needs of each."""
    # The time as epoch seconds: cheaper to fetch than a datetime, and what the explainer
    # computes with.
    columns = ", ".join("epoch(r.ts) AS ts" if c == "ts" else f"r.{c}" for c in _COLUMNS)
    return (
        f"SELECT r.rowid AS rowid, {columns}, c.content FROM requests r "
        f"LEFT JOIN request_content c USING (id) WHERE {where} ORDER BY {order} {limit}"
    )


_EXPLAINED = "EXISTS (SELECT 1 FROM explanations e WHERE e.id = r.id)"
# The newest explained requests within the window before the newest of them, oldest first.
_PRIME = (
    f"WITH newest AS (SELECT max(r.ts) AS ts FROM requests r WHERE {_EXPLAINED}) "
    "SELECT * FROM ("
    + _select(
        f"{_EXPLAINED} AND r.ts >= (SELECT ts FROM newest) - to_microseconds(?)",
        "r.ts DESC, r.id DESC",
        "LIMIT ?",
    )
    + ") ORDER BY ts, id"
)


def _chunks(
    cur: duckdb.DuckDBPyConnection, sql: str, params: list, rows: int
) -> Iterator[Iterator[dict]]:
    """The rows of a query, ``rows`` at a time, each made a dict when it is reached."""
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description]
    while chunk := result.fetchmany(rows):
        yield (dict(zip(names, values, strict=True)) for values in chunk)


def after(cur: duckdb.DuckDBPyConnection, rowid: int, rows: int) -> Iterator[Iterator[dict]]:
    """The requests stored after ``rowid``, in time order, ``rows`` at a time."""
    return _chunks(cur, _select("r.rowid > ?"), [rowid], rows)


def unexplained(cur: duckdb.DuckDBPyConnection, rows: int) -> Iterator[Iterator[dict]]:
    """The requests without an explanation, in time order, ``rows`` at a time."""
    return _chunks(cur, _select(f"NOT {_EXPLAINED}"), [], rows)


def remembered(
    cur: duckdb.DuckDBPyConnection, window_s: float, limit: int, rows: int
) -> Iterator[Iterator[dict]]:
    """The explained requests of the ``window_s`` seconds before the newest of them, at
    most ``limit``, in time order, ``rows`` at a time."""
    return _chunks(cur, _PRIME, [int(window_s * 1e6), limit], rows)


def last_rowid(cur: duckdb.DuckDBPyConnection) -> int:
    """The rowid of the newest stored request (-1 when there is none)."""
    return cur.execute("SELECT coalesce(max(rowid), -1) FROM requests").fetchone()[0]


def waiting(cur: duckdb.DuckDBPyConnection) -> int:
    """How many stored requests have no explanation yet."""
    query = f"SELECT count(*) FROM requests r WHERE NOT {_EXPLAINED}"
    return cur.execute(query).fetchall()[0][0]
