"""Record what real instrumentation libraries export, as fixtures that tests replay
(their pins conflict with ours, so each runs in a venv of its own; PyPI is enough):

    (the venvs: sample_data/libraries/README.md; each library's pins conflict with ours)
    /tmp/libs16/main/bin/python tests/record_libraries.py        # one call, spans only
    .venv/bin/python tests/record_libraries.py conversations main=/tmp/libs16/main/bin/python \
        openlit=/tmp/libs16/openlit/bin/python otelv2=/tmp/libs16/otelv2/bin/python [NAME...]

One call (sample_data/libraries/*.json, replayed by tests/test_rebuild.py): the golden
conversation of tests/test_rebuild.py; every finished span's name and attributes.
Conversations (sample_data/libraries/conversations/*.json, replayed into a real server by
tests/test_library_conversations.py): six turns planned here (bodies, streamed turns, the
usage the fake provider answers), each library set up as its docs say, exporting over
OTLP/HTTP to a loopback endpoint that keeps every export as sent (kept as OTLP/JSON).
Each library runs around the real SDK against tests/fake_llm.py, one per child process
(instrumentors patch the SDK process-wide). A library that fails to run is named and skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sample_data" / "libraries"
sys.path.insert(0, str(ROOT))

OLLM, OI = "opentelemetry.instrumentation.", "openinference.instrumentation."
LIBRARIES = {
    "openinference-openai": ("openai", OI + "openai", "OpenAIInstrumentor", {}),
    "openinference-anthropic": ("anthropic", OI + "anthropic", "AnthropicInstrumentor", {}),
    "otel-openai-v2": ("openai", OLLM + "openai_v2", "OpenAIInstrumentor",
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
         "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only"}),
    "openllmetry-openai": ("openai", OLLM + "openai", "OpenAIInstrumentor",
        {"TRACELOOP_TRACE_CONTENT": "true"}),
    "openllmetry-anthropic": ("anthropic", OLLM + "anthropic", "AnthropicInstrumentor",
        {"TRACELOOP_TRACE_CONTENT": "true"}),
    "logfire-openai": ("openai", "logfire", "instrument_openai", {}),
    "logfire-anthropic": ("anthropic", "logfire", "instrument_anthropic", {}),
}  # fmt: skip


def _bodies() -> dict[str, dict]:
    from tests import cases

    spec = cases.base_spec()
    call = spec["turns"][1]
    call["reasoning"] = None
    cid, name, args = call["call"]
    call["call"] = (cid, name, json.dumps(json.loads(args), separators=(",", ":")))
    anthropic = cases.build("anthropic", cases.base_spec())
    anthropic["system"] = anthropic["system"][0]["text"]
    return {"openai": cases.build("openai_chat", spec), "anthropic": anthropic}


def _value(value):
    return list(value) if isinstance(value, tuple) else value


def record(name: str) -> dict:
    """Run one library around its SDK against the fake provider; its spans."""
    import importlib

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.fake_llm import FakeLLM

    sdk, module, cls, _ = LIBRARIES[name]
    exporter = InMemorySpanExporter()
    if module == "logfire":  # its own provider, our exporter beside it
        import logfire

        logfire.configure(
            send_to_logfire=False,
            console=False,
            additional_span_processors=[SimpleSpanProcessor(exporter)],
        )
        provider = trace.get_tracer_provider()
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        getattr(importlib.import_module(module), cls)().instrument(tracer_provider=provider)
    body = _bodies()[sdk]
    with FakeLLM() as fake:
        if sdk == "openai":
            import openai

            client = openai.OpenAI(base_url=fake.url + "/v1", api_key="k")
        else:
            import anthropic

            client = anthropic.Anthropic(base_url=fake.url, api_key="k")
        if module == "logfire":
            getattr(importlib.import_module(module), cls)(client)
        create = client.chat.completions if sdk == "openai" else client.messages
        create.create(**body)
    provider.force_flush()
    spans = [
        {"name": s.name, "attributes": {k: _value(v) for k, v in s.attributes.items()}}
        for s in exporter.get_finished_spans()
    ]
    return {"library": name, "sdk": sdk, "body": body, "spans": spans}


CONVERSATIONS = OUT / "conversations"  # six turns per library (test_library_conversations.py)
STREAMED = (2, 4)  # turns sent with stream=True
SESSION = "conv-1"
STAMP = "Now: 2026-11-30T16:00:00Z. "  # in the system prompt; turn 6 renews it
# library: (sdk, venv it runs in (see the module docstring), extra environment)
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
    """Install library ``name`` exporting to ``otlp``: (wrap a client, a session context,
    flush)."""
    import contextlib
    import importlib

    from opentelemetry import trace

    session = contextlib.nullcontext
    wrap = lambda client: client  # noqa: E731
    if name.startswith("openllmetry"):
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
    else:  # OpenInference, openai-v2: the SDK's providers, the library's instrumentor
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
        if name.startswith("openinference"):
            from openinference.instrumentation import using_session

            module = importlib.import_module("openinference.instrumentation." + sdk)
            session = lambda: using_session(SESSION)  # noqa: E731
        else:
            module = importlib.import_module("opentelemetry.instrumentation.openai_v2")
        module = getattr(module, "OpenAIInstrumentor", None) or module.AnthropicInstrumentor
        module().instrument(tracer_provider=provider, logger_provider=logs)
    return wrap, session


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


def converse(name: str, plan_path: str) -> dict:
    """Child process: library ``name`` around its SDK through the planned turns; what it
    exported (base64 bodies) and the versions that ran."""
    import base64
    from importlib import metadata

    from opentelemetry import trace
    from opentelemetry._logs import get_logger_provider

    from tests.fake_llm import FakeLLM

    sdk = CONVERSING[name][0]
    turns = json.loads(Path(plan_path).read_text())
    with _Capture() as capture, FakeLLM(usages=[t["usage"] for t in turns]) as fake:
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


def _otlp_json(path: str, data: bytes) -> dict:
    """One captured protobuf export as OTLP/JSON (hex ids), the form fixtures keep."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    from tests.otlp_build import to_json

    traces = path == "/v1/traces"
    kind = trace_service_pb2.ExportTraceServiceRequest if traces else None
    message = (kind or logs_service_pb2.ExportLogsServiceRequest)()
    message.ParseFromString(data)
    return to_json(message)


def _child(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    return subprocess.run(command, env=environ, capture_output=True, text=True, check=False)


def record_conversations(venvs: dict[str, str], names: list[str]) -> None:
    """Parent (the project's venv): plan, run each library in its venv, write fixtures."""
    import base64
    import tempfile

    CONVERSATIONS.mkdir(parents=True, exist_ok=True)
    for name in names or list(CONVERSING):
        sdk, venv, env = CONVERSING[name]
        turns = plan(sdk)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
            handle.write(json.dumps(turns))
            handle.flush()
            run = _child([venvs[venv], __file__, "converse", name, handle.name], env)
        if run.returncode:
            print(f"{name}: failed\n{run.stderr[-3000:]}", file=sys.stderr)
            continue
        found = json.loads(run.stdout.strip().splitlines()[-1])
        exports = [
            {"path": e["path"], "otlp": _otlp_json(e["path"], base64.b64decode(e["data"]))}
            for e in found["exports"]
            if e["path"] in ("/v1/traces", "/v1/logs")  # metrics: not replayed
        ]
        fixture = {"library": name, "sdk": sdk, "environment": env,
                   "versions": found["versions"], "turns": turns, "exports": exports}  # fmt: skip
        (CONVERSATIONS / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")
        print(f"{name}: {len(exports)} exports", {e["path"] for e in exports})


def main() -> None:
    if sys.argv[1:2] == ["conversations"]:  # conversations main=PY openlit=PY ... [names]
        venvs = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
        record_conversations(venvs, [a for a in sys.argv[2:] if "=" not in a])
        return
    if sys.argv[1:2] == ["converse"]:
        print(json.dumps(converse(sys.argv[2], sys.argv[3])))
        return
    if len(sys.argv) == 2:
        print(json.dumps(record(sys.argv[1])))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (_, _, _, env) in LIBRARIES.items():
        run = _child([sys.executable, __file__, name], env)
        if run.returncode:
            print(f"{name}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        found = json.loads(run.stdout.strip().splitlines()[-1])
        (OUT / f"{name}.json").write_text(json.dumps(found, indent=1) + "\n")
        print(f"{name}: {len(found['spans'])} spans")


if __name__ == "__main__":
    main()
