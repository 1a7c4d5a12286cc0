"""The cachediag server: OTLP/HTTP ingest and the read-only query API, one process.

The process that owns the DuckDB file both ingests and answers queries
(DuckDB allows one writer process and no readers beside it). Exports are
acknowledged only after their rows are committed; when the commit queue or
the in-flight body budget is full the server answers 429 with Retry-After,
and a client's exporter retries.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from analysis import alerts as alert_rules
from collector import alerting, api, explanations, otlp
from collector.ingest import Prepared, prepare
from collector.store import Store, Writer

log = logging.getLogger(__name__)

TOKEN_ENV = "CACHEDIAG_TOKEN"  # bearer token the server requires, when set
DEFAULT_MAX_BODY = 20 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # refused bodies up to this size are read and dropped
STOP_S = 3.0  # at a stop, how long the background threads get to leave the database
GRPC_GRACE_S = 1.0  # at a stop, how long gRPC calls in flight get to finish
_SIGNALS = {"/v1/traces": "traces", "/v1/logs": "logs"}


@dataclass
class Config:
    """How the server runs; the CLI fills it from flags and CACHEDIAG_* variables."""

    db: str = "cachediag.duckdb"
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int | None = None  # OTLP/gRPC port; None leaves gRPC off
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY  # bytes, before and after decompression
    inflight_bytes: int = 128 * 1024 * 1024  # bodies being read or decoded at once
    workers: int = 0  # decoding processes; 0 decodes in the request thread
    max_pending_rows: int = 50_000
    retry_after: int = 1  # seconds, sent with 429/503
    explain: bool = True  # explain new rows as they commit
    alert_every_s: float = 60.0  # evaluate the alert rules this often; 0 turns it off
    alert_rules: str | None = None  # TOML file with an [alerts] table
    webhook: str | None = None  # POST newly firing alerts here


@dataclass
class Stats:
    """Counters the query API reports under /api/v1/stats."""

    exports: int = 0
    records: int = 0
    skipped_not_llm: int = 0
    rejected: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in vars(self).items() if k != "lock"}


class Reply(Exception):
    """An HTTP answer other than success, raised from anywhere in the ingest path."""

    def __init__(self, status: HTTPStatus, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.retry = status, message, retry


class Collector:
    """Ingest logic behind the HTTP layer: admission, decoding, commit, acknowledgement."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.db)
        self._decoding = 0  # exports being decoded right now (the writer waits for them)
        self.writer = Writer(
            self.store,
            max_pending_rows=config.max_pending_rows,
            more_coming=lambda: self._decoding > 0,
        )
        self.stats = Stats()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        # spawn, not fork: this process already runs DuckDB's threads.
        self.pool: Executor | None = (
            ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn"))
            if config.workers > 0
            else None
        )
        self.explain = explanations.Background(self.store) if config.explain else None
        self.alerts = (
            alerting.AlertLoop(
                self.store,
                alert_rules.Rules.load(config.alert_rules),
                config.alert_every_s,
                config.webhook,
            )
            if config.alert_every_s > 0
            else None
        )

    def admit(self, length: int) -> None:
        """Reserve room for a body of ``length`` bytes, or refuse with 413/429."""
        if length > self.config.max_body:
            raise Reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes exceeds the {self.config.max_body}-byte limit",
            )
        with self._inflight_lock:
            if self._inflight and self._inflight + length > self.config.inflight_bytes:
                self.stats.add(throttled=1)
                raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "server busy; retry later", True)
            self._inflight += length

    def release(self, length: int) -> None:
        with self._inflight_lock:
            self._inflight -= length

    def ingest(self, sig: str, content_type: str, encoding: str | None, body: bytes) -> bytes:
        """Decode, map and commit one export; the response body to acknowledge it."""
        if self.writer.pending_rows >= self.config.max_pending_rows:
            self.stats.add(throttled=1)
            raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "commit queue full; retry later", True)
        args = (sig, content_type, encoding, body, self.config.max_body)
        with self._inflight_lock:
            self._decoding += 1
        try:
            prepared: Prepared = (
                self.pool.submit(prepare, *args).result() if self.pool else prepare(*args)
            )
        except otlp.TooLarge as exc:
            raise Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
        except otlp.DecodeError as exc:
            raise Reply(HTTPStatus.BAD_REQUEST, str(exc)) from None
        finally:
            with self._inflight_lock:
                self._decoding -= 1
        self.stats.add(
            exports=1,
            records=prepared.records,
            skipped_not_llm=prepared.skipped,
            rejected=prepared.rejected,
        )
        if len(prepared.frame):
            batch = self.writer.try_submit(prepared.frame, prepared.contents)
            if batch is None:
                self.stats.add(throttled=1)
                raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "commit queue full; retry later", True)
            batch.done.wait()
            if batch.error is not None:
                raise Reply(HTTPStatus.SERVICE_UNAVAILABLE, "commit failed; retry later", True)
            if self.explain:
                self.explain.poke()
        return otlp.response_body(sig, content_type, prepared.rejected, prepared.error)

    def stop_background(self) -> None:
        """Ask the explainer and the alert loop to stop (both at once, without waiting):
        a request waiting on a flush or posting alerts returns at once."""
        for loop in (self.explain, self.alerts):
            if loop is not None:
                loop.stop()

    def close(self) -> bool:
        """Stop the background threads, commit everything acknowledged or in flight, then
        close the database. False when a thread still holds the database after STOP_S:
        the database is then left open (what was committed is safe in its write-ahead
        log) and the process must end without finalizing (see ``serve``)."""
        deadline = time.monotonic() + STOP_S
        self.stop_background()
        loops = [loop for loop in (self.alerts, self.explain) if loop is not None]
        stopped = [loop.close(max(deadline - time.monotonic(), 0.1)) for loop in loops]
        stopped.append(self.writer.close(max(deadline - time.monotonic(), 1.0)))
        if self.pool:
            self.pool.shutdown(cancel_futures=True)
        if not all(stopped):
            return False
        self.store.close()
        return True


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 front: OTLP POSTs and API GETs."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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

    def _discard_body(self) -> None:
        """Read and drop a refused body, so the client sees our answer rather than a
        broken pipe; past DRAIN_LIMIT the connection is closed instead."""
        length = int(self.headers.get("Content-Length") or -1)
        if not 0 <= length <= DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _authorized(self) -> bool:
        token = self.server.collector.config.token
        return not token or self.headers.get("Authorization", "") == f"Bearer {token}"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        collector = self.server.collector
        try:
            if not self._authorized():
                raise Reply(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            sig = _SIGNALS.get(self.path.split("?")[0])
            if sig is None:
                raise Reply(HTTPStatus.NOT_FOUND, "POST /v1/traces or /v1/logs")
            if content_type not in (otlp.PROTOBUF, otlp.JSON):
                raise Reply(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Content-Type {content_type!r}; send {otlp.PROTOBUF} or {otlp.JSON}",
                )
            length = int(self.headers.get("Content-Length") or -1)
            if length < 0:
                raise Reply(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            collector.admit(length)
        except Reply as reply:
            self._discard_body()
            self._error(reply, content_type)
            return
        try:
            body = self.rfile.read(length)
            payload = collector.ingest(
                sig, content_type, self.headers.get("Content-Encoding"), body
            )
        except Reply as reply:
            self._error(reply, content_type)
            return
        finally:
            collector.release(length)
        self._send(HTTPStatus.OK, payload, content_type)

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            self._error(Reply(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token"), otlp.JSON)
            return
        status, body, content_type = api.handle(
            self.server.collector, self.path, self.headers.get("Accept", "")
        )
        self._send(status, body, content_type)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True
    collector: Collector


def make_server(config: Config) -> _HTTPServer:
    """A bound (not yet serving) HTTP server with its collector."""
    collector = Collector(config)
    try:
        httpd = _HTTPServer((config.host, config.port), Handler)
    except OSError:
        collector.close()
        raise
    httpd.collector = collector
    return httpd


def serve(config: Config) -> None:
    """Run until SIGTERM or Ctrl-C; then commit everything acknowledged and exit."""
    httpd = make_server(config)
    grpc_server = _start_grpc(httpd.collector, config)
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    if httpd.collector.explain:
        httpd.collector.explain.catch_up()
    host, port = httpd.server_address[:2]
    log.info(
        "cachediag serving OTLP/HTTP and the API on http://%s:%s (db %s)", host, port, config.db
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.collector.stop_background()  # first: requests waiting on them return
        if grpc_server is not None:
            grpc_server.stop(grace=GRPC_GRACE_S).wait(GRPC_GRACE_S + 1)
        httpd.server_close()
        if not httpd.collector.close():
            # A thread still inside DuckDB while the interpreter finalizes aborts the
            # process: end it here instead. Everything acknowledged was committed.
            log.error("a background thread did not stop in %s s; exiting at once", STOP_S)
            logging.shutdown()
            os._exit(1)


def _start_grpc(collector: Collector, config: Config) -> Any:
    """OTLP/gRPC beside HTTP when asked for and grpcio is installed."""
    if config.grpc_port is None:
        return None
    from collector import grpc_server

    if not grpc_server.available():
        log.info("grpcio is not installed: OTLP/gRPC is off (pip install 'cachediag[grpc]')")
        return None
    try:
        return grpc_server.start(collector, config.host, config.grpc_port)
    except OSError:
        collector.close()
        raise
