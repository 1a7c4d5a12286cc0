"""The HTTP front as a real server: unusable Content-Length, short bodies, stalled and
idle clients, the connection cap, the decompressed-byte budget, unexpected errors and
a SIGKILLed decode worker. Each gets a status code; nothing half-received is stored."""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from tests.otlp_build import traces
from tests.servers import Server

PB = {"Content-Type": "application/x-protobuf"}
LLM = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 2000,
    "cachediag.route": "/receiver",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("srv") / "db.duckdb", "--workers", "0").start()
    yield srv
    assert "Traceback" not in srv.stop()


def _export(spans, seed):
    return traces(spans, seed=seed).SerializeToString()


def _raw(server, head: bytes, body: bytes = b"", half_close: bool = False) -> bytes:
    """Send bytes as they are on a fresh connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _answer(sock)


def _answer(sock: socket.socket) -> bytes:
    """One whole HTTP answer read from ``sock`` (or what came before it closed)."""
    out = b""
    while True:
        head, sep, _ = out.partition(b"\r\n\r\n")
        length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
        if sep and len(out) >= len(head) + 4 + (int(length[0][15:]) if length else 0):
            return out
        chunk = sock.recv(1 << 16)
        if not chunk:
            return out
        out += chunk


def _post_head(length: str, extra: str = "") -> bytes:
    return (
        f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "length, status",
    [("abc", 400), ("-5", 400), ("1e3", 400), ("²", 400), ("9" * 30, 413), ("9" * 5000, 413)],
)
def test_unusable_content_length_is_answered(server, length, status):
    answer = _raw(server, _post_head(length))
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert server.api("stats")["server_errors"] == 0


def test_chunked_body_needs_a_length(server):
    head = (
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert _raw(server, head, b"0\r\n\r\n").startswith(b"HTTP/1.1 411 ")


def test_short_body_is_refused_and_not_stored(server):
    body = _export([{"attributes": dict(LLM, **{"cachediag.route": "/short"})}], 106)
    answer = _raw(server, _post_head(str(len(body) + 50)), body, half_close=True)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"body ended after" in answer
    assert server.api("requests?route=/short")["count"] == 0


def test_an_unexpected_error_is_answered_500(tmp_path, monkeypatch):
    from collector.receiver.intake import Config
    from collector.receiver.server import make_server

    httpd = make_server(
        Config(db=str(tmp_path / "db.duckdb"), port=0, explain=False, alert_every_s=0)
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:

        def boom(*_args):
            raise RuntimeError("a bug")

        monkeypatch.setattr(httpd.collector, "ingest", boom)
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=30)
        conn.request("POST", "/v1/traces", _export([{"attributes": LLM}], 107), PB)
        response = conn.getresponse()
        assert response.status == 500 and b"a bug" not in response.read()
        assert httpd.collector.stats.server_errors == 1 and httpd.collector.inflight == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
        httpd.collector.close()
        thread.join(30)


@pytest.fixture()
def impatient(tmp_path, monkeypatch):
    """A server with one-second read and idle timeouts and a one-MiB in-flight budget."""
    monkeypatch.setenv("CACHEDIAG_READ_TIMEOUT_S", "1")
    monkeypatch.setenv("CACHEDIAG_IDLE_TIMEOUT_S", "1")
    srv = Server(tmp_path / "db.duckdb", "--workers", "0", "--inflight-mib", "1").start()
    yield srv
    assert "Traceback" not in srv.stop()


def test_a_stalled_client_is_dropped_and_its_budget_released(impatient):
    # It claims the whole in-flight budget, sends a few bytes and stalls.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as stalled:
        stalled.sendall(_post_head(str(1024 * 1024)) + b"\x0a\x03")
        answer = b"".join(iter(lambda: stalled.recv(1 << 16), b""))  # until it closes
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    body = _export([{"attributes": dict(LLM, **{"cachediag.route": "/after"})}], 108)
    assert impatient.request("POST", "/v1/traces", body, PB)[0] == 200
    stats = impatient.api("stats")
    assert stats["timed_out"] == 1 and stats["inflight_bytes"] == 0
    assert impatient.api("requests?route=/after")["count"] == 1


def test_an_idle_connection_is_closed(impatient):
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as idle:
        assert idle.recv(1) == b""  # closed by the server, not by our 30 s timeout


def test_connections_past_the_cap_get_503(tmp_path):
    srv = Server(tmp_path / "db.duckdb", "--workers", "0", "--max-connections", "2").start()
    try:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=30) for _ in range(2)]
        answer = _raw(srv, b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
        held[0].sendall(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _answer(held[0])
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"refused_connections": 1' in answer
        for sock in held:
            sock.close()
    finally:
        assert "Traceback" not in srv.stop()


def _decode_workers(pid: int) -> list[int]:
    """The spawned decode workers of process ``pid`` (children running spawn_main)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_a_killed_decode_worker_is_replaced_and_counted(tmp_path):
    srv = Server(tmp_path / "db.duckdb", "--workers", "1").start()
    try:
        for n in range(6):
            if n == 2:
                (worker,) = _decode_workers(srv.proc.pid)
                os.kill(worker, signal.SIGKILL)
            spans = [{"attributes": dict(LLM, **{"cachediag.route": "/killed"})}] * 3
            assert srv.request("POST", "/v1/traces", _export(spans, 200 + n), PB)[0] == 200
        assert srv.api("requests?route=/killed")["count"] == 18
        assert srv.api("stats")["worker_restarts"] >= 1
        assert worker not in _decode_workers(srv.proc.pid)
    finally:
        assert "Traceback" not in srv.stop()


def test_the_budget_counts_inflated_bytes(tmp_path):
    from collector.receiver.intake import Collector, Config
    from collector.receiver.reply import Reply

    mib = 1024 * 1024
    collector = Collector(
        Config(
            db=str(tmp_path / "db.duckdb"),
            max_body=mib,
            inflight_bytes=2 * mib,
            explain=False,
            alert_every_s=0,
        )
    )
    try:
        body = _export([{"attributes": LLM}], 300)
        small = gzip.compress(body)
        with collector.admit(mib):  # another export holds 1 MiB
            # compressed it is a few hundred bytes, but it may inflate to max_body: no room
            with collector.admit(len(small)) as held, pytest.raises(Reply) as refused:
                collector.ingest("traces", PB["Content-Type"], "gzip", small, held)
            assert refused.value.status == 429
            with collector.admit(len(body)) as held:  # the same export uncompressed fits
                collector.ingest("traces", PB["Content-Type"], None, body, held)
        assert collector.inflight == 0
        with collector.admit(len(small)) as held:  # alone, it is decoded and stored
            collector.ingest("traces", PB["Content-Type"], "gzip", small, held)
        assert collector.writer.committed_rows == 1  # one span, stored once (deduplicated)
    finally:
        collector.close()
