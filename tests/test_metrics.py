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


def test_genai_histogram_points_become_rows_alike_in_both_encodings():
    request = _request()
    resource = request.resource_metrics[0].resource.attributes.add()
    resource.key, resource.value.string_value = "service.name", "support-bot"
    rows = [
        otlp_metrics.count(content_type, data).rows
        for content_type, data in (
            (otlp.PROTOBUF, request.SerializeToString()),
            (otlp.JSON, json.dumps(to_json(request)).encode()),
        )
    ]
    assert rows[0] == rows[1]
    usage = [r for r in rows[0] if r["name"] == "gen_ai.client.token.usage"]
    assert [(r["token_type"], r["sum"], r["count"]) for r in usage] == [
        ("input", 2000, 1),
        ("output", 10, 1),
        ("input", 1800, 1),
    ]
    assert {r["service"] for r in rows[0]} == {"support-bot"}
    assert usage[0]["series"] == usage[2]["series"] != usage[1]["series"]
    (ttft,) = [r for r in rows[0] if r["name"] == "gen_ai.server.time_to_first_token"]
    assert (ttft["unit"], ttft["sum"], ttft["token_type"]) == ("s", 0.25, None)
    assert len(rows[0]) == 4  # the counter that is no GenAI histogram is not kept


ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "server.address": "api.openai.com",
}


def _exporter(server, transport: str, delta: bool):
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    temporality = {Histogram: AggregationTemporality.DELTA} if delta else None
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=f"{server.url}/v1/metrics", preferred_temporality=temporality
        )
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True, preferred_temporality=temporality
    )


@pytest.mark.parametrize(
    "transport, delta", [("http", False), ("grpc", False), ("http", True), ("grpc", True)]
)
def test_sdk_genai_metrics_are_stored_as_series(server, transport, delta):
    """A service that sends only metrics: three exports (the SDK's default cumulative
    temporality repeats what came before; delta does not), summed once per window."""
    from opentelemetry.sdk.resources import Resource

    service = f"metrics-only-{transport}-{'delta' if delta else 'cumulative'}"
    reader = PeriodicExportingMetricReader(
        _exporter(server, transport, delta), export_interval_millis=3_600_000
    )
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": service})
    )
    meter = provider.get_meter("openlit")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    ttft = meter.create_histogram("gen_ai.server.time_to_first_token", unit="s")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    for prompt, output, first, took in ((2000, 10, 0.25, 1.0), (1800, 30, 0.75, 2.0)):
        usage.record(prompt, {**ATTRS, "gen_ai.token.type": "input"})
        usage.record(output, {**ATTRS, "gen_ai.token.type": "output"})
        ttft.record(first, ATTRS)
        duration.record(took, ATTRS)
        assert provider.force_flush()
    assert provider.force_flush()  # nothing new: a cumulative export repeats the totals
    provider.shutdown()

    found = server.api(f"metrics?service={service}&window=1d")
    assert found["window_s"] == 86400
    got = {(r["name"], r["token_type"]): (r["count"], r["sum"]) for r in found["data"]}
    assert got == {
        ("gen_ai.client.token.usage", "input"): (2, 3800),
        ("gen_ai.client.token.usage", "output"): (2, 40),
        ("gen_ai.server.time_to_first_token", None): (2, 1.0),
        ("gen_ai.client.operation.duration", None): (2, 3.0),
    }
    row = next(r for r in found["data"] if r["name"] == "gen_ai.server.time_to_first_token")
    assert (row["model"], row["unit"], row["mean"], row["route"]) == ("gpt-4o", "s", 0.5, None)
    narrowed = server.api(
        f"metrics?service={service}&window=1d&name=gen_ai.client.token.usage&token_type=output"
    )
    assert [(r["count"], r["sum"]) for r in narrowed["data"]] == [(2, 40)]
    assert not server.api(f"metrics?service={service}&model=other")["data"]
    # the exporter's retry of an export already stored adds nothing
    stats = server.api("stats")
    assert stats["genai_metric_points_stored"] > 0


def test_exponential_histograms_are_kept_without_buckets():
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name, metric.unit = "gen_ai.client.operation.duration", "s"
    metric.exponential_histogram.aggregation_temporality = 1  # delta
    metric.exponential_histogram.data_points.add(count=2, sum=3.5, time_unix_nano=10**18)
    (row,) = otlp_metrics.count(otlp.PROTOBUF, request.SerializeToString()).rows
    assert (row["count"], row["sum"], row["cumulative"], row["bounds"]) == (2, 3.5, False, None)
