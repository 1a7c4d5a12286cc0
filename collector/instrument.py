"""In-service instrumentation: one OTel span per LLM request, fingerprinted in-process.

    from collector import instrument
    inst = instrument.setup(service_name="support-bot", endpoint="http://127.0.0.1:4318")
    with inst.record_request(body, route="/chat", replica="r1") as call:
        response = client.chat.completions.create(**body)
        call.set_response(response)

Runs inside users' services, so it imports only the standard library,
OpenTelemetry and the light parts of ``analysis``, and it never raises into
the caller's code: a failure of ours is logged and the call goes on. The
span opens when the call starts; the prompt is fingerprinted on a background
thread while the call is in flight (the caller is waiting on the network
then), and the span ends, with the call's own end time, once both are done.
Export is batched on a bounded queue; spans that do not fit are dropped and
counted (``dropped_spans()``), never waited for. Content is captured only when asked
(``capture_content=True``, CACHEDIAG_CAPTURE_CONTENT=true or
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), through a redactor.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from analysis import fingerprint, prompt, tokens
from analysis import usage as usage_mod
from collector import attributes as A

log = logging.getLogger(__name__)

CAPTURE_ENV = "CACHEDIAG_CAPTURE_CONTENT"  # "true" captures rendered prompts (redacted)
OTEL_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
MAX_PENDING = 1024  # requests waiting for a background fingerprint

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d ()./-]{7,}\d(?!\w)")


def _snapshot(body: Any) -> Any:
    """The body with its lists copied: the caller may append to them once the call returns."""
    if not isinstance(body, dict):
        return body
    copy = dict(body)
    for key in ("messages", "input", "tools", "system"):
        if isinstance(copy.get(key), list):
            copy[key] = list(copy[key])
    return copy


def redact(text: str) -> str:
    """The built-in redactor: emails, card-like numbers and phone numbers."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub("[phone]", text)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def as_dict(obj: Any) -> Any:
    """A plain dict of an SDK response object (pydantic models included)."""
    if obj is None or isinstance(obj, dict):
        return obj
    for method in ("model_dump", "to_dict", "dict"):
        if hasattr(obj, method):
            with contextlib.suppress(Exception):
                return getattr(obj, method)()
    return None


class Call:
    """The span of one LLM request: mark the first token, hand over the response."""

    def __init__(
        self, span: Any, submit: Callable[[Any], None] | None = None, job: Any = None
    ) -> None:
        self.span = span
        self._submit, self._job = submit, job
        self._start = time.perf_counter()
        self._first: float | None = None
        self._usage: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._end_ns: int | None = None
        self._fingerprinted = False

    def first_token(self) -> None:
        """Mark the first streamed token (or chunk); later calls are ignored."""
        if self._first is None:
            self._first = time.perf_counter()
            ttft = (self._first - self._start) * 1000
            self._safe(
                lambda: self.span.set_attributes(
                    {A.TTFT_MS.name: ttft, A.TIME_TO_FIRST_CHUNK.name: ttft / 1000}
                )
            )

    def set_usage(self, usage: Any) -> None:
        """The provider's usage, in any provider's shape; parts may come in pieces."""

        def apply() -> None:
            found = as_dict(usage) or {}
            self._usage.update({k: v for k, v in found.items() if v is not None})
            norm = usage_mod.from_provider(self._usage)
            for attr, value in (
                (A.INPUT_TOKENS, norm.prompt_tokens),
                (A.OUTPUT_TOKENS, norm.output_tokens),
                (A.CACHE_READ, norm.cached_tokens),
                (A.CACHE_CREATION, norm.cache_write_tokens),
            ):
                if value is not None:
                    self.span.set_attribute(attr.name, value)

        self._safe(apply)

    def set_response(self, response: Any) -> None:
        """A whole (non-streamed) response: its model, usage and cache diagnostics."""

        def apply() -> None:
            data = as_dict(response) or {}
            if data.get("model"):
                self.span.set_attribute(A.RESPONSE_MODEL.name, str(data["model"]))
            if data.get("usage") is not None:
                self.set_usage(data["usage"])
            verdict = usage_mod.verdict(data)
            if verdict:
                self.span.set_attribute(A.PROVIDER_VERDICT.name, json.dumps(verdict))

        self._safe(apply)

    def set_error(self, error: BaseException) -> None:
        def apply() -> None:
            self.span.set_attribute("error.type", type(error).__name__)
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, str(error)[:200]))

        self._safe(apply)

    def start_fingerprint(self, after_s: float = 0.0) -> None:
        """Let the background fingerprint begin (once), not before ``after_s`` from now.
        Wrappers call it as the request leaves, with a short delay so the worker does not
        take the GIL from the thread still writing the request: it then runs while the
        caller waits on the network."""
        with self._lock:
            job, self._job = self._job, None
        if job is not None and self._submit is not None:
            self._submit((*job, time.monotonic() + after_s))

    def end(self) -> None:
        """The call is over; the span ends now, or when its fingerprint is ready."""
        self.start_fingerprint()
        with self._lock:
            if self._end_ns is not None:
                return
            self._end_ns = time.time_ns()
            ready = self._fingerprinted
        if ready:
            self._safe(lambda: self.span.end(end_time=self._end_ns))

    def fingerprinted(self, attrs: dict[str, Any]) -> None:
        """The fingerprint is done (in the background); end the span if the call is over."""
        self._safe(lambda: self.span.set_attributes(attrs))
        with self._lock:
            self._fingerprinted = True
            end_ns = self._end_ns
        if end_ns is not None:
            self._safe(lambda: self.span.end(end_time=end_ns))

    @staticmethod
    def _safe(action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:  # never into the caller's code
            log.debug("cachediag instrumentation step failed", exc_info=True)


class Instrumentation:
    """A tracer plus fingerprinting settings; make one with ``setup``."""

    def __init__(
        self,
        tracer_provider: Any,
        capture_content: bool,
        redactor: Callable[[str], str] | None,
        block_size: int,
        metrics: InMemoryMetricReader | None = None,
    ) -> None:
        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("cachediag.instrument")
        self.capture_content = capture_content
        self.redactor = redactor
        self.block_size = block_size
        self.memo = fingerprint.TokenMemo()
        self._metrics = metrics
        self._jobs: queue.Queue[tuple[Call, Any, str | None, float]] = queue.Queue(MAX_PENDING)
        self._worker = threading.Thread(
            target=self._fingerprint_jobs, daemon=True, name="cachediag-fingerprint"
        )
        self._worker.start()
        # Finish pending fingerprints at exit, before the provider's own exit flush
        # (atexit runs the last registered first).
        atexit.register(self._jobs.join)

    def _fingerprint_jobs(self) -> None:
        while True:
            call, body, model, not_before = self._jobs.get()
            try:
                wait = not_before - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._fingerprint(call, body, model)
            finally:
                self._jobs.task_done()

    def _fingerprint(self, call: Call, body: Any, model: str | None) -> None:
        try:
            attrs = self.attributes(body, model)
        except Exception:  # never into the caller's code
            log.debug("cachediag could not fingerprint a request", exc_info=True)
            attrs = {}
        call.fingerprinted(attrs)

    def attributes(self, body: Any, model: str | None = None) -> dict[str, Any]:
        """Fingerprint attributes of a request body (empty if it cannot be parsed)."""
        try:
            parsed = prompt.parse(body)
        except prompt.PromptError:
            return {}
        tok = tokens.resolve(model or parsed.model)
        fp = fingerprint.fingerprint(parsed, tok, self.block_size, self.memo)
        attrs = A.fingerprint_attributes(fp)
        if self.capture_content:
            text = parsed.text
            attrs[A.CONTENT.name] = self.redactor(text) if self.redactor else text
        return attrs

    @contextlib.contextmanager
    def record_request(
        self,
        body: Any,
        *,
        provider: str = "openai",
        operation: str = "chat",
        route: str | None = None,
        replica: str | None = None,
        prompt_version: str | None = None,
        schema_version: str | None = None,
        session_key: str | None = None,
        conversation_id: str | None = None,
    ) -> Iterator[Call]:
        """Record one LLM request around the block that makes it."""
        call = self._start(
            body,
            provider,
            operation,
            {
                A.ROUTE.name: route,
                A.REPLICA.name: replica,
                A.PROMPT_VERSION.name: prompt_version,
                A.SCHEMA_VERSION.name: schema_version,
                A.SESSION_KEY.name: session_key,
                A.CONVERSATION_ID.name: conversation_id,
            },
        )
        try:
            yield call
        except BaseException as error:
            call.set_error(error)
            raise
        finally:
            call.end()

    def start_call(
        self,
        body: Any,
        provider: str,
        operation: str,
        extra: dict[str, Any] | None = None,
        defer: bool = False,
    ) -> Call:
        """Start a span the caller ends (wrappers); never raises. With ``defer`` the
        fingerprint waits for ``call.start_fingerprint()`` (or the end of the call)."""
        return self._start(body, provider, operation, extra or {}, defer)

    def _start(
        self, body: Any, provider: str, operation: str, extra: dict[str, Any], defer: bool = False
    ) -> Call:
        """Open the span now; fingerprint in the background while the call is in flight."""
        try:
            model = body.get("model") if isinstance(body, dict) else None
            attrs: dict[str, Any] = {A.PROVIDER.name: provider, A.OPERATION.name: operation}
            if model:
                attrs[A.REQUEST_MODEL.name] = str(model)
            if (
                isinstance(body, dict)
                and body.get("prompt_cache_key")
                and not extra.get(A.SESSION_KEY.name)
            ):
                attrs[A.SESSION_KEY.name] = str(body["prompt_cache_key"])
            attrs.update({k: v for k, v in extra.items() if v is not None})
            span = self.tracer.start_span(
                f"{operation} {model or 'unknown'}", kind=SpanKind.CLIENT, attributes=attrs
            )
        except Exception:
            log.debug("cachediag could not start a span", exc_info=True)
            return Call(trace.INVALID_SPAN)
        call = Call(span, self._enqueue)
        call._job = (call, _snapshot(body), model)
        if not defer:
            call.start_fingerprint()
        return call

    def _enqueue(self, job: tuple[Call, Any, str | None, float]) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:  # the worker is behind: fingerprint here rather than lose it
            self._fingerprint(*job[:3])

    def dropped_spans(self) -> int:
        """Spans dropped because the export queue was full."""
        if self._metrics is None:
            return 0
        data = self._metrics.get_metrics_data()
        dropped = 0
        for rm in getattr(data, "resource_metrics", []) or []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "otel.sdk.processor.span.processed":
                        continue
                    for point in metric.data.data_points:
                        if point.attributes.get("error.type") == "queue_full":
                            dropped += point.value
        return dropped

    def flush(self, timeout_ms: int = 30_000) -> bool:
        """Finish pending fingerprints, then export every ended span."""
        self._jobs.join()
        return bool(self.provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        self._jobs.join()
        with contextlib.suppress(Exception):
            self.provider.shutdown()


@contextlib.contextmanager
def _sdk_metrics_enabled() -> Iterator[None]:
    """Switch on the SDK's processor metrics while one processor is built."""
    name = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def setup(
    service_name: str = "llm-service",
    endpoint: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    capture_content: bool | None = None,
    redactor: Callable[[str], str] | None = redact,
    block_size: int = 64,
    max_queue_size: int = 2048,
    tracer_provider: Any = None,
) -> Instrumentation:
    """Instrument this process: join its TracerProvider, or make one exporting OTLP/HTTP.

    A provider passed in, or an SDK provider the service already set globally,
    is joined as it is (its exporters decide where spans go). Otherwise a new
    provider exports to ``endpoint`` (default OTEL_EXPORTER_OTLP_ENDPOINT or
    http://127.0.0.1:4318) through a bounded BatchSpanProcessor.
    """
    if capture_content is None:
        capture_content = _env_true(CAPTURE_ENV) or _env_true(OTEL_CAPTURE_ENV)
    existing = tracer_provider or trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        return Instrumentation(existing, capture_content, redactor, block_size)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    reader = InMemoryMetricReader()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers)
    with _sdk_metrics_enabled():  # the SDK's own drop counter, kept in this process
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(512, max_queue_size),
            meter_provider=MeterProvider(metric_readers=[reader]),
        )
    provider.add_span_processor(processor)
    return Instrumentation(provider, capture_content, redactor, block_size, reader)
