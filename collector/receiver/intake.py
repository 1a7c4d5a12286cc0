"""What the server does with an export behind either front: admission against the
in-flight budget, decoding, commit and acknowledgement, and how the server is
configured. Exports are acknowledged only after their rows are committed; when the
commit queue or the in-flight body budget is full the answer is 429 with Retry-After,
and a client's exporter retries."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from analysis import alerts as alert_rules
from collector import alerting, explain_loop, otlp, otlp_metrics
from collector.ingest import Prepared, prepare
from collector.receiver.reply import Reply
from collector.receiver.workers import DecodePool, WorkerCrashed
from collector.store import metric_series
from collector.store.database import MEMORY_LIMIT_MIB, Store, Writer
from collector.store.lake import LAKE_BATCH_S, LakeConfig

log = logging.getLogger(__name__)

READ_TIMEOUT_ENV = "CACHEDIAG_READ_TIMEOUT_S"  # a request that stalls this long is dropped
IDLE_TIMEOUT_ENV = "CACHEDIAG_IDLE_TIMEOUT_S"  # a keep-alive connection idle this long is closed
MAX_CONNECTIONS_ENV = "CACHEDIAG_MAX_CONNECTIONS"  # open connections past this get 503
DEFAULT_MAX_BODY = 20 * 1024 * 1024
STOP_S = 3.0  # at a stop, how long the background threads get to leave the database


def _env(name: str, default: float) -> Callable[[], float]:
    """A Config default read from the environment variable ``name`` when it is set."""

    def read() -> float:
        try:
            value = float(os.environ.get(name) or default)
        except ValueError:
            value = -1.0
        if value <= 0:
            log.warning("%s=%r is not a positive number; using %s", name, os.environ[name], default)
            return default
        return value

    return read


@dataclass
class Config:
    """How the server runs; the CLI fills it from flags and CACHEDIAG_* variables."""

    db: str = "cachediag.duckdb"
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int | None = None  # OTLP/gRPC port; None leaves gRPC off
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY  # bytes, before and after decompression
    inflight_bytes: int = 128 * 1024 * 1024  # decompressed bodies being read or decoded at once
    workers: int = 0  # decoding processes; 0 decodes in the request thread
    max_pending_rows: int = 50_000
    db_memory_mib: int = MEMORY_LIMIT_MIB  # DuckDB's memory limit
    retry_after: int = 1  # seconds, sent with 429/503
    explain: bool = True  # explain new rows as they commit
    alert_every_s: float = 60.0  # evaluate the alert rules this often; 0 turns it off
    alert_rules: str | None = None  # TOML file with an [alerts] table
    webhook: str | None = None  # POST newly firing alerts here
    content: bool = True  # keep captured prompts; False keeps only hashes (collector.captured)
    lake: LakeConfig | None = None  # also commit to this DuckLake (collector.store.lake)
    # a request whose headers or body stall this long is dropped (its budget released);
    # its whole body must arrive within receiver.BODY_DEADLINE_READS times as long
    read_timeout_s: float = field(default_factory=_env(READ_TIMEOUT_ENV, 5.0))
    idle_timeout_s: float = field(default_factory=_env(IDLE_TIMEOUT_ENV, 30.0))
    max_connections: int = field(default_factory=lambda: int(_env(MAX_CONNECTIONS_ENV, 256)()))


@dataclass
class Stats:
    """Counters the query API reports under /api/v1/stats."""

    exports: int = 0
    records: int = 0
    skipped_not_llm: int = 0
    genai_not_calls: int = 0  # GenAI spans that are no LLM call: agents, tools, embeddings
    metric_exports: int = 0  # OTLP metrics exports accepted
    metric_points: int = 0  # their data points
    genai_metric_points: int = 0  # of gen_ai.* metrics (token usage, time to first token)
    genai_metric_points_stored: int = 0  # GenAI histogram points stored as series (new ones)
    rejected: int = 0
    throttled: int = 0
    timed_out: int = 0  # requests dropped because the client stalled
    refused_connections: int = 0  # connections past max_connections
    worker_restarts: int = 0  # decode workers that died and were replaced
    server_errors: int = 0  # requests answered 500
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in vars(self).items() if k != "lock"}


class Reservation:
    """Bytes of the in-flight budget one export holds; released once, on every path."""

    def __init__(self, collector: Collector, size: int) -> None:
        self._collector, self.size = collector, size

    def resize(self, size: int) -> None:
        """Hold ``size`` bytes instead; 429 when growing past the budget."""
        self._collector.reserve(size - self.size, self.size)
        self.size = size

    def release(self) -> None:
        self._collector.reserve(-self.size)
        self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Collector:
    """Ingest logic behind the HTTP layer: admission, decoding, commit, acknowledgement."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.db, memory_mib=config.db_memory_mib, lake=config.lake)
        self._decoding = 0  # exports being decoded right now (the writer waits for them)
        self.writer = Writer(
            self.store,
            max_pending_rows=config.max_pending_rows,
            # A lake takes tens of commits a second from all collectors together: batch.
            linger_s=LAKE_BATCH_S if config.lake else 0.05,
            more_coming=(lambda: True) if config.lake else lambda: self._decoding > 0,
        )
        self.stats = Stats()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.pool: DecodePool | None = (
            DecodePool(config.workers, lambda: self.stats.add(worker_restarts=1))
            if config.workers > 0
            else None
        )
        self.explain = explain_loop.Background(self.store) if config.explain else None
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

    def admit(self, length: int) -> Reservation:
        """Reserve room for a body of ``length`` bytes, or refuse with 413/429."""
        if length > self.config.max_body:
            raise Reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes exceeds the {self.config.max_body}-byte limit",
            )
        self.reserve(length)
        return Reservation(self, length)

    @property
    def inflight(self) -> int:
        """Bytes of export bodies (decompressed) being read or decoded now."""
        return self._inflight

    def reserve(self, delta: int, held: int = 0) -> None:
        """Grow (or shrink) the in-flight bytes by ``delta``; 429 when growing past the
        budget, unless the caller (holding ``held`` bytes) is alone in flight."""
        with self._inflight_lock:
            alone = self._inflight <= held
            if delta > 0 and not alone and self._inflight + delta > self.config.inflight_bytes:
                self.stats.add(throttled=1)
                raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "server busy; retry later", True)
            self._inflight += delta

    def _inflate(self, body: bytes, encoding: str | None, held: Reservation) -> bytes:
        """The body decompressed, its inflated size counted in the budget: room for the
        worst case (max_body) is held while inflating, then only what it became."""
        if (encoding or "identity").strip().lower() in ("", "identity"):
            return body
        held.resize(len(body) + self.config.max_body)
        try:
            data = otlp.inflate(body, encoding, self.config.max_body)
        except otlp.TooLarge as exc:
            raise Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
        except otlp.DecodeError as exc:
            raise Reply(HTTPStatus.BAD_REQUEST, str(exc)) from None
        held.resize(len(body) + len(data))
        return data

    def ingest(
        self,
        sig: str,
        content_type: str,
        encoding: str | None,
        body: bytes,
        held: Reservation,
    ) -> bytes:
        """Decode, map and commit one export; the response body to acknowledge it."""
        if sig == "metrics":
            return self._metrics(content_type, self._inflate(body, encoding, held))
        if self.writer.pending_rows >= self.config.max_pending_rows:
            self.stats.add(throttled=1)
            raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "commit queue full; retry later", True)
        data = self._inflate(body, encoding, held)
        prepared = self._prepare(sig, content_type, data)
        self.stats.add(
            exports=1,
            records=prepared.records,
            skipped_not_llm=prepared.skipped,
            genai_not_calls=prepared.other,
            rejected=prepared.rejected,
        )
        if len(prepared.frame) or prepared.parts is not None:
            batch = self.writer.try_submit(prepared.frame, prepared.contents, prepared.parts)
            if batch is None:
                self.stats.add(throttled=1)
                raise Reply(HTTPStatus.TOO_MANY_REQUESTS, "commit queue full; retry later", True)
            batch.done.wait()
            if batch.error is not None:
                raise Reply(
                    HTTPStatus.SERVICE_UNAVAILABLE, "commit failed; retry later", True
                ) from None
            if self.explain:
                self.explain.poke()
        return otlp.response_body(sig, content_type, prepared.rejected, prepared.error)

    def _metrics(self, content_type: str, data: bytes) -> bytes:
        """Count a metrics export and store its GenAI histogram points
        (``collector.otlp_metrics``, ``collector.store.metric_series``); acknowledged
        once they are committed."""
        try:
            counted = otlp_metrics.count(content_type, data)
        except otlp.DecodeError as exc:
            raise Reply(HTTPStatus.BAD_REQUEST, str(exc)) from None
        stored = 0
        if counted.rows:
            cur = self.store.cursor()
            try:
                stored = metric_series.insert(cur, counted.rows)
            except Exception:
                log.warning("could not store %d metric points", len(counted.rows), exc_info=True)
                raise Reply(
                    HTTPStatus.SERVICE_UNAVAILABLE, "commit failed; retry later", True
                ) from None
            finally:
                cur.close()
        self.stats.add(
            metric_exports=1,
            metric_points=counted.points,
            genai_metric_points=counted.genai_points,
            genai_metric_points_stored=stored,
        )
        return otlp_metrics.response_body(content_type)

    def _prepare(self, sig: str, content_type: str, data: bytes) -> Prepared:
        args = (sig, content_type, None, data, self.config.max_body, self.config.content)
        with self._inflight_lock:
            self._decoding += 1
        try:
            return self.pool.run(prepare, *args) if self.pool else prepare(*args)
        except otlp.TooLarge as exc:
            raise Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
        except (otlp.DecodeError, WorkerCrashed) as exc:
            raise Reply(HTTPStatus.BAD_REQUEST, str(exc)) from None
        finally:
            with self._inflight_lock:
                self._decoding -= 1

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
            self.pool.shutdown()
        if not all(stopped):
            return False
        self.store.close()
        return True
