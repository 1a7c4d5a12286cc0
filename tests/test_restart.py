"""Stop and restart a real server: nothing explained twice, stops prompt and clean."""

from __future__ import annotations

import signal
import time
import zlib

import duckdb
import pytest

from tests.otlp_build import traces
from tests.servers import Server, free_port

PB = {"Content-Type": "application/x-protobuf"}
T0 = 1_763_800_000 * 10**9
SESSIONS = 10
ABORTS = ("terminate called", "FATAL", "Traceback", "RuntimeError")


def _id(session: int, turn: int) -> tuple[bytes, bytes]:
    return session.to_bytes(8, "big") + turn.to_bytes(8, "big"), (turn + 1).to_bytes(8, "big")


def _turn(session: int, turn: int) -> dict:
    """Turn ``turn`` of conversation ``session``: its block chain extends the turn before,
    and the cache served all of that."""
    blocks = 20 + 5 * turn
    hashes = [zlib.crc32(f"{session}/{k}".encode()) for k in range(blocks)]
    trace_id, span_id = _id(session, turn)
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "start": T0 + (60 * turn + session) * 10**9,
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "cachediag.session_key": f"s{session}",
            "cachediag.route": "/chat",
            "cachediag.replica": "r1",
            "cachediag.block_size": 64,
            "cachediag.block_hashes": hashes,
            "gen_ai.usage.input_tokens": blocks * 64,
            "gen_ai.usage.cache_read.input_tokens": (blocks - 5) * 64 if turn else 0,
        },
    }


def _rid(session: int, turn: int) -> str:
    trace_id, span_id = _id(session, turn)
    return trace_id.hex() + span_id.hex()


def _post(srv: Server, spans: list[dict]) -> None:
    status, _, body = srv.request("POST", "/v1/traces", traces(spans).SerializeToString(), PB)
    assert status == 200, body


def _stop(srv: Server, sig: int = signal.SIGTERM) -> None:
    """Stop the server: it must exit with status 0 and no abort or traceback."""
    proc = srv.proc
    began = time.monotonic()
    err = srv.stop(sig)
    took = time.monotonic() - began
    print(f"{signal.Signals(sig).name}: exited {proc.returncode} in {took:.2f} s")
    assert proc.returncode == 0, err
    assert not [word for word in ABORTS if word in err], err


def _explanations(db) -> dict[str, tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        (unexplained,) = con.execute(
            "SELECT count(*) FROM requests r ANTI JOIN explanations e USING (id)"
        ).fetchone()
        assert unexplained == 0  # and the primary key makes it at most one each
        rows = con.execute("SELECT * EXCLUDE (explained_at) FROM explanations").fetchall()
    return {r[0]: r for r in rows}


def test_a_restart_re_explains_nothing_and_the_next_turn_finds_its_stored_predecessor(
    tmp_path,
):
    db = tmp_path / "db.duckdb"
    srv = Server(db, "--workers", "0", "--grpc-port", str(free_port())).start()
    for turn in range(3):
        _post(srv, [_turn(s, turn) for s in range(SESSIONS)])
    stats = srv.api("stats?wait=1")
    assert stats["explained_rows"] == stats["committed_rows"] == 3 * SESSIONS
    _stop(srv)
    before = _explanations(db)

    again = Server(db, "--workers", "0", "--no-grpc").start()
    assert again.api("stats?wait=1")["explained_rows"] == 0  # starting re-explains nothing
    _post(again, [_turn(0, 3)])
    stats = again.api("stats?wait=1")
    assert stats["explained_rows"] == stats["committed_rows"] == 1
    _stop(again)
    after = _explanations(db)
    assert len(after) == 3 * SESSIONS + 1
    assert {k: after[k] for k in before} == before  # the stored explanations, untouched
    new = after[_rid(0, 3)]
    # primed from the store: the new turn's predecessor is its session's stored turn
    assert (new[1], new[10]) == ("no_miss", _rid(0, 2))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_a_long_pass_is_clean_and_the_next_start_explains_the_rest(tmp_path, sig):
    from benchmarks.bench_explain import fill_sessions
    from collector.store.database import Store

    rows = 40_000
    db = tmp_path / "db.duckdb"
    store = Store(str(db))
    fill_sessions(store, rows)  # stored, none explained: the server starts on them
    store.close()
    args = ("--workers", "0", "--no-grpc", "--alert-every", "0.05")
    srv = Server(db, *args).start()
    for _ in range(10_000):  # bounded: until the first rows are explained
        if srv.api("stats")["explained_rows"]:
            break
    _stop(srv, sig)
    with duckdb.connect(str(db), read_only=True) as con:
        (done,) = con.execute("SELECT count(*) FROM explanations").fetchone()
    print(f"{done} of {rows} explained before the stop")
    again = Server(db, *args).start()
    assert again.api("stats?wait=1")["explained_rows"] == rows - done
    _stop(again, sig)
    assert len(_explanations(db)) == rows


def test_the_alert_loop_stops_at_once_and_leaves_the_store(tmp_path):
    from analysis.alerts import Rules
    from collector.alerting import AlertLoop
    from collector.store.database import Store

    store = Store(str(tmp_path / "db.duckdb"))
    loop = AlertLoop(store, Rules(), interval_s=3600)
    assert loop.close(timeout=5) is True
    loop._thread.join(5)
    assert not loop._thread.is_alive()
    store.close()
