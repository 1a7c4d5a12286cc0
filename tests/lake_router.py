"""A small OTLP/HTTP router standing in for the OpenTelemetry Collector's load-balancing
exporter (docs/scale-out.md): each span goes to the backend its ``cachediag.routing_key``
hashes to (spans without one to the first backend), and an export is acknowledged only
when every backend it touched acknowledged its part. It records what each backend
acknowledged, so a test can check that nothing acknowledged is lost."""

from __future__ import annotations

import gzip
import http.client
import threading
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.attributes import ROUTING_KEY


def backend_of(key: str | None, backends: int) -> int:
    return zlib.crc32(key.encode()) % backends if key else 0


def split(body: bytes, backends: int) -> dict[int, ExportTraceServiceRequest]:
    """One export per backend, each with the spans routed there (resources and scopes kept)."""
    request = ExportTraceServiceRequest.FromString(body)
    out: dict[int, ExportTraceServiceRequest] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                key = next(
                    (a.value.string_value for a in span.attributes if a.key == ROUTING_KEY.name),
                    None,
                )
                part = out.setdefault(backend_of(key, backends), ExportTraceServiceRequest())
                prs = part.resource_spans.add()
                prs.resource.CopyFrom(rs.resource)
                pss = prs.scope_spans.add()
                pss.scope.CopyFrom(ss.scope)
                pss.spans.add().CopyFrom(span)
    return out


def span_ids(request: ExportTraceServiceRequest) -> list[str]:
    return [
        span.trace_id.hex() + span.span_id.hex()
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


class Router:
    """``Router(ports)``: listens on a free loopback port; ``acked[i]`` are the span ids
    (trace id + span id, hex) backend ``i`` acknowledged."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.acked: dict[int, set[str]] = defaultdict(set)
        self._acked = threading.Condition()
        router = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = router.forward(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self, body: bytes) -> int:
        worst = 200
        for index, part in split(body, len(self.ports)).items():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.ports[index], timeout=60)
                conn.request(
                    "POST",
                    "/v1/traces",
                    part.SerializeToString(),
                    {"Content-Type": "application/x-protobuf"},
                )
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = 503
            if status == 200:
                with self._acked:
                    self.acked[index].update(span_ids(part))
                    self._acked.notify_all()
            else:
                worst = 503
        return worst

    def wait_acked(self, index: int, count: int, timeout_s: float) -> None:
        """Return once backend ``index`` acknowledged ``count`` spans (or at the timeout)."""
        with self._acked:
            self._acked.wait_for(lambda: len(self.acked[index]) >= count, timeout_s)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
