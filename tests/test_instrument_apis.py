"""The anthropic ``messages.stream()`` helper and the OpenAI Responses shape, with the
real SDKs against the fake provider."""

from __future__ import annotations

import asyncio
import copy
import json

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from collector import instrument
from collector.instrument.wrappers import instrument_anthropic
from tests.cases import base_spec, build
from tests.fake_llm import FakeLLM
from tests.servers import Server
from tests.test_instrument import (
    CHAT,
    MESSAGES,
    RESPONSES,
    _anthropic,
    _check_common,
    _finished,
    _one,
    _openai,
)
from tests.test_instrument import spans as spans  # noqa: F401 (the fixture, shared)


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


@pytest.mark.parametrize("is_async", [False, True])
def test_anthropic_stream_helper(spans, fake, monkeypatch, is_async):
    """``messages.stream()`` is a context manager that sends nothing until entered; read
    through ``text_stream`` and ``get_final_message`` it is one call with usage and TTFT."""
    inst, exporter = spans
    monkeypatch.setattr(fake.httpd, "delay_s", 0.05)  # the first event comes 50 ms late
    client = _anthropic(fake, inst, anthropic.AsyncAnthropic if is_async else anthropic.Anthropic)

    async def run_async():
        async with client.messages.stream(**MESSAGES) as stream:
            text = "".join([t async for t in stream.text_stream])
            return text, await stream.get_final_message()

    if is_async:
        text, final = asyncio.run(run_async())
    else:
        manager = client.messages.stream(**MESSAGES)
        assert not _finished(inst, exporter)  # nothing sent, nothing recorded yet
        with manager as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == "Hello there." and final.usage.cache_read_input_tokens == 3000
    span, attrs = _one(inst, exporter)
    _check_common(span, attrs, "claude-sonnet-4-5")
    assert (
        attrs["gen_ai.usage.input_tokens"],
        attrs["gen_ai.usage.cache_read.input_tokens"],
        attrs["gen_ai.usage.cache_creation.input_tokens"],
        attrs["gen_ai.usage.output_tokens"],
    ) == (3120, 3000, 100, 12)
    assert 50 <= attrs["cachediag.ttft_ms"] <= (span.end_time - span.start_time) / 1e6
    assert attrs["cachediag.prefix_hash"] == inst.attributes(MESSAGES)["cachediag.prefix_hash"]


def test_anthropic_stream_helper_left_early_or_failing(spans, fake):
    inst, exporter = spans
    client = _anthropic(fake, inst)
    with client.messages.stream(**MESSAGES) as stream:
        first = next(iter(stream))
    assert first.type == "message_start"
    failing = anthropic.Anthropic(api_key="k", base_url=fake.url + "/fail", max_retries=0)
    instrument_anthropic(failing, inst)
    with pytest.raises(anthropic.InternalServerError), failing.messages.stream(**MESSAGES):
        pass
    early, failed = _finished(inst, exporter)  # each ended once: on exit, on the error
    assert early.attributes["gen_ai.usage.cache_read.input_tokens"] == 3000
    assert "gen_ai.usage.output_tokens" in early.attributes
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "InternalServerError"


def test_responses_fingerprint_reads_instructions_and_input(spans, fake):
    """Tools, then ``instructions`` (the system part, in the prefix hash), then ``input``
    items (not in it): a turn appended keeps the prefix, a timestamp in it breaks it."""
    inst, exporter = spans
    client = _openai(fake, inst, openai.OpenAI)
    client.responses.create(**RESPONSES)
    list(client.responses.create(**RESPONSES, stream=True))
    first, second = _finished(inst, exporter)
    paths = [s[0] for s in json.loads(first.attributes["cachediag.segments"])]
    assert paths[:5] == ["tools[0]", "tools[1]", "tools[2]", "instructions", "input[0]"]
    prefix = first.attributes["cachediag.prefix_hash"]
    assert prefix == second.attributes["cachediag.prefix_hash"]
    later = {**RESPONSES, "input": [*RESPONSES["input"], {"role": "user", "content": "Thanks"}]}
    assert inst.attributes(later)["cachediag.prefix_hash"] == prefix
    stamped = {**RESPONSES, "instructions": RESPONSES["instructions"] + " Now: 10:07."}
    assert inst.attributes(stamped)["cachediag.prefix_hash"] != prefix


def test_openai_stream_helpers_are_recorded(spans, fake):
    """``chat.completions.stream()`` and ``responses.stream()`` send through the wrapped
    ``create``: one call each, with usage, TTFT and fingerprint."""
    inst, exporter = spans
    client = _openai(fake, inst, openai.OpenAI)
    with client.chat.completions.stream(**CHAT, stream_options={"include_usage": True}) as stream:
        assert stream.get_final_completion().choices[0].message.content == "Hello there."
    with client.responses.stream(**RESPONSES) as stream:
        assert stream.get_final_response().output_text == "Hello there."
    chat, responses = _finished(inst, exporter)
    for span, cached in ((chat, 1536), (responses, 1792)):
        _check_common(span, dict(span.attributes), "gpt-4o")
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == cached
        assert "cachediag.ttft_ms" in span.attributes


STAMPS = {
    "a line of its own": lambda text: text + "\nNow: 2026-11-30T10:07:00Z",
    "mid-sentence": lambda text: text.replace(
        "of Acme Outfitters.", "of Acme Outfitters (session opened 2026-11-30T10:07:00Z).", 1
    ),
}


@pytest.mark.parametrize(
    "stamp, cause", [("a line of its own", "dynamic_value"), ("mid-sentence", "system_changed")]
)
def test_a_prefix_break_without_a_session_key_is_a_miss(tmp_path, fake, monkeypatch, stamp, cause):
    """Two turns of one conversation, no session key; the second writes a timestamp into
    the system prompt and the provider reports 0 cached: a miss of the first turn's
    prefix, never no_miss."""
    spec = base_spec()
    later = copy.deepcopy(spec)
    later["system"] = STAMPS[stamp](later["system"])
    later["turns"].append({"role": "assistant", "text": "Yes, within 30 days."})
    later["turns"].append({"role": "user", "text": "How?"})
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    inst = instrument.setup(service_name="nokey", endpoint=server.url)
    try:
        client = _openai(fake, inst, openai.OpenAI)
        client.chat.completions.create(**build("openai_chat", spec))
        assert inst.flush()
        monkeypatch.setattr(fake.httpd, "cached", 0)
        client.chat.completions.create(**build("openai_chat", later))
        assert inst.flush()
        server.api("stats?wait=1")
        second, first = server.api("requests?service=nokey")["data"]
        assert (first["session_key"], second["cached_tokens"]) == (None, 0)
        found = json.loads(server.api(f"requests/{second['id']}")["explanation"])
        assert (found["cause"], found["predecessor_id"]) == (cause, first["id"])
        assert found["path"] == "messages[0].content" and found["missed_tokens"] > 1024
        assert server.api(f"requests/{second['id']}/diff")["predecessor_id"] == first["id"]
    finally:
        inst.shutdown()
        server.stop()
