"""The HTTP front of the server: connections, timeouts, body reading, status codes.

One thread per connection, at most ``max_connections`` of them; a keep-alive
connection waits ``idle_timeout_s`` for its next request, and a request whose
headers or body stall ``read_timeout_s`` is dropped (408) with its in-flight
reservation released. A body shorter than its Content-Length is never decoded.
Every request gets a status code: unexpected errors answer 500 with one line
(the traceback goes to the log).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from collector import otlp
from collector.receiver.reply import Reply, authorized

if TYPE_CHECKING:
    from collector.api.bridge import Bridge
    from collector.receiver.intake import Collector

log = logging.getLogger(__name__)

DRAIN_LIMIT = 64 * 1024 * 1024  # refused bodies up to this size are read and dropped
API_MAX_BODY = 64 * 1024  # the query API takes small bodies only
BODY_DEADLINE_READS = 12  # a body must arrive within 12 read timeouts (60 s by default)
_SIGNALS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 front: OTLP POSTs, and /api requests handed to the query API's app."""

    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: with Nagle on, the body waits for the
    # client's delayed ACK of the headers, 40 ms on every answer
    disable_nagle_algorithm = True
    server: HTTPServer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def handle_one_request(self) -> None:
        """Wait up to idle_timeout_s for the next request, then read it with read_timeout_s."""
        config = self.server.collector.config
        self.connection.settimeout(config.idle_timeout_s)
        try:
            with self.server.idle(self.connection):
                first = self.rfile.peek(1)
        except OSError:  # idle too long, reset, or the server is closing
            first = b""
        if not first:
            self.close_connection = True
            return
        self.connection.settimeout(config.read_timeout_s)
        super().handle_one_request()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, reply: Reply, content_type: str) -> None:
        headers = (
            {"Retry-After": str(self.server.collector.config.retry_after)} if reply.retry else {}
        )
        if reply.status >= 400 and reply.status != HTTPStatus.UNAUTHORIZED:
            log.info("%s %s: %s", self.path, int(reply.status), reply.message)
        ctype = otlp.JSON if content_type != otlp.PROTOBUF else otlp.PROTOBUF
        self._send(
            reply.status, otlp.status_body(ctype, int(reply.status), reply.message), ctype, headers
        )

    def _crash(self, content_type: str) -> None:
        """Answer 500 to an error nobody expected; the traceback goes to the log only."""
        log.exception("%s %s failed", self.command, self.path)
        self.server.collector.stats.add(server_errors=1)
        self.close_connection = True
        message = "internal error; the server log has the details"
        self._error(Reply(HTTPStatus.INTERNAL_SERVER_ERROR, message), content_type)

    def _length(self) -> int:
        """The declared body length: 411 without one, 400 when it is not a byte count."""
        values = self.headers.get_all("Content-Length") or []
        if "Transfer-Encoding" in self.headers or not values:
            raise Reply(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        raw = values[0].strip()
        if not (raw.isascii() and raw.isdigit()) or any(v.strip() != raw for v in values):
            raise Reply(HTTPStatus.BAD_REQUEST, f"Content-Length {raw[:40]!r} is not a byte count")
        return int(raw) if len(raw) < 19 else 10**18  # past any limit; int() of 5,000 digits

    def _discard_body(self) -> None:
        """Read and drop a refused body, so the client sees our answer rather than a
        broken pipe; past DRAIN_LIMIT, or without a usable length, the connection is
        closed instead."""
        try:
            length = self._length()
        except Reply:
            length = -1
        if not 0 <= length <= DRAIN_LIMIT:
            self.close_connection = True
            return
        with contextlib.suppress(Reply):  # it set close_connection
            self._read_body(length)

    def _read_body(self, length: int) -> bytes:
        """Exactly ``length`` bytes, or a 400 (short body) / 408 (stalled) and close."""
        limit = self.server.collector.config.read_timeout_s * BODY_DEADLINE_READS
        deadline = time.monotonic() + limit
        chunks, got = [], 0
        try:
            while got < length and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(length - got, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError:  # stalled past read_timeout_s, or reset
            pass
        if got == length:
            return b"".join(chunks)
        self.close_connection = True
        if time.monotonic() >= deadline or not self._ended():
            self.server.collector.stats.add(timed_out=1)
            raise Reply(HTTPStatus.REQUEST_TIMEOUT, f"body stalled after {got} of {length} bytes")
        raise Reply(HTTPStatus.BAD_REQUEST, f"body ended after {got} of {length} bytes")

    def _ended(self) -> bool:
        """Whether the client closed its side (rather than stalled)."""
        try:
            self.connection.settimeout(0)
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return False

    def _check_post(self, content_type: str) -> str:
        """The signal of an export we accept, or the Reply refusing it."""
        if not authorized(self.server.collector.config.token, self.headers.get("Authorization")):
            raise Reply(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
        sig = _SIGNALS.get(self.path.split("?")[0])
        if sig is None:
            raise Reply(HTTPStatus.NOT_FOUND, "POST /v1/traces, /v1/logs or /v1/metrics")
        if content_type not in (otlp.PROTOBUF, otlp.JSON):
            raise Reply(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {content_type!r}; send {otlp.PROTOBUF} or {otlp.JSON}",
            )
        return sig

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/api/"):
            self._api()
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        collector = self.server.collector
        try:
            sig = self._check_post(content_type)
            held = collector.admit(self._length())
        except Reply as reply:
            self._discard_body()
            self._error(reply, content_type)
            return
        try:  # the reservation is released before any answer is written
            body = self._read_body(held.size)
            encoding = self.headers.get("Content-Encoding")
            payload = collector.ingest(sig, content_type, encoding, body, held)
        except Reply as reply:
            held.release()
            self._error(reply, content_type)
            return
        except Exception:  # noqa: BLE001 - answered 500, traceback logged
            held.release()
            self._crash(content_type)
            return
        finally:
            held.release()
        self._send(HTTPStatus.OK, payload, content_type)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/api/"):
            self._api()
            return
        self._error(Reply(HTTPStatus.NOT_FOUND, "GET /api/v1/...; see /api/v1/openapi.json"), "")

    def _api_body(self) -> bytes:
        """A query API request's body: none without a Content-Length, 413 past
        API_MAX_BODY."""
        if "Content-Length" not in self.headers and "Transfer-Encoding" not in self.headers:
            return b""
        length = self._length()
        if length > API_MAX_BODY:
            raise Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"API bodies are <= {API_MAX_BODY} B")
        return self._read_body(length)

    def _api(self) -> None:
        """An /api request, answered by the query API's app (after the token check)."""
        token = self.server.collector.config.token
        try:
            if not authorized(token, self.headers.get("Authorization")):
                raise Reply(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            body = self._api_body()
        except Reply as reply:
            self._discard_body()
            self._error(reply, otlp.JSON)
            return
        try:
            status, head, payload = self.server.api().call(
                self.command, self.path, self.headers.items(), body, self.client_address[:2]
            )
        except Exception:  # noqa: BLE001 - answered 500, traceback logged
            self._crash(otlp.JSON)
            return
        extra = {k.decode("latin-1"): v.decode("latin-1") for k, v in head}
        content_type = extra.pop("content-type", otlp.JSON)
        extra.pop("content-length", None)
        self._send(status, payload, content_type, extra)


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
)
_BUSY_BODY = b'{"code": 14, "message": "too many open connections; retry later"}'


class HTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` of them: past that a
    connection gets 503 + Retry-After at once and is closed."""

    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True
    request_queue_size = 128
    collector: Collector

    def __init__(self, address: tuple[str, int], handler: type[Handler]) -> None:
        super().__init__(address, handler)
        self._lock = threading.Lock()
        self._open = 0
        self._idle: set[socket.socket] = set()
        self._closing = False
        self._api: Bridge | None = None
        self._api_lock = threading.Lock()  # not _lock: starting the API holds no connection up

    def api(self) -> Bridge:
        """The query API's bridge, started with the first /api request (so a server that
        only ingests never loads the framework)."""
        with self._api_lock:
            if self._api is None:
                if self._closing:
                    raise ConnectionAbortedError("server closing")
                from collector.api.app import create_app
                from collector.api.bridge import Bridge

                self._api = Bridge(create_app(self.collector))
            return self._api

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = self._open >= self.collector.config.max_connections
            self._open += not full
        if not full:
            super().process_request(request, client_address)
            return
        self.collector.stats.add(refused_connections=1)
        with contextlib.suppress(OSError):
            request.settimeout(0)
            request.sendall(
                _BUSY % (self.collector.config.retry_after, len(_BUSY_BODY), _BUSY_BODY)
            )
            request.recv(1 << 16)  # what arrived already, so closing sends no reset
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open -= 1

    @contextlib.contextmanager
    def idle(self, sock: socket.socket) -> Iterator[None]:
        """Mark a connection as waiting for its next request (server_close ends it)."""
        with self._lock:
            if self._closing:
                raise ConnectionAbortedError("server closing")
            self._idle.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._idle.discard(sock)

    def server_close(self) -> None:
        """Close keep-alive connections waiting for a request, then wait for the rest."""
        with self._lock:
            self._closing = True
            for sock in self._idle:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
        super().server_close()
        with self._api_lock:  # every request has returned: the API's event loop can stop
            if self._api is not None:
                self._api.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # the client went away mid-answer
            log.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            log.exception("connection from %s failed", client_address)
