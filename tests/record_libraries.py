"""Record what real instrumentation libraries export for one call, as fixtures that
tests/test_rebuild.py replays (their pins conflict with ours, so they run in a venv
of their own):

    python -m venv /tmp/libs && /tmp/libs/bin/pip install openai anthropic httpx \
        opentelemetry-sdk openinference-instrumentation-openai \
        openinference-instrumentation-anthropic opentelemetry-instrumentation-openai-v2 \
        opentelemetry-instrumentation-openai opentelemetry-instrumentation-anthropic logfire
    /tmp/libs/bin/python tests/record_libraries.py   # writes sample_data/libraries/*.json

A library that fails to run is named and skipped (recorded 2026-11-30: openai-v2
2.4b0 needed an opentelemetry-util-genai the registry did not have, and 2.3b0 a
wrapt it did not get, so it has no fixture).

Each library wraps the real SDK, which calls tests/fake_llm.py on a loopback port
with the golden conversation of tests/test_rebuild.py (chat_body, anthropic_body);
every finished span is kept: name and attributes, as the OTLP exporter sends them.
One library per child process (instrumentors patch the SDK process-wide).
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

LIBRARIES = {
    "openinference-openai": (
        "openai", "openinference.instrumentation.openai", "OpenAIInstrumentor", {},
    ),
    "openinference-anthropic": (
        "anthropic", "openinference.instrumentation.anthropic", "AnthropicInstrumentor", {},
    ),
    "otel-openai-v2": (
        "openai", "opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor",
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
         "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only"},
    ),
    "openllmetry-openai": (
        "openai", "opentelemetry.instrumentation.openai", "OpenAIInstrumentor",
        {"TRACELOOP_TRACE_CONTENT": "true"},
    ),
    "openllmetry-anthropic": (
        "anthropic", "opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor",
        {"TRACELOOP_TRACE_CONTENT": "true"},
    ),
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


def main() -> None:
    if len(sys.argv) == 2:
        print(json.dumps(record(sys.argv[1])))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (_, _, _, env) in LIBRARIES.items():
        run = subprocess.run(
            [sys.executable, __file__, name],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode:
            print(f"{name}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        found = json.loads(run.stdout.strip().splitlines()[-1])
        (OUT / f"{name}.json").write_text(json.dumps(found, indent=1) + "\n")
        print(f"{name}: {len(found['spans'])} spans")


if __name__ == "__main__":
    main()
