"""In-service instrumentation: one OTel span per LLM request, fingerprinted in-process.

    from collector import instrument
    inst = instrument.setup(service_name="support-bot", endpoint="http://127.0.0.1:4318")
    with inst.record_request(body, route="/chat", replica="r1") as call:
        response = client.chat.completions.create(**body)
        call.set_response(response)

Runs inside users' services, so it imports only the standard library,
OpenTelemetry and the light parts of ``analysis`` (no numpy, polars or DuckDB),
patches nothing process-wide, and never raises into the caller's code: a
failure of ours is logged, counted (``failures()``) and the call goes on. The
span opens when the call starts; the prompt is fingerprinted on a background
thread while the call is in flight (the caller is waiting on the network
then), and the span ends, with the call's own end time, once both are done.

Nothing waits on the caller's thread. The fingerprint queue is bounded: a
request that does not fit is not fingerprinted, its span ends with what is
known (no ``cachediag.encoding`` nor any other fingerprint attribute) and it is
counted (``dropped_fingerprints()``). Export is batched on a bounded queue;
spans that do not fit are dropped and counted (``dropped_spans()``). ``flush``
and ``shutdown`` take a timeout; at exit, pending fingerprints get EXIT_WAIT_S
and the rest end unfingerprinted, so their spans still leave. It is fork-safe
(see ``collector.instrument.background``): a child forked after ``setup()`` (gunicorn
``--preload``, Celery prefork) fingerprints and exports its own spans. Content
is captured only when asked (``capture_content=True``,
CACHEDIAG_CAPTURE_CONTENT=true or
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), through a redactor.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from analysis import fingerprint, prompt
from collector import attributes as A
from collector.bodies import fingerprint_body
from collector.instrument.background import ProcessorDrops, Tally, Worker, fork_safe_session
from collector.instrument.call import Call

log = logging.getLogger(__name__)

CAPTURE_ENV = "CACHEDIAG_CAPTURE_CONTENT"  # "true" captures rendered prompts (redacted)
OTEL_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
MAX_PENDING = 1024  # requests waiting for a background fingerprint; more are not fingerprinted
EXIT_WAIT_S = 5.0  # at exit, longest wait for pending fingerprints (then their spans end without)
TIMEOUT_MS = 30_000  # default bound of flush() and shutdown()
# Tally names
FINGERPRINTS_DROPPED, SPANS_DROPPED, FAILURES = "fingerprints_dropped", "spans_dropped", "failures"

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


class Instrumentation:
    """A tracer plus fingerprinting settings; make one with ``setup``."""

    def __init__(
        self,
        tracer_provider: Any,
        capture_content: bool,
        redactor: Callable[[str], str] | None,
        block_size: int,
        tally: Tally | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("cachediag.instrument")
        self.capture_content = capture_content
        self.redactor = redactor
        self.block_size = block_size
        self.memo = fingerprint.TokenMemo()
        self._tally = tally or Tally()
        self._worker = Worker(self._run, self._drop, max_pending, "cachediag-fingerprint")
        # Finish pending fingerprints at exit, before the provider's own exit flush
        # (atexit runs the last registered first).
        atexit.register(self._worker.stop, EXIT_WAIT_S)

    def _run(self, job: tuple[Call, Any, str | None, float]) -> None:
        """Fingerprint one request (on the worker thread), not before its start time."""
        call, body, model, not_before = job
        wait = not_before - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the request is still being written: leave it the GIL
        try:
            attrs = self.attributes(body, model)
        except Exception:  # never into the caller's code
            log.debug("cachediag could not fingerprint a request", exc_info=True)
            self._failed()
            attrs = {}
        call.fingerprinted(attrs)

    def _failed(self) -> None:
        self._tally.add(FAILURES)

    def _drop(self, job: tuple[Call, Any, str | None, float]) -> None:
        """No room for the fingerprint (or stopped): the span ends without one, counted."""
        self._tally.add(FINGERPRINTS_DROPPED)
        job[0].fingerprinted({})

    def attributes(self, body: Any, model: str | None = None) -> dict[str, Any]:
        """Fingerprint attributes of a request body (empty if it cannot be parsed)."""
        try:
            parsed, attrs = fingerprint_body(body, model, self.block_size, self.memo)
        except prompt.PromptError:
            return {}
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
            snapshot = _snapshot(body)
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
            A.choose_routing_key(attrs)
            span = self.tracer.start_span(
                f"{operation} {model or 'unknown'}", kind=SpanKind.CLIENT, attributes=attrs
            )
            call = Call(span, self._worker.submit, on_failure=self._failed)
            call._job = (call, snapshot, model)
        except Exception:
            log.debug("cachediag could not start a span", exc_info=True)
            self._failed()
            return Call(trace.INVALID_SPAN)
        if not defer:
            call.start_fingerprint()
        return call

    def dropped_spans(self) -> int:
        """Spans dropped because the export queue was full (0 when joining a provider
        the service made: its processors count their own)."""
        return self._tally[SPANS_DROPPED]

    def dropped_fingerprints(self) -> int:
        """Requests not fingerprinted because the fingerprint queue was full (or the
        instrumentation was shutting down); their spans were exported without one."""
        return self._tally[FINGERPRINTS_DROPPED]

    def failures(self) -> int:
        """Steps of ours that failed (and were swallowed): fingerprints, attributes."""
        return self._tally[FAILURES]

    def flush(self, timeout_ms: int = TIMEOUT_MS) -> bool:
        """Finish pending fingerprints, then export every ended span, within
        ``timeout_ms``; True if both were done in time."""
        deadline = time.monotonic() + timeout_ms / 1000
        drained = self._worker.drain(timeout_ms / 1000)
        left_ms = max(int((deadline - time.monotonic()) * 1000), 0)
        flushed = bool(self.provider.force_flush(left_ms))  # what has ended, in any case
        return drained and flushed

    def shutdown(self, timeout_ms: int = TIMEOUT_MS) -> None:
        """Finish pending fingerprints (within ``timeout_ms``; the rest end without),
        then shut the provider down."""
        self._worker.stop(timeout_ms / 1000)
        with contextlib.suppress(Exception):
            self.provider.shutdown()


def setup(
    service_name: str = "llm-service",
    endpoint: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    capture_content: bool | None = None,
    redactor: Callable[[str], str] | None = redact,
    block_size: int = 64,
    max_queue_size: int = 2048,
    max_pending: int = MAX_PENDING,
    tracer_provider: Any = None,
) -> Instrumentation:
    """Instrument this process: join its TracerProvider, or make one exporting OTLP/HTTP.

    A provider passed in, or an SDK provider the service already set globally,
    is joined as it is (its exporters decide where spans go). Otherwise a new
    provider exports to ``endpoint`` (default OTEL_EXPORTER_OTLP_ENDPOINT or
    http://127.0.0.1:4318) through a bounded BatchSpanProcessor of
    ``max_queue_size`` spans. At most ``max_pending`` requests wait for a fingerprint.
    """
    if capture_content is None:
        capture_content = _env_true(CAPTURE_ENV) or _env_true(OTEL_CAPTURE_ENV)
    existing = tracer_provider or trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        return Instrumentation(existing, capture_content, redactor, block_size, None, max_pending)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(
        endpoint=f"{base}/v1/traces", headers=headers, session=fork_safe_session()
    )
    processor = BatchSpanProcessor(
        exporter, max_queue_size=max_queue_size, max_export_batch_size=min(512, max_queue_size)
    )
    tally = Tally()
    _count_drops(processor, ProcessorDrops(tally, SPANS_DROPPED))
    provider.add_span_processor(processor)
    return Instrumentation(provider, capture_content, redactor, block_size, tally, max_pending)


def _count_drops(processor: BatchSpanProcessor, drops: ProcessorDrops) -> None:
    """Count the processor's queue-full drops here. The SDK counts them only when
    OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED is set as it is built, and setting that
    variable would change the whole process; so its (no-op) metrics hook, which this
    one processor alone calls, is replaced. Without the hook (another SDK version),
    dropped_spans() stays 0."""
    batcher = getattr(processor, "_batch_processor", None)
    if batcher is not None and hasattr(batcher, "_metrics"):
        batcher._metrics = drops
    else:
        log.info("cachediag cannot count dropped spans with this OpenTelemetry SDK")
