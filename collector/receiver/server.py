"""The cachediag server: OTLP/HTTP ingest and the read-only query API, one process.

The process that owns the DuckDB file both ingests and answers queries
(DuckDB allows one writer process and no readers beside it). This module starts
and stops it; ``intake`` is what it does with each export.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from collector.receiver.http import Handler, HTTPServer
from collector.receiver.intake import STOP_S, Collector, Config

log = logging.getLogger(__name__)

GRPC_GRACE_S = 1.0  # at a stop, how long gRPC calls in flight get to finish


def make_server(config: Config) -> HTTPServer:
    """A bound (not yet serving) HTTP server with its collector."""
    collector = Collector(config)
    try:
        httpd = HTTPServer((config.host, config.port), Handler)
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
    from collector.receiver import grpc_server

    if not grpc_server.available():
        log.info("grpcio is not installed: OTLP/gRPC is off (pip install 'cachediag[grpc]')")
        return None
    try:
        return grpc_server.start(collector, config.host, config.grpc_port)
    except OSError:
        collector.close()
        raise
