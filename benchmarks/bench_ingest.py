"""Benchmark: OTLP/HTTP ingest, end to end, against the raw DuckDB insert rate.

A client process sends pre-encoded exports (protobuf + gzip, batches of 512
spans with ~20 attributes, including a 200-entry block_hashes array) over
keep-alive connections to a `cachediag serve` process on a free loopback
port, writing a file database. Prints spans/s end to end, p50/p99
acknowledgement latency, and, measured in the same run, how fast DuckDB
inserts the same rows with no HTTP, decoding or mapping in the way: one
export per transaction, and all of them in one (the ceiling).

Target: >= 30,000 spans/s into one server process on a 2-core machine.

    python benchmarks/bench_ingest.py [--batches N] [--connections C] [--workers W]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from tests.servers import Server  # noqa: E402

SPANS_PER_BATCH = 512


def export(seed: int) -> bytes:
    """One ExportTraceServiceRequest of 512 LLM spans, serialized."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench"
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(SPANS_PER_BATCH):
        sp = spans.add()
        sp.trace_id, sp.span_id = rng.randbytes(16), rng.randbytes(8)
        sp.name, sp.kind = "chat gpt-4o", 3
        sp.start_time_unix_nano = now + i * 1000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 900_000_000
        attrs = {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.conversation.id": f"conv-{rng.randrange(1000)}",
            "gen_ai.usage.input_tokens": 12800 + i,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 11520,
            "cachediag.route": "/agent",
            "cachediag.replica": f"replica-{i % 4}",
            "cachediag.session_key": f"sess-{rng.randrange(1000)}",
            "cachediag.prefix_hash": f"{rng.getrandbits(64):016x}",
            "cachediag.tools_hash": f"{rng.getrandbits(64):016x}",
            "cachediag.tools_count": 30,
            "cachediag.prompt_version": "v12",
            "cachediag.schema_version": "s3",
            "cachediag.ttft_ms": 412.5,
            "cachediag.encoding": "o200k_base",
            "cachediag.block_size": 64,
        }
        for key, value in attrs.items():
            kv = sp.attributes.add()
            kv.key = key
            if isinstance(value, str):
                kv.value.string_value = value
            elif isinstance(value, float):
                kv.value.double_value = value
            else:
                kv.value.int_value = value
        kv = sp.attributes.add()
        kv.key = "cachediag.block_hashes"
        values = kv.value.array_value.values
        for _ in range(200):
            values.add().int_value = rng.getrandbits(63) - (1 << 62)
    return request.SerializeToString()


def client(port: int, bodies: list[bytes], latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    for body in bodies:
        while True:
            start = time.perf_counter()
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                latencies.append((time.perf_counter() - start) * 1000)
                break
            errors.append(response.status)
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            time.sleep(float(response.getheader("Retry-After") or 0.05))


def run_client(port: int, batches: int, connections: int) -> None:
    """The client side, in its own process: send, time, print one result line."""
    # Distinct ids per batch: re-sent spans would be deduplicated, not stored.
    bodies = [gzip.compress(export(1000 + i), 1) for i in range(batches)]
    latencies: list[float] = []
    errors: list[int] = []
    shares = [bodies[i::connections] for i in range(connections)]
    threads = [
        threading.Thread(target=client, args=(port, share, latencies, errors)) for share in shares
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{batches * SPANS_PER_BATCH / elapsed:.0f} {q[49]:.1f} {q[98]:.1f} {len(errors)} "
        f"{len(bodies[0])}"
    )


def raw_insert_rate(batches: int, per_transaction: int = 1) -> float:
    """Rows/s DuckDB takes the same rows at, mapped once up front (not timed), with
    ``per_transaction`` exports in each transaction."""
    import polars as pl

    from collector.ingest import prepare
    from collector.store.database import Store

    frames = [
        prepare("traces", "application/x-protobuf", None, export(2000 + i), 1 << 30).frame
        for i in range(batches)
    ]
    groups = [
        pl.concat(frames[i : i + per_transaction]) for i in range(0, batches, per_transaction)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "raw.duckdb"))
        start = time.perf_counter()
        for frame in groups:
            store.insert(frame, [])
        elapsed = time.perf_counter() - start
        store.close()
    return batches * SPANS_PER_BATCH / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="exports to send")
    parser.add_argument("--connections", type=int, default=4, help="client connections")
    parser.add_argument("--workers", type=int, default=None, help="server decode processes")
    parser.add_argument("--client", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(*args.client)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        server = Server(Path(tmp) / "bench.duckdb", *workers).start()
        try:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    str(server.port),
                    str(args.batches),
                    str(args.connections),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        finally:
            server.stop()
    rate, p50, p99, retries, size = out.split()
    sample = min(args.batches, 60)
    raw = raw_insert_rate(sample)
    # The ceiling: every row in one transaction, no HTTP, decoding or mapping in the way.
    ceiling = raw_insert_rate(sample, per_transaction=sample)
    print(
        f"exports: {args.batches} x {SPANS_PER_BATCH} spans, {int(size):,} bytes gzipped each, "
        f"{args.connections} connections"
    )
    print(
        f"end to end: {float(rate):,.0f} spans/s (target 30,000); ack latency p50 {p50} ms, "
        f"p99 {p99} ms; {retries} throttled and retried"
    )
    print(
        f"raw DuckDB insert of the same rows: {raw:,.0f} rows/s "
        f"(end to end = {float(rate) / raw:.0%} of it); all {sample * SPANS_PER_BATCH:,} "
        f"of them in one transaction: {ceiling:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
