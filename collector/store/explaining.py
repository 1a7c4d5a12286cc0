"""The reads of an explain pass: stored requests in time order, with what the explainer
needs of each, a chunk at a time (``collector.explanations`` runs the pass).

The explanations table says what is done: ``unexplained`` reads the requests without
one, ``remembered`` the explained ones a resuming explainer would still remember.
A request is placed by its key, (time, id), with the time as ``epoch(ts)`` gives it:
``since`` and ``before`` read the requests from a key on and the ones just before it,
for a pass that explains again from a request stored after some it precedes.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb

from collector.store.changes import from_ns
from collector.store.database import Store

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
    "retention_s",
    "encoding",
    "provider_verdict",
)


def _select(where: str, order: str = "r.ts, r.id", limit: str = "") -> str:
    """The rows a pass reads, with what the explainer needs of each."""
    # The time as epoch seconds: cheaper to fetch than a datetime, and what the explainer
    # computes with. (Reading a rendering only when a shape cause needs it, one query each,
    # was 5x slower in the server: the renderings come with the rows; the explainer's
    # byte bound counts the ones it keeps.)
    columns = ", ".join("epoch(r.ts) AS ts" if c == "ts" else f"r.{c}" for c in _COLUMNS)
    return (
        f"SELECT r.rowid AS rowid, {columns}, c.content FROM requests r "
        f"LEFT JOIN request_content c USING (id) WHERE {where} "
        f"ORDER BY {order} {limit}"
    )


WINDOW_ROWS = 50_000  # rows a pass's query sorts at a time (~3 KB each)
CONTENT_WINDOW_ROWS = 2_000  # when renderings are stored (tens of KB each)
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


# At or after a key: (time, id) >= (?, ?), the time given in microseconds, twice.
_FROM = "(r.ts > make_timestamp(?) OR (r.ts = make_timestamp(?) AND r.id >= ?))"
_UPTO = "r.rowid <= ?"
# The requests of the window before a key, the newest first, at most so many; oldest first.
_BEFORE = (
    "SELECT * FROM ("
    + _select(
        f"{_UPTO} AND NOT {_FROM} AND r.ts >= make_timestamp(?) - to_microseconds(?)",
        "r.ts DESC, r.id DESC",
        "LIMIT ?",
    )
    + ") ORDER BY ts, id"
)


def _key_params(key: tuple[float, str]) -> list:
    micros = round(key[0] * 1e6)
    return [micros, micros, key[1]]


def _key(cur: duckdb.DuckDBPyConnection, sql: str, params: list) -> tuple[float, str] | None:
    found = cur.execute(sql, params).fetchone()
    return (found[0], found[1]) if found else None


def _chunks(
    cur: duckdb.DuckDBPyConnection, sql: str, params: list, rows: int
) -> Iterator[Iterator[dict]]:
    """The rows of a query, ``rows`` at a time, each made a dict when it is reached."""
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description]
    while chunk := result.fetchmany(rows):
        yield (dict(zip(names, values, strict=True)) for values in chunk)


def _windows(
    cur: duckdb.DuckDBPyConnection, where: str, params: list, rows: int
) -> Iterator[Iterator[dict]]:
    """The rows ``where`` selects in time order, ``rows`` at a time, read a window of
    time at a time: each query sorts about WINDOW_ROWS rows, never all of them (a day of
    a million rows with their hashes and segment maps is gigabytes to sort; fewer rows
    when renderings are stored). The windows start at every so many-th time, found by
    sorting the times alone."""
    (captured,) = cur.execute("SELECT count(*) FROM (FROM request_content LIMIT 1)").fetchall()[0]
    step = CONTENT_WINDOW_ROWS if captured else WINDOW_ROWS
    starts = [
        start
        for (start,) in cur.execute(
            f"SELECT DISTINCT epoch_us(ts) AS start FROM (SELECT r.ts, row_number() OVER "
            f"(ORDER BY r.ts) AS n FROM requests r WHERE {where}) WHERE n % ? = 1 ORDER BY 1",
            [*params, step],
        ).fetchall()
    ]
    for i, start in enumerate(starts):
        if i + 1 < len(starts):
            window = f"{where} AND r.ts >= make_timestamp(?) AND r.ts < make_timestamp(?)"
            yield from _chunks(cur, _select(window), [*params, start, starts[i + 1]], rows)
        else:
            window = f"{where} AND r.ts >= make_timestamp(?)"
            yield from _chunks(cur, _select(window), [*params, start], rows)


def after(
    cur: duckdb.DuckDBPyConnection, rowid: int, rows: int, upto: int | None = None
) -> Iterator[Iterator[dict]]:
    """The requests stored after ``rowid`` (up to rowid ``upto``), in time order, ``rows``
    at a time."""
    if upto is None:
        return _windows(cur, "r.rowid > ?", [rowid], rows)
    return _windows(cur, f"r.rowid > ? AND {_UPTO}", [rowid, upto], rows)


def since(
    cur: duckdb.DuckDBPyConnection, key: tuple[float, str], upto: int, rows: int
) -> Iterator[Iterator[dict]]:
    """The requests from ``key`` on (up to rowid ``upto``), in time order, ``rows`` at a
    time."""
    return _windows(cur, f"{_FROM} AND {_UPTO}", [*_key_params(key), upto], rows)


def before(
    cur: duckdb.DuckDBPyConnection,
    key: tuple[float, str],
    upto: int,
    window_s: float,
    limit: int,
    rows: int,
) -> Iterator[Iterator[dict]]:
    """The requests of the ``window_s`` seconds before ``key`` (up to rowid ``upto``), at
    most ``limit``, in time order, ``rows`` at a time."""
    params = [upto, *_key_params(key), round(key[0] * 1e6), int(window_s * 1e6), limit]
    return _chunks(cur, _BEFORE, params, rows)


def earliest_after(cur: duckdb.DuckDBPyConnection, rowid: int, upto: int) -> tuple | None:
    """The key of the earliest request stored after ``rowid`` (up to ``upto``), or None."""
    sql = "SELECT epoch(ts), id FROM requests WHERE rowid > ? AND rowid <= ? ORDER BY ts, id"
    return _key(cur, sql + " LIMIT 1", [rowid, upto])


def earliest_unexplained(cur: duckdb.DuckDBPyConnection) -> tuple | None:
    """The key of the earliest request without an explanation, or None."""
    sql = f"SELECT epoch(r.ts), r.id FROM requests r WHERE NOT {_EXPLAINED} ORDER BY r.ts, r.id"
    return _key(cur, sql + " LIMIT 1", [])


def newest_explained(cur: duckdb.DuckDBPyConnection) -> tuple | None:
    """The key of the newest request with an explanation, or None."""
    sql = f"SELECT epoch(r.ts), r.id FROM requests r WHERE {_EXPLAINED}"
    return _key(cur, sql + " ORDER BY r.ts DESC, r.id DESC LIMIT 1", [])


def unexplain_from(store: Store, key: tuple[float, str]) -> int:
    """Drop the explanations of the requests from ``key`` on (returns how many): a pass
    explains them again, and a stop before it is done leaves them for the next start."""
    sql = f"DELETE FROM explanations WHERE id IN (SELECT r.id FROM requests r WHERE {_FROM})"
    with store._lock:  # the one writing connection, as the other writes take it
        # fetchall: a result left unfinished on the shared connection blocks later writes
        dropped = store.con.execute(sql, _key_params(key)).fetchall()[0][0]
    store.changes.touch(from_ns(int((key[0] - 1) * 1e9)))  # a second early: float times
    return dropped


def unexplained(cur: duckdb.DuckDBPyConnection, rows: int) -> Iterator[Iterator[dict]]:
    """The requests without an explanation, in time order, ``rows`` at a time."""
    return _windows(cur, f"NOT {_EXPLAINED}", [], rows)


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
