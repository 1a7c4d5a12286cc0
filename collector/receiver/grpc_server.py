"""OTLP/gRPC on its own port, when grpcio is installed (`pip install 'cachediag[grpc]'`).

The same ingest path as OTLP/HTTP: the Export call's raw request bytes go to
``Collector.ingest``, so gRPC exports are decoded, committed and acknowledged
exactly like HTTP ones. HTTP answers map to their gRPC status codes.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from collector import otlp
from collector.receiver.reply import Reply, authorized

if TYPE_CHECKING:
    from collector.receiver.intake import Collector

log = logging.getLogger(__name__)

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def available() -> bool:
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


def _status(grpc: Any, reply: Reply) -> Any:
    return {
        HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
        HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
        HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    }.get(reply.status, grpc.StatusCode.UNAVAILABLE)


def start(collector: Collector, host: str, port: int) -> Any:
    """Start serving OTLP/gRPC; returns the grpc server (call .stop(grace) to end it)."""
    import grpc

    def export(sig: str):
        def handler(body: bytes, context: Any) -> bytes:
            metadata = dict(context.invocation_metadata())
            try:
                if not authorized(collector.config.token, metadata.get("authorization")):
                    raise Reply(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
                with collector.admit(len(body)) as held:
                    return collector.ingest(sig, otlp.PROTOBUF, None, body, held)
            except Reply as reply:
                context.abort(_status(grpc, reply), reply.message)
            except Exception:  # noqa: BLE001 - answered INTERNAL, traceback logged
                log.exception("OTLP/gRPC %s export failed", sig)
                collector.stats.add(server_errors=1)
                context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")

        return handler

    handlers = [
        grpc.method_handlers_generic_handler(
            name, {"Export": grpc.unary_unary_rpc_method_handler(export(sig))}
        )
        for sig, name in _SERVICES.items()
    ]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16),
        handlers=handlers,
        options=[("grpc.max_receive_message_length", collector.config.max_body)],
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port} for OTLP/gRPC")
    server.start()
    log.info("cachediag serving OTLP/gRPC on %s:%s", host, bound)
    return server
