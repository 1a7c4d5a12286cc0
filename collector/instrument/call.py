"""The span of one LLM call as the instrumentation sees it: first token, usage,
response, error, and the hand-over of its fingerprint to the background.

Every method is safe to call from the caller's code: a failure of ours is
logged and reported to ``on_failure`` (the instrumentation counts it), never
raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Status, StatusCode

from analysis import usage as usage_mod
from collector import attributes as A

log = logging.getLogger(__name__)


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
        self,
        span: Any,
        submit: Callable[[Any], None] | None = None,
        job: Any = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.span = span
        self._submit, self._job, self._on_failure = submit, job, on_failure
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
            self.safely(
                lambda: self.span.set_attributes(
                    {A.TTFT_MS.name: ttft, A.TIME_TO_FIRST_CHUNK.name: ttft / 1000}
                )
            )

    def set_usage(self, usage: Any) -> None:
        """The provider's usage, in any provider's shape; parts may come in pieces."""

        def apply() -> None:
            found = as_dict(usage) or {}
            self._usage.update({k: v for k, v in found.items() if v is not None})
            self.span.set_attributes(A.usage_attributes(usage_mod.from_provider(self._usage)))

        self.safely(apply)

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

        self.safely(apply)

    def set_error(self, error: BaseException) -> None:
        def apply() -> None:
            self.span.set_attribute("error.type", type(error).__name__)
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, str(error)[:200]))

        self.safely(apply)

    def start_fingerprint(self, after_s: float = 0.0) -> None:
        """Let the background fingerprint begin (once), not before ``after_s`` from now.
        Wrappers call it as the request leaves, with a short delay so the worker does not
        take the GIL from the thread still writing the request: it then runs while the
        caller waits on the network."""

        def submit() -> None:
            with self._lock:
                job, self._job = self._job, None
            if job is not None and self._submit is not None:
                self._submit((*job, time.monotonic() + after_s))

        self.safely(submit)

    def end(self) -> None:
        """The call is over; the span ends now, or when its fingerprint is ready."""
        self.start_fingerprint()
        with self._lock:
            if self._end_ns is not None:
                return
            self._end_ns = time.time_ns()
            ready = self._fingerprinted
        if ready:
            self.safely(lambda: self.span.end(end_time=self._end_ns))

    def fingerprinted(self, attrs: dict[str, Any]) -> None:
        """The fingerprint is done (or dropped: no attributes); end the span if the call
        is over."""
        if attrs and A.ROUTING_KEY.name in (getattr(self.span, "attributes", None) or ()):
            attrs = {k: v for k, v in attrs.items() if k != A.ROUTING_KEY.name}  # chosen at start
        if attrs:
            self.safely(lambda: self.span.set_attributes(attrs))
        with self._lock:
            self._fingerprinted = True
            end_ns = self._end_ns
        if end_ns is not None:
            self.safely(lambda: self.span.end(end_time=end_ns))

    def safely(self, action: Callable[[], Any]) -> None:
        """Run a step of ours: a failure is logged and counted, never raised."""
        try:
            action()
        except Exception:  # never into the caller's code
            log.debug("cachediag instrumentation step failed", exc_info=True)
            if self._on_failure is not None:
                self._on_failure()
