"""A fake LLM provider on a loopback port: OpenAI Chat/Responses and Anthropic Messages.

Answers like the real APIs (JSON, or server-sent events when ``stream`` is
true) with fixed usage, so the real `openai` and `anthropic` SDKs can be
driven end to end without a network. ``fake.httpd.cached``, when set, is the
cached (cache read) token count every answer reports instead.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_USAGE = {
    "prompt_tokens": 2000,
    "completion_tokens": 12,
    "total_tokens": 2012,
    "prompt_tokens_details": {"cached_tokens": 1536},
}
ANTHROPIC_USAGE = {
    "input_tokens": 20,
    "cache_read_input_tokens": 3000,
    "cache_creation_input_tokens": 100,
    "output_tokens": 12,
}


def _chat(model: str, usage: dict = OPENAI_USAGE) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello there."},
            }
        ],
        "usage": usage,
    }


def _chat_chunks(model: str, with_usage: bool, usage: dict = OPENAI_USAGE) -> list[dict]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [
        dict(
            base,
            choices=[
                {"index": 0, "delta": {"role": "assistant", "content": w}, "finish_reason": None}
            ],
        )
        for w in ("Hello", " there.")
    ]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if with_usage:
        chunks.append(dict(base, choices=[], usage=usage))
    return chunks


def _response(model: str) -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": model,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": 2000,
            "output_tokens": 12,
            "total_tokens": 2012,
            "input_tokens_details": {"cached_tokens": 1792},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def _response_events(model: str) -> list[dict]:
    done = _response(model)
    created = dict(done, status="in_progress", output=[], usage=None)
    item = done["output"][0]
    part = item["content"][0]
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": created},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": dict(item, status="in_progress", content=[]),
        },
        {"type": "response.content_part.added", **where, "part": dict(part, text="")},
        {"type": "response.output_text.delta", **where, "delta": "Hello", "logprobs": []},
        {"type": "response.output_text.delta", **where, "delta": " there.", "logprobs": []},
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [dict(e, sequence_number=n) for n, e in enumerate(events)]


def _message(model: str, usage: dict = ANTHROPIC_USAGE) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hello there."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _message_events(model: str, usage: dict = ANTHROPIC_USAGE) -> list[dict]:
    start = dict(
        _message(model, usage), content=[], stop_reason=None, usage=dict(usage, output_tokens=1)
    )
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello there."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


_CACHED_KEYS = ("cached_tokens", "cache_read_input_tokens")


def _with_cached(payload: object, cached: int | None) -> object:
    """``payload`` with every cached-token count set to ``cached`` (None: as it is). The
    prompt keeps its size: OpenAI counts cached tokens inside the prompt tokens; Anthropic
    writes what it did not read (``cache_creation_input_tokens``)."""
    if cached is None:
        return payload
    if isinstance(payload, dict):
        out = {
            k: cached if k in _CACHED_KEYS else _with_cached(v, cached) for k, v in payload.items()
        }
        if "cache_read_input_tokens" in payload and "cache_creation_input_tokens" in payload:
            unread = payload["cache_read_input_tokens"] - cached
            out["cache_creation_input_tokens"] = payload["cache_creation_input_tokens"] + unread
        return out
    if isinstance(payload, list):
        return [_with_cached(v, cached) for v in payload]
    return payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body leave in one write (no delayed-ACK stalls)

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.server.delay_s:
            time.sleep(self.server.delay_s)  # a provider's time to answer
        model = body.get("model", "m")
        if "/fail/" in self.path:
            return self._json(500, {"error": {"message": "boom"}})
        streaming = bool(body.get("stream"))
        planned = self.server.usages[len(self.server.requests) - 1 :][:1]  # this call's, if any
        if self.path.endswith("/chat/completions"):
            use = planned[0] if planned else OPENAI_USAGE
            if streaming:
                usage = (body.get("stream_options") or {}).get("include_usage", False)
                return self._sse([(None, c) for c in _chat_chunks(model, usage, use)], True)
            return self._json(200, _chat(model, use))
        if self.path.endswith("/responses"):
            if streaming:
                return self._sse([(e["type"], e) for e in _response_events(model)], False)
            return self._json(200, _response(model))
        if self.path.endswith("/messages"):
            use = planned[0] if planned else ANTHROPIC_USAGE
            if streaming:
                return self._sse([(e["type"], e) for e in _message_events(model, use)], False)
            return self._json(200, _message(model, use))
        self._json(404, {"error": {"message": "unknown path"}})

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(_with_cached(payload, self.server.cached)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str | None, dict]], done_marker: bool) -> None:
        parts = []
        for name, payload in events:
            head = f"event: {name}\n" if name else ""
            parts.append(f"{head}data: {json.dumps(_with_cached(payload, self.server.cached))}\n\n")
        if done_marker:
            parts.append("data: [DONE]\n\n")
        data = "".join(parts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeLLM:
    """Start with ``with FakeLLM() as fake:``; ``fake.url`` is its base URL.

    ``delay_ms`` makes every answer take that long, as a real provider's would.
    ``usages``: the usage object of each answer in turn (the n-th request gets the n-th;
    past the list, and without one, the fixed usage above).
    """

    def __init__(self, delay_ms: float = 0, usages: list[dict] | None = None) -> None:
        self.delay_ms = delay_ms
        self.usages = list(usages or [])

    def __enter__(self) -> FakeLLM:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []
        self.httpd.delay_s = self.delay_ms / 1000
        self.httpd.cached = None
        self.httpd.usages = self.usages
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    """Serve in this process until killed: ``python -m tests.fake_llm [DELAY_MS]``; prints
    the base URL on the first line."""
    import sys

    with FakeLLM(float(sys.argv[1]) if len(sys.argv) > 1 else 0) as fake:
        print(fake.url, flush=True)
        fake.thread.join()


if __name__ == "__main__":
    main()
