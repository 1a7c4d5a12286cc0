"""In-service instrumentation: what runs inside a user's service.

Imports only the standard library, OpenTelemetry and the pure fingerprinting
of ``analysis`` (no numpy, polars or DuckDB). The public API:

    from collector.instrument import setup, instrument_openai
"""

from collector.instrument.call import Call
from collector.instrument.tracing import (
    CAPTURE_ENV,
    OTEL_CAPTURE_ENV,
    Instrumentation,
    redact,
    setup,
)
from collector.instrument.wrappers import instrument_anthropic, instrument_openai

__all__ = [
    "CAPTURE_ENV",
    "OTEL_CAPTURE_ENV",
    "Call",
    "Instrumentation",
    "instrument_anthropic",
    "instrument_openai",
    "redact",
    "setup",
]
