"""Run real instrumentation libraries around the real SDKs against tests/fake_llm.py: live
into a real server (tests/test_libraries_live.py), or recorded as fixtures that tests replay
(libraries whose pins conflict with ours, each in a venv of its own; PyPI is enough):

    (the venvs: sample_data/libraries/README.md)
    /tmp/libs16/main/bin/python tests/record_libraries.py        # one call, spans only
    .venv/bin/python tests/record_libraries.py conversations main=/tmp/libs16/main/bin/python \
        openlit=/tmp/libs16/openlit/bin/python otelv2=/tmp/libs16/otelv2/bin/python [NAME...]

One call (sample_data/libraries/*.json, replayed by tests/test_rebuild.py): the golden
conversation of tests/test_rebuild.py; every finished span's name and attributes.
Conversations (sample_data/libraries/conversations/*.json, replayed into a real server by
tests/test_library_conversations.py): the six turns of tests/library_conversation.py, run by
each library in its venv, every export it sent kept as OTLP/JSON.
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

from tests.library_conversation import CONVERSING, SCRIPT, plan  # noqa: E402

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
            run = _child([venvs[venv], str(SCRIPT), name, handle.name], env)
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
