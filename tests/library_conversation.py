"""One instrumentation library's six-turn conversation, in a process of its own.

    python tests/library_conversation.py NAME PLAN [URL]

Library NAME (one of ``CONVERSING``), set up as its docs say, wraps the real ``openai`` or
``anthropic`` SDK; the SDK talks to tests/fake_llm.py through the turns of the JSON file
PLAN (``plan``: bodies, streamed turns, the usage the fake provider answers). The library
exports over OTLP/HTTP to URL, a real server (tests/test_libraries_live.py), or else to a
loopback endpoint that keeps every export, recorded by tests/record_libraries.py. Prints
what was kept and the versions that ran, as one JSON line. One library per process:
instrumentors patch the SDK process-wide.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve()  # what runs one library: python SCRIPT NAME PLAN [URL]
ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(ROOT))  # run by path, also from other venvs

STREAMED = (2, 4)  # turns sent with stream=True
SESSION = "conv-1"
STAMP = "Now: 2026-11-30T16:00:00Z. "  # in the system prompt; turn 6 renews it
# library: (sdk, venv it is recorded in (tests/record_libraries.py), extra environment)
CONVERSING = {
    "openinference-openai": ("openai", "main", {}),
    "openinference-anthropic": ("anthropic", "main", {}),
    "openllmetry-openai": ("openai", "main", {"TRACELOOP_TRACE_CONTENT": "true"}),
    "openllmetry-anthropic": ("anthropic", "main", {"TRACELOOP_TRACE_CONTENT": "true"}),
    "logfire-openai": ("openai", "main", {}),
    "logfire-anthropic": ("anthropic", "main", {}),
    "openlit-openai": ("openai", "openlit", {}),
    "openlit-anthropic": ("anthropic", "openlit", {}),
    "otel-openai-v2": ("openai", "otelv2",
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
         "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only"}),
    "otel-openai-v2-events": ("openai", "otelv2",
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}),
}  # fmt: skip


def conversation(sdk: str) -> list[dict]:
    """The six request bodies (system prompt past every cache minimum, three tools); the
    sixth renews the timestamp at the head of the system prompt."""
    from tests import cases

    system = cases.POLICY + "\n\n" + "\n\n".join(cases.DOCS * 40)
    history: list[dict] = []
    out = []
    for turn in range(1, 7):
        history.append({"role": "user", "content": f"Question {turn}: where is order {turn}?"})
        stamp = STAMP.replace("16:00", "17:40") if turn == 6 else STAMP
        if sdk == "openai":
            tools = [{"type": "function", "function": {"name": n, "description": d,
                      "parameters": p}} for n, d, p in cases.TOOLS]  # fmt: skip
            messages = [{"role": "system", "content": stamp + system}, *history]
            out.append({"model": "gpt-4o", "messages": messages, "tools": tools})
        else:
            tools = [{"name": n, "description": d, "input_schema": p} for n, d, p in cases.TOOLS]
            block = {"type": "text", "text": stamp + system, "cache_control": {"type": "ephemeral"}}
            out.append({"model": "claude-sonnet-4-5", "max_tokens": 256, "system": [block],
                        "messages": list(history), "tools": tools})  # fmt: skip
        history.append({"role": "assistant", "content": f"Order {turn} has shipped."})
    return out


def plan(sdk: str) -> list[dict]:
    """Each turn's body, whether it streams, and the usage the fake provider answers: the
    prompt is our rendering's token count; turns 2-5 read the cache (OpenAI: the previous
    prompt in 128-token steps; Anthropic: up to the system breakpoint), turns 1 and 6 not."""
    from collector.bodies import fingerprint_body

    turns, previous = [], 0
    for turn, body in enumerate(conversation(sdk), start=1):
        _, fp = fingerprint_body(body)
        total, hit = fp["cachediag.total_tokens"], turn not in (1, 6)
        if sdk == "openai":
            cached = previous // 128 * 128 if hit else 0
            usage = {"prompt_tokens": total, "completion_tokens": 10 + turn,
                     "total_tokens": total + 10 + turn,
                     "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip
        else:
            prefix = json.loads(fp["cachediag.breakpoints"])[0]
            usage = {"input_tokens": total - prefix, "output_tokens": 10 + turn,
                     "cache_read_input_tokens": prefix if hit else 0,
                     "cache_creation_input_tokens": 0 if hit else prefix}  # fmt: skip
        turns.append({"body": body, "stream": turn in STREAMED, "usage": usage})
        previous = total
    return turns


def _setup(name: str, otlp: str):
    """Install library ``name`` exporting to ``otlp``: (wrap a client, a session context)."""
    import contextlib
    import importlib.util

    session = contextlib.nullcontext
    wrap = lambda client: client  # noqa: E731
    if name.startswith("openllmetry") and importlib.util.find_spec("traceloop"):
        from traceloop.sdk import Traceloop

        Traceloop.init(app_name=name, api_endpoint=otlp, disable_batch=True,
                       telemetry_enabled=False)  # fmt: skip
        Traceloop.set_association_properties({"session_id": SESSION})
    elif name.startswith("openlit"):
        import openlit

        openlit.init(otlp_endpoint=otlp, application_name=name, disable_batch=True,
                     capture_message_content=True, disable_metrics=True)  # fmt: skip
    elif name.startswith("logfire"):
        import logfire
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        exporter = OTLPSpanExporter(endpoint=otlp + "/v1/traces")
        logfire.configure(send_to_logfire=False, console=False, service_name=name,
                          additional_span_processors=[SimpleSpanProcessor(exporter)])  # fmt: skip
        instrument = getattr(logfire, "instrument_" + name.split("-")[1])
        wrap = lambda client: (instrument(client), client)[1]  # noqa: E731 (in place)
    else:  # OpenInference, openai-v2, OpenLLMetry's own: SDK providers, an instrumentor
        session = _instrument(name, otlp) or session
    return wrap, session


def _instrument(name: str, otlp: str):
    """The SDK's providers exporting to ``otlp``, the library's instrumentor on them; the
    library's session context, if it has one."""
    import importlib

    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create({"service.name": name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(otlp + "/v1/traces")))
    trace.set_tracer_provider(provider)
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(otlp + "/v1/logs")))
    set_logger_provider(logs)
    sdk, _, _ = CONVERSING[name]
    session = None
    if name.startswith("openinference"):
        from openinference.instrumentation import using_session

        module = importlib.import_module("openinference.instrumentation." + sdk)
        session = lambda: using_session(SESSION)  # noqa: E731
    elif name.startswith("openllmetry"):  # without traceloop-sdk: sends no session
        module = importlib.import_module("opentelemetry.instrumentation." + sdk)
    else:
        module = importlib.import_module("opentelemetry.instrumentation.openai_v2")
    module = getattr(module, "OpenAIInstrumentor", None) or module.AnthropicInstrumentor
    module().instrument(tracer_provider=provider, logger_provider=logs)
    return session


class _Capture:
    """A loopback OTLP/HTTP endpoint keeping every export as it arrives."""

    def __enter__(self):
        import gzip
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        exports = self.exports = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                exports.append((self.path, self.headers.get("Content-Type"), data))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()


class _Forward:
    """Live: the library exports straight to ``url``; nothing is kept."""

    def __init__(self, url: str) -> None:
        self.url, self.exports = url, []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def converse(name: str, plan_path: str, to: str = "") -> dict:
    """Child process: library ``name`` around its SDK through the planned turns, exporting
    to ``to`` (else kept); what it exported (base64 bodies) and the versions that ran."""
    import base64
    from importlib import metadata

    from opentelemetry import trace
    from opentelemetry._logs import get_logger_provider

    from tests.fake_llm import FakeLLM

    sdk = CONVERSING[name][0]
    turns = json.loads(Path(plan_path).read_text())
    with (
        _Forward(to) if to else _Capture() as capture,
        FakeLLM(usages=[t["usage"] for t in turns]) as fake,
    ):
        wrap, session = _setup(name, capture.url)
        if sdk == "openai":
            import openai

            client = wrap(openai.OpenAI(base_url=fake.url + "/v1", api_key="k"))
            create = client.chat.completions.create
        else:
            import anthropic

            client = wrap(anthropic.Anthropic(base_url=fake.url, api_key="k"))
            create = client.messages.create
        app = trace.get_tracer("app")  # each turn inside the service's own request span
        for turn in turns:
            extra = {"stream": True} if turn["stream"] else {}
            if turn["stream"] and sdk == "openai":
                extra["stream_options"] = {"include_usage": True}
            with session(), app.start_as_current_span("handle request"):
                answer = create(**turn["body"], **extra)
                for _ in answer if turn["stream"] else ():
                    pass
        trace.get_tracer_provider().force_flush()
        getattr(get_logger_provider(), "force_flush", lambda: None)()
    keys = ("openai", "anthropic", "traceloop", "logfire", "openlit", "openinference", "-sdk")
    versions = {
        d.metadata["Name"]: d.version
        for d in metadata.distributions()
        if any(k in d.metadata["Name"].lower() for k in keys)
    }
    exports = [
        {"path": path, "type": kind, "data": base64.b64encode(data).decode()}
        for path, kind, data in capture.exports
    ]
    return {"versions": versions, "exports": exports}


if __name__ == "__main__":
    print(json.dumps(converse(*sys.argv[1:4])))
