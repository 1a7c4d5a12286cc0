"""OTLP metrics (/v1/metrics over HTTP, MetricsService over gRPC): accepted and counted,
as Traceloop's and OpenLIT's metric exporters send them."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from collector import otlp, otlp_metrics
from tests.otlp_build import to_json
from tests.servers import Server, free_port

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


def _request() -> ExportMetricsServiceRequest:
    """Two GenAI histograms (3 + 1 points) and one other counter (1 point)."""
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    usage = metrics.add()
    usage.name, usage.unit = "gen_ai.client.token.usage", "{token}"
    for kind, total in (("input", 2000), ("output", 10), ("input", 1800)):
        point = usage.histogram.data_points.add()
        point.count, point.sum = 1, total
        kv = point.attributes.add()
        kv.key, kv.value.string_value = "gen_ai.token.type", kind
    ttft = metrics.add()
    ttft.name, ttft.unit = "gen_ai.server.time_to_first_token", "s"
    ttft.histogram.data_points.add(count=1, sum=0.25)
    other = metrics.add()
    other.name = "http.client.requests"
    other.sum.data_points.add(as_int=4)
    return request


def test_points_are_counted_in_both_encodings():
    request = _request()
    for content_type, data in (
        (otlp.PROTOBUF, request.SerializeToString()),
        (otlp.JSON, json.dumps(to_json(request)).encode()),
    ):
        counted = otlp_metrics.count(content_type, data)
        assert (counted.metrics, counted.points, counted.genai_points) == (3, 5, 4)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"resourceMetrics": {"scopeMetrics": []}}',
        b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [1]}]}]}',
        b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": "x"}}]}]}]}',
        b'{"resourceMetrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"\xff\xfe",
    ],
)
def test_malformed_json_is_a_decode_error(body):
    with pytest.raises(otlp.DecodeError):
        otlp_metrics.count(otlp.JSON, body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    grpc_port = free_port()
    srv = Server(
        tmp_path_factory.mktemp("metrics") / "db.duckdb",
        "--grpc-port",
        str(grpc_port),
        "--workers",
        "0",
    ).start()
    srv.grpc_port = grpc_port
    yield srv
    err = srv.stop()
    assert "Traceback" not in err, err


def test_http_metrics_are_acknowledged_and_counted(server):
    before = server.api("stats")
    status, _, body = server.request("POST", "/v1/metrics", _request().SerializeToString(), PB)
    assert status == 200
    assert ExportMetricsServiceResponse.FromString(body) == ExportMetricsServiceResponse()
    status, _, body = server.request("POST", "/v1/metrics", json.dumps(to_json(_request())), JS)
    assert (status, body) == (200, b"{}")
    after = server.api("stats")
    assert after["metric_exports"] - before["metric_exports"] == 2
    assert after["metric_points"] - before["metric_points"] == 10
    assert after["genai_metric_points"] - before["genai_metric_points"] == 8
    assert after["records"] == before["records"]  # no rows


@pytest.mark.parametrize(
    "headers, body",
    [(PB, b"\x0a\xff\xff\xff\xff\x0f"), (PB, bytes(range(256)) * 4), (JS, b"{nope")],
)
def test_hostile_metrics_are_refused_and_the_server_stays_up(server, headers, body):
    status, _, _ = server.request("POST", "/v1/metrics", body, headers)
    assert status == 400
    assert server.request("POST", "/v1/metrics", _request().SerializeToString(), PB)[0] == 200


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_the_sdk_metric_exporters_land(server, transport):
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=f"{server.url}/v1/metrics")
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True)
    before = server.api("stats")["genai_metric_points"]
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    histogram = provider.get_meter("traceloop").create_histogram("gen_ai.client.token.usage")
    histogram.record(2000, {"gen_ai.token.type": "input"})
    histogram.record(10, {"gen_ai.token.type": "output"})
    provider.shutdown()  # exports what was recorded, once
    assert server.api("stats")["genai_metric_points"] - before == 2
