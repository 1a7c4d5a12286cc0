"""From the threaded HTTP receiver to the ASGI app: each /api request, read in full by
its connection's thread, runs on one event loop the server keeps in a thread of its
own (anyio's blocking portal), and its whole answer comes back to that thread.

The OTLP receiver stays hand-written and never comes here: only /api requests pay for
the framework.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import anyio
from anyio.from_thread import start_blocking_portal

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class Bridge:
    """An ASGI app served to threads: ``call`` blocks until the app has answered.
    Started once per server; ``close`` stops the event loop once every call returned."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._stack = contextlib.ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal())

    def call(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        client: tuple[str, int] | None = None,
    ) -> Answer:
        """One request through the app; an error the app did not answer is raised here."""
        return self._portal.call(self._run, _scope(method, target, headers, client), body)

    async def _run(self, scope: dict, body: bytes) -> Answer:
        status, head, chunks = 500, [], []
        answered = anyio.Event()
        unread = [body]

        async def receive() -> dict:
            if unread:
                return {"type": "http.request", "body": unread.pop(), "more_body": False}
            await answered.wait()  # the client "leaves" only once the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status, head
            if message["type"] == "http.response.start":
                status, head = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    answered.set()

        try:
            await self._app(scope, receive, send)
        finally:
            answered.set()
        return status, head, b"".join(chunks)

    def close(self) -> None:
        self._stack.close()


def _scope(
    method: str, target: str, headers: Iterable[tuple[str, str]], client: Any
) -> dict[str, Any]:
    """The ASGI HTTP scope of a request line and its headers (http.server decoded them
    as Latin-1, so they encode back byte for byte)."""
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
        "server": None,
        "state": {},
    }
