"""Soak: 8 clients hold a `cachediag serve` at its rated load; nothing acked is lost.

A real server process (2 decode workers, file database) on a free loopback
port. First 8 clients send as fast as the server acknowledges for --probe
seconds: that is the measured maximum. Then the same 8 clients hold
--load (default 70 %) of it for --minutes, each on its own keep-alive
connection, sending gzip'd OTLP/protobuf exports of 512 LLM spans (the
bench_ingest export, every one with its own trace ids) on a fixed schedule,
retrying 429/503 after Retry-After as an OTel exporter does.

Why 70 %: the server must absorb checkpoints and the background explainer's
bursts without ack latency passing the exporters' 10 s default timeout; a
load at the measured maximum leaves no room for either and only measures the
429 path (which bench_ingest already does).

Prints: measured max and rated load (spans/s), acked spans, spans stored at
the end (counted in the database after SIGTERM: every acked export must have
all its rows), ack latency p50/p99, the 429 count, the RSS of the server and
of its workers every 30 s, and whether RSS is flat over the last third.

    python benchmarks/soak.py [--minutes 10] [--probe 30] [--load 0.7]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import itertools
import json
import statistics
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from benchmarks.bench_ingest import SPANS_PER_BATCH, export  # noqa: E402
from tests.servers import Server  # noqa: E402

CLIENTS = 8
SAMPLE_S = 30.0
MAX_MINUTES = 60
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
_MARK = b"\xc5\x0a\xc5\x0a\x5e\xed\xf0\x0d"  # the first 8 bytes of every trace id


def template() -> bytes:
    """A 512-span export whose trace ids all start with _MARK (replaced per export)."""
    request = ExportTraceServiceRequest.FromString(export(4242))
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.trace_id = _MARK + span.trace_id[8:]
    body = request.SerializeToString()
    assert body.count(_MARK) == SPANS_PER_BATCH
    return body


@dataclass
class Tally:
    """What the clients saw; appended from several threads (list.append is atomic)."""

    acked: list[bytes] = field(default_factory=list)  # the marker of each acked export
    latency_ms: list[float] = field(default_factory=list)  # each 200 answer
    ack_ms: list[float] = field(default_factory=list)  # first attempt to 200, retries included
    throttled: list[int] = field(default_factory=list)  # 429/503 answers
    failed: list[str] = field(default_factory=list)  # anything else


class Clients:
    """CLIENTS threads sending exports at ``rate`` exports/s in all (0: as fast as acked)."""

    def __init__(self, port: int, body: bytes, salt: int) -> None:
        self.port, self.body, self.salt = port, body, salt
        self.numbers = itertools.count()
        self.tally = Tally()

    def run(self, seconds: float, rate: float) -> Tally:
        self.tally = Tally()
        deadline = time.monotonic() + seconds
        interval = CLIENTS / rate if rate else 0.0
        threads = [
            threading.Thread(target=self._client, args=(deadline, interval, k / CLIENTS))
            for k in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        return self.tally

    def stats(self) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/api/v1/stats")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def _client(self, deadline: float, interval: float, phase: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        due = time.monotonic() + phase * interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if due > now:
                time.sleep(due - now)
            due = max(due + interval, time.monotonic() - 5)  # never a backlog past 5 s
            marker = struct.pack(">II", self.salt, next(self.numbers))
            body = gzip.compress(self.body.replace(_MARK, marker), 1)
            conn = self._deliver(conn, marker, body, deadline + 60)
        conn.close()

    def _deliver(
        self, conn: http.client.HTTPConnection, marker: bytes, body: bytes, give_up: float
    ) -> http.client.HTTPConnection:
        first = time.perf_counter()
        while time.monotonic() < give_up:
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/traces", body=body, headers=HEADERS)
                response = conn.getresponse()
                response.read()
            except OSError as exc:
                self.tally.failed.append(f"{type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            if response.status == 200:
                done = time.perf_counter()
                self.tally.latency_ms.append((done - start) * 1000)
                self.tally.ack_ms.append((done - first) * 1000)
                self.tally.acked.append(marker)
                return conn
            if response.status not in (429, 503):
                self.tally.failed.append(str(response.status))
                return conn
            self.tally.throttled.append(response.status)
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(float(response.getheader("Retry-After") or 1))
        return conn


def rss_mib(pid: int) -> tuple[float, float]:
    """(RSS of ``pid``, RSS of its child processes) in MiB, from /proc."""
    own, children = 0.0, 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError):
            continue
        kib = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
        if int(stat.parent.name) == pid:
            own = kib / 1024
        elif int(fields[1]) == pid:
            children += kib / 1024
    return own, children


def sample_rss(pid: int, clients: Clients, stop: threading.Event, out: list) -> None:
    start = time.monotonic()
    while True:
        own, workers = rss_mib(pid)
        elapsed = time.monotonic() - start
        out.append((elapsed, own, workers))
        stats = clients.stats()
        print(
            f"  {elapsed / 60:5.1f} min  acked {len(clients.tally.acked) * SPANS_PER_BATCH:>10,} "
            f"spans  server {own:6.0f} MiB (DuckDB {stats['db_memory_bytes'] / 2**20:5.0f} MiB)  "
            f"workers {workers:5.0f} MiB  explained {stats['explained_rows']:>10,}",
            flush=True,
        )
        if stop.wait(SAMPLE_S):
            return


def slope_mib_per_min(samples: list[tuple[float, float, float]]) -> float:
    """Least-squares slope of server + workers RSS over the samples, MiB per minute."""
    xs = [s[0] / 60 for s in samples]
    ys = [s[1] + s[2] for s in samples]
    if len(xs) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def stored_per_export(db: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT substr(id, 1, 16), count(*) FROM requests GROUP BY 1")
        return dict(rows.fetchall())
    finally:
        con.close()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else 0.0


def report(name: str, tally: Tally, seconds: float) -> float:
    rate = len(tally.acked) * SPANS_PER_BATCH / seconds
    print(
        f"{name}: {rate:,.0f} spans/s acked; ack p50 {quantile(tally.latency_ms, 0.5):,.0f} ms, "
        f"p99 {quantile(tally.latency_ms, 0.99):,.0f} ms (with retries: p99 "
        f"{quantile(tally.ack_ms, 0.99):,.0f} ms); {len(tally.throttled)} answered 429/503; "
        f"{len(tally.failed)} failed {sorted(set(tally.failed))[:5]}",
        flush=True,
    )
    return rate


def soak(args: argparse.Namespace, server: Server, clients: Clients) -> tuple[list, list]:
    """Probe, then hold the rated load; returns (every acked marker, RSS samples)."""
    print(f"probe: {CLIENTS} clients, as fast as acknowledged, {args.probe:.0f} s", flush=True)
    probe = clients.run(args.probe, 0)
    measured = report("measured max", probe, args.probe)
    rated = measured * args.load
    print(
        f"rated load: {rated:,.0f} spans/s = {args.load:.0%} of the measured max "
        f"{measured:,.0f} spans/s; holding it {args.minutes:g} min",
        flush=True,
    )
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(server.proc.pid, clients, stop, samples))
    clients.tally = Tally()
    sampler.start()
    held = clients.run(args.minutes * 60, rated / SPANS_PER_BATCH)
    stop.set()
    sampler.join()
    report("soak", held, args.minutes * 60)
    return probe.acked + held.acked, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help=f"≤ {MAX_MINUTES}")
    parser.add_argument("--probe", type=float, default=30.0, help="seconds of the max probe")
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured max")
    args = parser.parse_args()
    args.minutes = min(max(args.minutes, 0.5), MAX_MINUTES)
    args.probe = min(max(args.probe, 5.0), 300.0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "soak.duckdb"
        server = Server(db, "--workers", "2", "--no-grpc").start()  # it drains stderr
        try:
            clients = Clients(server.port, template(), salt=int(time.time()) & 0xFFFFFFFF)
            acked, samples = soak(args, server, clients)
            stats = server.api("stats")
        finally:
            log = server.stop()  # SIGTERM; everything the server wrote
        stored = stored_per_export(db)
    lost = sum(SPANS_PER_BATCH - min(stored.get(m.hex(), 0), SPANS_PER_BATCH) for m in acked)
    print(
        f"acked {len(acked) * SPANS_PER_BATCH:,} spans; stored {sum(stored.values()):,}; "
        f"acked but lost: {lost}"
    )
    keys = ("throttled", "timed_out", "worker_restarts", "server_errors", "explained_rows")
    print("server stats:", {k: stats.get(k) for k in keys})
    print(f"server log: {log.count('Traceback')} tracebacks")
    if "Traceback" in log:  # the first one, to say what failed
        print(log[log.index("Traceback") :][:3000])
    last = [s for s in samples if s[0] >= samples[-1][0] * 2 / 3]
    slope = slope_mib_per_min(last)
    mean = statistics.fmean(s[1] + s[2] for s in last)
    drift = abs(slope) * (last[-1][0] - last[0][0]) / 60
    verdict = "flat" if drift < 0.05 * mean else "NOT flat"
    if len(last) < 3:
        verdict = "too short to tell"
    print(
        f"RSS (server + workers) over the last third: mean {mean:,.0f} MiB, slope "
        f"{slope:+.1f} MiB/min -> {verdict} (flat: drift < 5 % of the mean)"
    )
    if lost:
        raise SystemExit(f"{lost} acknowledged spans were lost")


if __name__ == "__main__":
    main()
