"""Instrumentation with the real openai and anthropic SDKs against a fake provider."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from collector import instrument
from collector.instrument.wrappers import instrument_anthropic, instrument_openai
from tests.cases import base_spec, build
from tests.fake_llm import FakeLLM
from tests.servers import Server, free_port

CHAT = build("openai_chat", base_spec())
RESPONSES = build("openai_responses", base_spec())
MESSAGES = build("anthropic", base_spec())


@pytest.fixture()
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = instrument.setup(tracer_provider=provider)
    yield inst, exporter
    provider.shutdown()


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


def _openai(fake, inst, cls=openai.OpenAI):
    client = cls(api_key="k", base_url=fake.url + "/v1", max_retries=0)
    return instrument_openai(client, inst, route="/chat", replica="r1", prompt_version="v3")


def _anthropic(fake, inst, cls=anthropic.Anthropic):
    client = cls(api_key="k", base_url=fake.url, max_retries=0)
    return instrument_anthropic(client, inst, route="/support")


def _finished(inst, exporter):
    """Spans once every background fingerprint is done (no waiting on the clock)."""
    inst.flush()
    return exporter.get_finished_spans()


def _one(inst, exporter):
    (span,) = _finished(inst, exporter)
    return span, dict(span.attributes)


def _check_common(span, attrs, model, tools=3):
    assert span.name == f"chat {model}" and span.kind == SpanKind.CLIENT
    assert attrs["gen_ai.request.model"] == model and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["cachediag.tools_count"] == tools and len(attrs["cachediag.prefix_hash"]) == 16
    assert json.loads(attrs["cachediag.segments"])[0][0] == "tools[0]"
    assert attrs["cachediag.total_tokens"] > 0 and "cachediag.content" not in attrs


def test_openai_chat_sync(spans, fake):
    inst, exporter = spans
    client = _openai(fake, inst)
    response = client.chat.completions.create(**CHAT)
    assert response.choices[0].message.content == "Hello there."
    span, attrs = _one(inst, exporter)
    _check_common(span, attrs, "gpt-4o")
    assert (
        attrs["gen_ai.usage.input_tokens"],
        attrs["gen_ai.usage.cache_read.input_tokens"],
        attrs["gen_ai.usage.output_tokens"],
    ) == (2000, 1536, 12)
    assert (attrs["cachediag.route"], attrs["cachediag.replica"]) == ("/chat", "r1")
    assert attrs["gen_ai.provider.name"] == "openai"


def test_openai_chat_stream_returns_the_same_chunks(spans, fake, monkeypatch):
    inst, exporter = spans
    monkeypatch.setattr(fake.httpd, "delay_s", 0.05)  # the first chunk comes 50 ms late
    plain = openai.OpenAI(api_key="k", base_url=fake.url + "/v1", max_retries=0)
    want = [
        c.model_dump()
        for c in plain.chat.completions.create(
            **CHAT, stream=True, stream_options={"include_usage": True}
        )
    ]
    got = [
        c.model_dump()
        for c in _openai(fake, inst).chat.completions.create(
            **CHAT, stream=True, stream_options={"include_usage": True}
        )
    ]
    assert got == want
    span, attrs = _one(inst, exporter)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1536
    assert 50 <= attrs["cachediag.ttft_ms"] <= (span.end_time - span.start_time) / 1e6


def test_openai_stream_used_as_context_manager_and_closed_early(spans, fake):
    inst, exporter = spans
    with _openai(fake, inst).chat.completions.create(**CHAT, stream=True) as stream:
        first = next(stream)
    assert first.choices[0].delta.content == "Hello"
    span, attrs = _one(inst, exporter)  # ended on close, with TTFT and no usage
    assert "cachediag.ttft_ms" in attrs and "gen_ai.usage.input_tokens" not in attrs


def test_openai_async_chat_stream_and_not(spans, fake):
    inst, exporter = spans
    client = _openai(fake, inst, openai.AsyncOpenAI)

    async def run():
        response = await client.chat.completions.create(**CHAT)
        stream = await client.chat.completions.create(
            **CHAT, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        return response, chunks

    response, chunks = asyncio.run(run())
    assert response.usage.prompt_tokens == 2000 and len(chunks) == 4
    finished = _finished(inst, exporter)
    assert len(finished) == 2
    assert all(s.attributes["gen_ai.usage.input_tokens"] == 2000 for s in finished)
    assert "cachediag.ttft_ms" in finished[1].attributes


def test_openai_responses_sync_and_stream(spans, fake):
    inst, exporter = spans
    client = _openai(fake, inst)
    assert client.responses.create(**RESPONSES).output_text == "Hello there."
    events = list(client.responses.create(**RESPONSES, stream=True))
    assert events[-1].type == "response.completed"
    first, second = _finished(inst, exporter)
    for span in (first, second):
        _check_common(span, dict(span.attributes), "gpt-4o")
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 1792
        assert span.attributes["gen_ai.usage.input_tokens"] == 2000
    assert "cachediag.ttft_ms" in second.attributes


@pytest.mark.parametrize("is_async", [False, True])
def test_anthropic_messages(spans, fake, is_async):
    inst, exporter = spans
    client = _anthropic(fake, inst, anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)

    async def run_async():
        message = await client.messages.create(**MESSAGES)
        stream = await client.messages.create(**MESSAGES, stream=True)
        return message, [e async for e in stream]

    if is_async:
        message, events = asyncio.run(run_async())
    else:
        message = client.messages.create(**MESSAGES)
        events = list(client.messages.create(**MESSAGES, stream=True))
    assert message.content[0].text == "Hello there." and events[-1].type == "message_stop"
    for span in _finished(inst, exporter):
        attrs = dict(span.attributes)
        _check_common(span, attrs, "claude-sonnet-4-5")
        assert attrs["gen_ai.provider.name"] == "anthropic"
        assert (
            attrs["gen_ai.usage.input_tokens"],
            attrs["gen_ai.usage.cache_read.input_tokens"],
            attrs["gen_ai.usage.cache_creation.input_tokens"],
        ) == (3120, 3000, 100)
        assert attrs["gen_ai.usage.output_tokens"] == 12
    assert "cachediag.ttft_ms" in _finished(inst, exporter)[1].attributes


def test_errors_are_recorded_and_raised_unchanged(spans, fake):
    inst, exporter = spans
    client = openai.OpenAI(api_key="k", base_url=fake.url + "/v1/fail", max_retries=0)
    instrument_openai(client, inst)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT)
    span, attrs = _one(inst, exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert attrs["error.type"] == "InternalServerError"


def test_instrumentation_failures_never_reach_the_caller(spans, fake, monkeypatch):
    inst, exporter = spans

    def broken(*args, **kwargs):
        raise RuntimeError("bug in cachediag")

    monkeypatch.setattr(inst, "attributes", broken)
    client = _openai(fake, inst)
    assert client.chat.completions.create(**CHAT).usage.prompt_tokens == 2000
    span, attrs = _one(inst, exporter)  # recorded, just without a fingerprint
    assert attrs["gen_ai.usage.input_tokens"] == 2000 and "cachediag.prefix_hash" not in attrs
    assert inst.failures() == 1
    weird = {"model": "gpt-4o", "messages": "not a list"}
    with inst.record_request(weird) as call:
        call.set_usage("not usage")
        call.first_token()


def test_content_capture_is_opt_in_and_redacted(fake, monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": "mail ann@example.com or call +1 (415) 555-0100, "
                "card 4111 1111 1111 1111",
            }
        ],
    }
    monkeypatch.setenv(instrument.OTEL_CAPTURE_ENV, "true")
    inst = instrument.setup(tracer_provider=provider)
    with inst.record_request(body):
        pass
    content = _finished(inst, exporter)[0].attributes["cachediag.content"]
    assert content == "<|user|>\nmail [email] or call [phone], card [card]\n"
    monkeypatch.delenv(instrument.OTEL_CAPTURE_ENV)
    plain = instrument.setup(tracer_provider=provider)
    with plain.record_request(body):
        pass
    assert "cachediag.content" not in _finished(plain, exporter)[1].attributes


def test_next_turn_fingerprints_only_the_new_tail(spans):
    inst, _ = spans
    spec = base_spec()
    with inst.record_request(build("openai_chat", spec)):
        pass
    inst.flush()
    misses = inst.memo.misses
    spec["turns"].append({"role": "assistant", "text": "Yes, within 30 days."})
    with inst.record_request(build("openai_chat", spec)):
        pass
    inst.flush()
    assert inst.memo.misses == misses + 1


def test_full_queue_drops_and_counts_without_blocking(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds of retrying per batch
    inst = instrument.setup(endpoint=f"http://127.0.0.1:{free_port()}", max_queue_size=4)
    try:
        for _ in range(200):  # nobody listens: the exporter retries, the queue fills
            with inst.record_request(CHAT, route="/x"):
                pass
        assert inst._worker.drain(60)  # every span ended (fingerprinted); the export queue not
        assert inst.dropped_spans() > 0
    finally:
        inst.shutdown()  # no exporter left retrying while other tests run


def test_end_to_end_into_a_running_server(tmp_path, fake):
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    inst = instrument.setup(service_name="e2e", endpoint=server.url)
    try:
        client = _openai(fake, inst)
        client.chat.completions.create(**CHAT, prompt_cache_key="user-7")
        assert inst.flush()
        (row,) = server.api("requests?service=e2e")["data"]
        assert (row["route"], row["replica"], row["session_key"]) == ("/chat", "r1", "user-7")
        assert (row["prompt_tokens"], row["cached_tokens"], row["tools_count"]) == (2000, 1536, 3)
        detail = server.api(f"requests/{row['id']}")
        assert len(detail["block_hashes"]) == detail["total_tokens"] // 64
    finally:
        inst.shutdown()
        server.stop()


def test_readme_snippet_works_when_pasted(tmp_path):
    """The README's "instrument an OpenAI service" lines, run as a user would."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippet = re.search(
        r"### Instrument an OpenAI service.*?```python\n(.*?)```", readme, re.S
    ).group(1)
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    try:
        with FakeLLM() as fake:
            env = dict(
                os.environ,
                OPENAI_BASE_URL=fake.url + "/v1",
                OPENAI_API_KEY="k",
                OTEL_EXPORTER_OTLP_ENDPOINT=server.url,
            )
            proc = subprocess.run(
                [sys.executable, "-c", snippet],
                env=env,
                timeout=120,
                capture_output=True,
                text=True,
                check=False,
            )
        assert proc.returncode == 0, proc.stderr
        (row,) = server.api("requests?service=support-bot")["data"]
        assert (row["route"], row["prompt_tokens"], row["cached_tokens"]) == ("/chat", 2000, 1536)
        assert row["prefix_hash"]
    finally:
        server.stop()


def _chat_client(create):
    """A stand-in for openai.OpenAI whose chat.completions.create is ``create``."""
    return SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))


def test_sdk_exceptions_reach_the_caller_unchanged_and_ours_never_do(spans):
    inst, exporter = spans
    down, cut = ConnectionError("provider down"), ConnectionResetError("stream cut")

    class Chunk:
        @property
        def usage(self):  # a chunk whose reading fails inside our event handler
            raise RuntimeError("odd chunk")

    def chunks():
        yield Chunk()
        raise cut

    def create(**kwargs):
        if not kwargs.get("stream"):
            raise down
        return chunks()

    client = instrument_openai(_chat_client(create), inst)
    with pytest.raises(ConnectionError) as caught:
        client.chat.completions.create(**{**CHAT, "stream": False})
    assert caught.value is down
    stream = client.chat.completions.create(**CHAT, stream=True)
    assert isinstance(next(stream), Chunk)  # our handler failed on it: counted, not raised
    with pytest.raises(ConnectionResetError) as caught:
        next(stream)
    assert caught.value is cut
    assert inst.failures() == 1
    assert [s.attributes["error.type"] for s in _finished(inst, exporter)] == [
        "ConnectionError",
        "ConnectionResetError",
    ]


def test_a_full_fingerprint_queue_drops_and_counts_on_the_callers_thread(monkeypatch):
    """The worker is held inside a fingerprint: two requests fill the queue, the next
    one is dropped at once (counted, its span ended without a fingerprint) and never
    fingerprinted on the caller's thread."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = instrument.setup(tracer_provider=provider, max_pending=2)
    started, release, threads = threading.Event(), threading.Event(), []
    real = inst.attributes

    def held(body, model=None):
        threads.append(threading.get_ident())
        started.set()
        release.wait(60)  # bounded: a caller that blocked would fail below, not hang
        return real(body, model)

    monkeypatch.setattr(inst, "attributes", held)
    with inst.record_request(CHAT, route="/first"):
        pass
    assert started.wait(60)
    for route in ("/queued", "/queued", "/dropped"):
        with inst.record_request(CHAT, route=route):
            pass
    assert inst.dropped_fingerprints() == 1
    (dropped,) = exporter.get_finished_spans()  # ended at once, with what is known
    assert dropped.attributes["cachediag.route"] == "/dropped"
    assert "cachediag.encoding" not in dropped.attributes
    release.set()
    assert inst.flush(60_000)
    done = exporter.get_finished_spans()[1:]
    assert [s.attributes["cachediag.route"] for s in done] == ["/first", "/queued", "/queued"]
    assert all(s.attributes["cachediag.tools_count"] == 3 for s in done)
    assert len(threads) == 3 and threading.get_ident() not in threads
    inst.shutdown(timeout_ms=10_000)
