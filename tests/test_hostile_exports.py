"""Hostile exports against a real server: every one gets a status, and the server stays up.

Each case of issue #13 goes over HTTP to `cachediag serve` (protobuf and JSON, traces and
logs), with decode workers and with ``--workers 0`` (decoding in the server process
itself, where a crash would take the server down). Afterwards a valid export is still
acknowledged and stored, and the query API still answers over what was stored.
"""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector import otlp
from tests.otlp_build import (
    deep_any,
    deep_json,
    json_with_value,
    logs,
    to_json,
    traces,
    with_raw_attribute,
)
from tests.servers import Server

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}
LLM = {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 10}


def _pb_spans(*bad: dict, **fields) -> bytes:
    """A protobuf export: one good LLM span, then one with ``bad`` attributes or fields."""
    spans = [{"attributes": LLM}, {"attributes": {**LLM, **(bad[0] if bad else {})}, **fields}]
    return traces(spans, seed=len(repr(bad)) + len(repr(fields))).SerializeToString()


def _json_spans(where: str, raw: str) -> bytes:
    """A JSON export: one good LLM span, then one whose ``where`` field is the raw ``raw``."""
    doc = to_json(traces([{"attributes": LLM}, {"attributes": LLM}], seed=len(where + raw)))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1][where] = "PLACEHOLDER"
    return json.dumps(doc).replace('"PLACEHOLDER"', raw).encode()


def _json_attr(key: str, raw: str) -> bytes:
    """A JSON export whose one LLM span has attribute ``key`` = the raw AnyValue ``raw``."""
    return json_with_value("traces", raw).replace(b'"key": "x"', f'"key": "{key}"'.encode())


DEEP = 50_000
# name: (path, headers, body, expected status, expected rejected count when 200)
CASES = {
    "pb deep array attribute": (
        "/v1/traces",
        PB,
        with_raw_attribute("traces", "x", deep_any(DEEP)),
        400,
        0,
    ),
    "pb deep kvlist attribute": (
        "/v1/traces",
        PB,
        with_raw_attribute("traces", "x", deep_any(1_000, "kvlist")),
        400,
        0,
    ),
    "pb just past the depth limit": (
        "/v1/traces",
        PB,
        with_raw_attribute("traces", "x", deep_any(otlp.MAX_DEPTH + 1)),
        400,
        0,
    ),
    "pb deep log body": (
        "/v1/logs",
        PB,
        with_raw_attribute("logs", "x", deep_any(DEEP), body=True),
        400,
        0,
    ),
    "pb start time 2^64-1": ("/v1/traces", PB, _pb_spans(start=2**64 - 1, end=2**64 - 1), 200, 1),
    "pb start time 2^63": ("/v1/traces", PB, _pb_spans(start=2**63, end=2**63 + 5), 200, 1),
    "pb tools_count past int32": (
        "/v1/traces",
        PB,
        _pb_spans({"cachediag.tools_count": 2**31}),
        200,
        1,
    ),
    "pb block_size negative": (
        "/v1/traces",
        PB,
        _pb_spans({"cachediag.block_size": -(2**40)}),
        200,
        1,
    ),
    "pb input_tokens -2^63": (
        "/v1/traces",
        PB,
        _pb_spans({"gen_ai.usage.input_tokens": -(2**63)}),
        200,
        1,
    ),
    "pb tokens as infinite double": (
        "/v1/traces",
        PB,
        _pb_spans({"gen_ai.usage.output_tokens": float("inf")}),
        200,
        1,
    ),
    "pb usage json deep": (
        "/v1/traces",
        PB,
        _pb_spans({"cachediag.usage": '{"a":' + "[" * 9000 + "]" * 9000 + "}"}),
        200,
        1,
    ),
    "pb log input_tokens -2^63": (
        "/v1/logs",
        PB,
        logs(
            [{"attributes": {**LLM, "gen_ai.usage.input_tokens": -(2**63)}}, {"attributes": LLM}]
        ).SerializeToString(),
        200,
        1,
    ),
    "pb invalid utf-8 route": (
        "/v1/traces",
        PB,
        _pb_spans({"cachediag.route": "R"}).replace(b"\x01R", b"\x01\xed"),
        400,
        0,
    ),
    "pb truncated": ("/v1/traces", PB, _pb_spans()[:-7], 400, 0),
    "pb random bytes": ("/v1/logs", PB, bytes(range(256)) * 4, 400, 0),
    "metrics pb random bytes": ("/v1/metrics", PB, bytes(range(256)) * 4, 400, 0),
    "metrics pb truncated": ("/v1/metrics", PB, b"\x0a\xff\xff\xff\xff\x0f", 400, 0),
    "metrics json nested 100k": (
        "/v1/metrics",
        JS,
        b'{"resourceMetrics":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        0,
    ),
    "metrics json not an object": ("/v1/metrics", JS, b'"metrics"', 400, 0),
    "json nested 100k": ("/v1/traces", JS, b"[" * 100_000 + b"]" * 100_000, 400, 0),
    "json logs nested 100k": (
        "/v1/logs",
        JS,
        b'{"resourceLogs":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        0,
    ),
    "json deep arrayValue": ("/v1/traces", JS, json_with_value("traces", deep_json(1_000)), 400, 0),
    "json deep log body": (
        "/v1/logs",
        JS,
        json_with_value("logs", deep_json(5_000), body=True),
        400,
        0,
    ),
    "json intValue 2^63": (
        "/v1/traces",
        JS,
        _json_attr("x", '{"intValue": "9223372036854775808"}'),
        200,
        1,
    ),
    "json intValue 1e400": ("/v1/traces", JS, _json_attr("x", '{"intValue": 1e400}'), 200, 1),
    "json tokens 1e400 as double": (
        "/v1/traces",
        JS,
        _json_attr("gen_ai.usage.input_tokens", '{"doubleValue": 1e400}'),
        200,
        1,
    ),
    "json 5000-digit int": (
        "/v1/traces",
        JS,
        _json_attr("x", '{"intValue": "' + "9" * 5000 + '"}'),
        200,
        1,
    ),
    "json 5000-digit number": (
        "/v1/traces",
        JS,
        _json_attr("x", '{"intValue": ' + "9" * 5000 + "}"),
        400,
        0,
    ),
    "json start 2^63": (
        "/v1/traces",
        JS,
        _json_spans("startTimeUnixNano", '"9223372036854775808"'),
        200,
        1,
    ),
    "json start 1e400": ("/v1/traces", JS, _json_spans("startTimeUnixNano", "1e400"), 200, 1),
    "json kind a nested list": ("/v1/traces", JS, _json_spans("kind", "[[1]]"), 200, 1),
    "json log time 1e400": (
        "/v1/logs",
        JS,
        json_with_value("logs", '{"intValue": "1"}').replace(
            b'"timeUnixNano": "1763800000000000000"', b'"timeUnixNano": 1e400'
        ),
        200,
        1,
    ),
    "json lone surrogate route": (
        "/v1/traces",
        JS,
        _json_attr("cachediag.route", '{"stringValue": "r\\ud800"}'),
        200,
        0,
    ),
    "json lone surrogate log body": (
        "/v1/logs",
        JS,
        json_with_value("logs", '{"stringValue": "\\udfff"}', body=True),
        200,
        0,
    ),
}


@pytest.fixture(scope="module", params=[(), ("--workers", "0")], ids=["workers", "no-workers"])
def server(request, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("hostile") / "db.duckdb", "--no-grpc", *request.param)
    srv.start()
    yield srv
    assert srv.proc is not None and srv.proc.poll() is None, "the server died"
    err = srv.stop()
    assert "Traceback" not in err, err


def _rejected(path: str, headers: dict, body: bytes) -> int:
    if path == "/v1/metrics":
        return 0  # every data point is accepted (counted, not stored)
    if headers is JS:
        partial = json.loads(body or b"{}").get("partialSuccess", {})
        return int(partial.get("rejectedSpans", partial.get("rejectedLogRecords", 0)))
    if path == "/v1/traces":
        return ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
    return ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records


@pytest.mark.parametrize("case", list(CASES))
def test_every_hostile_export_gets_its_status(server, case):
    path, headers, body, want, rejected = CASES[case]
    status, _, payload = server.request("POST", path, body, headers)
    assert status == want, payload[:300]
    if status == 200:
        assert _rejected(path, headers, payload) == rejected
        if rejected:
            error = (
                json.loads(payload)["partialSuccess"]["errorMessage"]
                if headers is JS
                else payload.decode("utf-8", "replace")
            )
            assert any(word in error for word in ("span", "log", "record")), error


def test_after_them_a_valid_export_is_stored_and_queries_answer(server):
    for case in CASES.values():  # whatever ran before in this module, run them all once more
        assert server.request("POST", case[0], case[2], case[1])[0] == case[3]
    message = traces([{"attributes": {**LLM, "cachediag.route": "/after"}}], seed=4242)
    status, _, body = server.request("POST", "/v1/traces", message.SerializeToString(), PB)
    assert (
        status == 200
        and not ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
    )
    span = message.resource_spans[0].scope_spans[0].spans[0]
    row = server.api(f"requests/{span.trace_id.hex()}{span.span_id.hex()}")
    assert row["route"] == "/after" and row["prompt_tokens"] == 10
    mended = server.api("requests?route=r%EF%BF%BD")  # the lone surrogate, stored as U+FFFD
    assert mended["count"] >= 1
    assert server.api("stats")["committed_rows"] >= 1
    status, _, _ = server.request("GET", "/api/v1/timeseries?window=1h&since=0")
    assert status in (200, 400)  # answered, never a closed connection
