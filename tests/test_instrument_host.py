"""The instrumentation as a guest in the service's process: it changes nothing
process-wide, imports nothing heavy, and survives the service forking after setup()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import tiktoken.load
import tiktoken.registry
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from analysis import bpe, tokens
from collector import instrument
from tests.cases import base_spec, build
from tests.fake_llm import FakeLLM
from tests.servers import ROOT, Server, free_port

CHAT = build("openai_chat", base_spec())


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


def test_nothing_process_wide_is_changed(monkeypatch, tmp_path):
    """setup() and fingerprinting leave os.environ and tiktoken's reader alone, also
    while tiktoken loads an encoding (observed from inside its reader)."""
    writes, seen = [], []

    class Environ(dict):
        def __setitem__(self, key, value):
            writes.append(key)
            super().__setitem__(key, value)

        def __delitem__(self, key):
            writes.append(key)
            super().__delitem__(key)

    real = tiktoken.load.read_file

    def reader(path):
        seen.append(tiktoken.load.read_file is reader)
        return real(path)

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: the ranks are read
    monkeypatch.setattr(os, "environ", Environ(os.environ))
    monkeypatch.setattr(tiktoken.load, "read_file", reader)
    monkeypatch.setattr(tokens, "_resolved", {})
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(bpe, "available", lambda: False)  # the tiktoken part of the chain
    own = instrument.setup(endpoint=f"http://127.0.0.1:{free_port()}")
    own.shutdown(timeout_ms=10_000)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = instrument.setup(tracer_provider=provider)
    with inst.record_request(CHAT):
        pass
    assert inst.flush()
    (span,) = exporter.get_finished_spans()
    assert span.attributes["cachediag.encoding"] == tokens.FALLBACK_ENCODING
    assert seen == [True]  # the bundled ranks were read, through tiktoken's own reader
    assert writes == [] and tiktoken.load.read_file is reader


_HEAVY = ("numpy", "polars", "duckdb", "pyarrow")


def test_instrumentation_imports_nothing_heavy():
    """In a fresh interpreter: import, set up, fingerprint a request; none of the
    collector's heavy libraries is loaded."""
    script = f"""
import sys
from opentelemetry.sdk.trace import TracerProvider
from collector import instrument
from collector.instrument import wrappers
inst = instrument.setup(tracer_provider=TracerProvider())
with inst.record_request({CHAT!r}):
    pass
assert inst.flush(60_000) and inst.failures() == 0
print(sorted(m for m in {_HEAVY!r} if m in sys.modules))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


_FORKED = """
import os, signal, sys, time
import openai
from collector import instrument
from collector.instrument.wrappers import instrument_openai
from tests.cases import base_spec, build

server, fake = sys.argv[1:]
body = build("openai_chat", base_spec())
inst = instrument.setup(service_name="forked", endpoint=server)


def client(route):
    plain = openai.OpenAI(api_key="k", base_url=fake + "/v1", max_retries=0)
    return instrument_openai(plain, inst, route=route)


client("/parent").chat.completions.create(**body)
assert inst.flush(30_000)  # the parent fingerprinted and exported before forking
started = time.monotonic()
pid = os.fork()
if pid == 0:  # the child, as a gunicorn worker: calls, then a normal exit (atexit runs)
    signal.alarm(90)  # a child that hangs is killed (exit code -14), never left behind
    child = client("/child")
    for _ in range(3):
        child.chat.completions.create(**body)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), round(time.monotonic() - started, 2))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_after_setup_sends_its_spans_and_exits(tmp_path, fake):
    """As under gunicorn --preload: setup() and a call in the parent, then fork(); the
    child's calls are fingerprinted and reach a real server, and the child exits."""
    server = Server(tmp_path / "db.duckdb", "--workers", "0").start()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _FORKED, server.url, fake.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,  # generous: the child exits in about a second, or is killed at 90 s
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        code, seconds = proc.stdout.split()
        print(f"forked child exited with {code} after {seconds} s")
        assert code == "0"
        rows = server.api("requests?service=forked")["data"]
        assert sorted(r["route"] for r in rows) == ["/child", "/child", "/child", "/parent"]
        assert all(r["prefix_hash"] and r["tools_count"] == 3 for r in rows)
    finally:
        server.stop()
