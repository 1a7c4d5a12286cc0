"""The server as a real process: OTel SDK exporters in, status codes, durability, API."""

from __future__ import annotations

import gzip
import io
import json
import signal
import threading

import polars as pl
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.otlp_build import logs, to_json, traces
from tests.servers import Server

PB = {"Content-Type": "application/x-protobuf"}
LLM = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "cachediag.route": "/chat",
    "cachediag.ttft_ms": 120.0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(
        tmp_path_factory.mktemp("srv") / "db.duckdb", "--workers", "1", "--max-body-mib", "1"
    ).start()
    yield srv
    err = srv.stop()
    assert "Traceback" not in err


def _export(spans, seed):
    return traces(spans, seed=seed).SerializeToString()


def test_real_sdk_exporter_lands_every_span(server):
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(25):
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attributes(
                {**LLM, "cachediag.replica": f"r{i % 2}", "cachediag.block_hashes": [i, i + 1, -i]}
            )
    with tracer.start_as_current_span("SELECT orders"):
        pass
    assert provider.force_flush(30_000)
    provider.shutdown()
    data = server.api("requests?service=support-bot&limit=100")["data"]
    assert len(data) == 25
    assert {d["replica"] for d in data} == {"r0", "r1"}
    assert all(d["prompt_tokens"] == 2000 and d["cached_tokens"] == 1024 for d in data)
    assert server.api("stats")["skipped_not_llm"] >= 1


def test_json_and_gzip_are_accepted_and_answered_in_kind(server):
    message = traces([{"attributes": dict(LLM, **{"cachediag.route": "/json"})}], seed=101)
    status, headers, body = server.request(
        "POST",
        "/v1/traces",
        json.dumps(to_json(message)).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, headers["Content-Type"], body) == (200, "application/json", b"{}")
    status, headers, body = server.request(
        "POST",
        "/v1/traces",
        gzip.compress(_export([{"attributes": LLM}], 102)),
        {**PB, "Content-Encoding": "gzip"},
    )
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert server.api("requests?route=/json")["count"] == 1


def test_logs_become_rows(server):
    body = logs(
        [
            {
                "attributes": {
                    "gen_ai.system": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-5",
                    "cachediag.route": "/logs",
                },
                "body": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100}},
            }
        ]
    )
    status, _, _ = server.request("POST", "/v1/logs", body.SerializeToString(), PB)
    assert status == 200
    (row,) = server.api("requests?route=/logs")["data"]
    assert (row["prompt_tokens"], row["cached_tokens"]) == (105, 100)


def test_partial_success_names_the_rejected_spans(server):
    message = traces([{"attributes": LLM}, {"attributes": LLM, "span_id": b"\x01"}], seed=103)
    status, _, body = server.request("POST", "/v1/traces", message.SerializeToString(), PB)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    assert status == 200
    assert ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans == 1


@pytest.mark.parametrize(
    "path, body, headers, status",
    [
        ("/v1/traces", b"\xff\xfe garbage", PB, 400),
        ("/v1/traces", b"{not json", {"Content-Type": "application/json"}, 400),
        ("/v1/traces", b"x", {**PB, "Content-Encoding": "gzip"}, 400),
        ("/v1/profiles", b"", PB, 404),
        ("/v1/metrics", b"", PB, 200),  # an empty export: nothing to count
        ("/v1/traces", b"{}", {"Content-Type": "text/plain"}, 415),
        ("/v1/traces", b"\0" * (2 * 1024 * 1024), PB, 413),
        (
            "/v1/traces",
            gzip.compress(b"\0" * (40 * 1024 * 1024)),
            {**PB, "Content-Encoding": "gzip"},
            413,
        ),
    ],
)
def test_status_codes(server, path, body, headers, status):
    got, got_headers, payload = server.request("POST", path, body, headers)
    assert got == status, payload
    if headers.get("Content-Type") in ("application/json", "text/plain"):
        assert "message" in json.loads(payload)


def test_query_api(server):
    spans = [{"attributes": dict(LLM, **{"cachediag.route": "/query"})}] * 4
    assert server.request("POST", "/v1/traces", _export(spans, 105), PB)[0] == 200
    series = server.api("timeseries?window=1h&group=route")
    assert series["window_s"] == 3600 and series["count"] >= 1
    row = next(r for r in series["data"] if r["group"] == "/query")
    assert row["hit_ratio"] == pytest.approx(1024 / 2000)
    assert row["ttft_p95_ms"] == pytest.approx(120.0)
    assert row["missed_cost_usd"] == pytest.approx(row["missed_tokens"] * (2.5 - 1.25) / 1e6)
    status, headers, body = server.request("GET", "/api/v1/requests?format=arrow")
    assert headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    assert pl.read_ipc_stream(io.BytesIO(body)).height >= 4
    rid = server.api("requests?limit=1")["data"][0]["id"]
    assert server.api(f"requests/{rid}")["id"] == rid
    assert "/api/v1/timeseries" in server.api("openapi.json")["paths"]
    for bad in ("requests?limit=0", "timeseries?group=color", "requests?since=yesterday"):
        status, _, body = server.request("GET", "/api/v1/" + bad)
        assert status == 400 and "error" in json.loads(body)
    assert server.request("GET", "/api/v1/requests/nope")[0] == 404
    stats = server.api("stats?wait=1")
    assert stats["explained_rows"] == stats["committed_rows"]
    assert server.api("alerts")["data"] == []
    assert server.api("explanations?route=/query")["count"] == 4


def test_bearer_token(tmp_path):
    srv = Server(tmp_path / "db.duckdb", "--token", "s3cret", "--workers", "0").start()
    try:
        body = _export([{"attributes": LLM}], 104)
        assert srv.request("POST", "/v1/traces", body, PB)[0] == 401
        assert srv.request("GET", "/api/v1/requests")[0] == 401
        assert srv.request("GET", "/api/v1/openapi.json")[0] == 401
        assert srv.request("POST", "/api/v1/alerts/evaluate")[0] == 401
        ok = srv.request("POST", "/v1/traces", body, {**PB, "Authorization": "Bearer s3cret"})
        assert ok[0] == 200
        lower = {"Authorization": "bearer  s3cret"}  # RFC 7235: the scheme is case-insensitive
        assert srv.request("GET", "/api/v1/stats", headers=lower)[0] == 200
        wrong = {"Authorization": "Bearer s3cre"}
        assert srv.request("GET", "/api/v1/stats", headers=wrong)[0] == 401
        right = {"Authorization": "Bearer s3cret"}
        assert srv.request("POST", "/api/v1/alerts/evaluate", headers=right)[0] == 200
    finally:
        srv.stop()


def test_sigkill_mid_load_loses_no_acknowledged_span(tmp_path):
    db = tmp_path / "db.duckdb"
    srv = Server(db, "--workers", "0").start()
    acked: list[str] = []
    stop = threading.Event()

    def load():
        for n in range(400):  # bounded
            if stop.is_set():
                return
            message = traces([{"attributes": LLM}] * 20, seed=1000 + n)
            ids = [
                sp.trace_id.hex() + sp.span_id.hex()
                for sp in message.resource_spans[0].scope_spans[0].spans
            ]
            try:
                status, _, _ = srv.request("POST", "/v1/traces", message.SerializeToString(), PB)
            except OSError:
                return
            if status == 200:
                acked.extend(ids)
                if len(acked) >= 400:
                    stop.set()

    thread = threading.Thread(target=load)
    thread.start()
    stop.wait(120)
    srv.stop(signal.SIGKILL)
    thread.join(60)
    assert len(acked) >= 400
    again = Server(db, "--workers", "0").start()
    try:
        stored = set()
        offset = 0
        while True:
            page = again.api(f"requests?limit=10000&offset={offset}")["data"]
            stored |= {r["id"] for r in page}
            offset += len(page)
            if len(page) < 10000:
                break
        assert set(acked) <= stored
    finally:
        again.stop()


def test_flood_gets_429_with_retry_after_and_bounded_memory(tmp_path):
    srv = Server(
        tmp_path / "db.duckdb", "--workers", "0", "--max-pending-rows", "500", "--inflight-mib", "2"
    ).start()
    bodies = [
        _export(
            [{"attributes": dict(LLM, **{"cachediag.block_hashes": list(range(200))})}] * 300,
            5000 + i,
        )
        for i in range(8)
    ]
    statuses: list[tuple[int, str | None]] = []
    peak = [srv.rss_kib()]

    def hammer(k):
        for i in range(12):  # bounded
            status, headers, _ = srv.request("POST", "/v1/traces", bodies[(k + i) % 8], PB)
            statuses.append((status, headers.get("Retry-After")))
            peak[0] = max(peak[0], srv.rss_kib())

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        throttled = [s for s in statuses if s[0] in (429, 503)]
        assert throttled, statuses
        assert all(retry is not None and int(retry) >= 1 for _, retry in throttled)
        assert {s for s, _ in statuses} <= {200, 429, 503}
        assert peak[0] < 700 * 1024, f"server grew to {peak[0] // 1024} MiB"
    finally:
        srv.stop()


def test_sigterm_commits_and_exits_cleanly(tmp_path):
    db = tmp_path / "db.duckdb"
    srv = Server(db, "--workers", "0").start()
    assert srv.request("POST", "/v1/traces", _export([{"attributes": LLM}] * 7, 7), PB)[0] == 200
    err = srv.stop(signal.SIGTERM)
    assert "Traceback" not in err
    import duckdb

    assert duckdb.connect(str(db)).execute("SELECT count(*) FROM requests").fetchall()[0][0] == 7


def test_grpc_exporter_lands_spans(tmp_path):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    from tests.servers import free_port

    grpc_port = free_port()
    srv = Server(
        tmp_path / "db.duckdb", "--grpc-port", str(grpc_port), "--workers", "0", "--token", "t0k"
    ).start()
    try:
        provider = TracerProvider()
        exporter = GrpcExporter(
            endpoint=f"127.0.0.1:{grpc_port}",
            insecure=True,
            headers={"authorization": "Bearer t0k"},
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("grpc-test")
        for _ in range(5):
            with tracer.start_as_current_span("chat gpt-4o") as span:
                span.set_attributes({**LLM, "cachediag.route": "/grpc"})
        assert provider.force_flush(30_000)
        provider.shutdown()
        status, _, body = srv.request(
            "GET", "/api/v1/requests?route=/grpc", headers={"Authorization": "Bearer t0k"}
        )
        assert status == 200 and json.loads(body)["count"] == 5
    finally:
        srv.stop()


def test_server_explains_new_rows_as_they_commit(tmp_path):
    from analysis.traffic import TrafficGenerator

    records = list(TrafficGenerator(seed=8, hours=0.5, sessions_per_hour=120).records())
    path = tmp_path / "traffic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    srv = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    try:
        import subprocess
        import sys

        subprocess.run(
            [sys.executable, "-m", "cachediag", "replay", str(path), "--endpoint", srv.url],
            check=True,
            capture_output=True,
            timeout=300,
        )
        stats = srv.api("stats?wait=1")
        assert stats["explained_rows"] == stats["committed_rows"] == len(records)
        causes = {r["cause"] for r in srv.api("explanations?limit=10000")["data"]}
        assert "cold_start" in causes and "no_miss" in causes
    finally:
        srv.stop()
