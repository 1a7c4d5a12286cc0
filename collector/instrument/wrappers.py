"""Drop-in instrumentation for the official `openai` and `anthropic` clients.

    client = instrument_openai(openai.OpenAI(), inst, route="/chat")

Patches ``chat.completions.create``, ``responses.create``, ``messages.create``
and ``messages.stream`` on that client (sync or async), streaming or not (the
openai ``chat.completions.stream()`` and ``responses.stream()`` helpers send through
the patched ``create``). TTFT is
the first streamed chunk; usage comes from the response, the final chunk
(OpenAI with ``stream_options={"include_usage": True}``) or the message
events (Anthropic). The caller gets back what the client returned: responses
unchanged, streams behind a transparent proxy that forwards everything.
What the SDK raises reaches the caller unchanged; nothing of ours does (a
failure of ours is logged and counted in the instrumentation's ``failures()``).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import weakref
from collections.abc import Callable
from typing import Any

from collector.instrument.call import Call, as_dict
from collector.instrument.tracing import Instrumentation

OnEvent = Callable[[Call, Any], None]
_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "cachediag_call", default=None
)


SEND_GRACE_S = 0.002  # time the request takes to leave before the fingerprint may start


def _on_request(_request: Any) -> None:
    """httpx hook: the request is leaving, so the fingerprint can run while it waits."""
    call = _CURRENT.get()
    if call is not None:
        call.start_fingerprint(SEND_GRACE_S)


async def _on_request_async(request: Any) -> None:
    _on_request(request)


def _hook_transport(client: Any) -> None:
    """Add the request hook to the SDK's httpx client, when it exposes one; without it
    the fingerprint starts when the call ends instead."""
    http = getattr(client, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, dict):
        return
    hook = (
        _on_request_async
        if inspect.iscoroutinefunction(getattr(http, "send", None))
        else _on_request
    )
    with contextlib.suppress(Exception):
        http.event_hooks = {**hooks, "request": [*hooks.get("request", []), hook]}


def _openai_chat_event(call: Call, chunk: Any) -> None:
    call.first_token()
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        call.set_response({"model": getattr(chunk, "model", None), "usage": usage})


def _openai_responses_event(call: Call, event: Any) -> None:
    kind = getattr(event, "type", "")
    if kind.endswith(".delta"):
        call.first_token()
    if kind == "response.completed":
        call.set_response(getattr(event, "response", None))


def _anthropic_event(call: Call, event: Any) -> None:
    kind = getattr(event, "type", "")
    if kind == "message_start":
        message = as_dict(getattr(event, "message", None)) or {}
        call.set_response({"model": message.get("model"), "usage": message.get("usage")})
    elif kind in ("content_block_start", "content_block_delta"):
        call.first_token()
    elif kind == "message_delta" and getattr(event, "usage", None) is not None:
        call.set_usage(event.usage)


class _Stream:
    """Iterates the real stream, watching events; ends the span when done or dropped."""

    def __init__(self, stream: Any, call: Call, on_event: OnEvent) -> None:
        self._stream, self._call, self._on_event = stream, call, on_event
        self._finalizer = weakref.finalize(self, call.end)

    def _watch(self, item: Any) -> None:
        self._call.safely(lambda: self._on_event(self._call, item))

    def __iter__(self):
        try:
            for item in self._stream:
                self._watch(item)
                yield item
        except BaseException as error:
            self._call.set_error(error)
            raise
        finally:
            self._finalizer()

    def __next__(self) -> Any:
        try:
            item = next(self._stream)
        except StopIteration:
            self._finalizer()
            raise
        except BaseException as error:
            self._call.set_error(error)
            self._finalizer()
            raise
        self._watch(item)
        return item

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._finalizer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncStream(_Stream):
    async def __aiter__(self):
        try:
            async for item in self._stream:
                self._watch(item)
                yield item
        except BaseException as error:
            self._call.set_error(error)
            raise
        finally:
            self._finalizer()

    async def __anext__(self) -> Any:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._finalizer()
            raise
        except BaseException as error:
            self._call.set_error(error)
            self._finalizer()
            raise
        self._watch(item)
        return item

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:  # type: ignore[override]
        try:
            await self._stream.close()
        finally:
            self._finalizer()


class _StreamManager:
    """What ``messages.stream()`` returns, recorded: the call starts as the stream opens,
    and the SDK's raw event stream under the helper is watched, so the call is seen
    whichever way the caller reads it (iteration, ``text_stream``, ``until_done``,
    ``get_final_message``) and ends when the stream is done or the block exits."""

    def __init__(self, manager: Any, start: Callable[[], Call], on_event: OnEvent) -> None:
        self._manager, self._start, self._on_event = manager, start, on_event
        self._call: Call | None = None

    def _opened(self, stream: Any, proxy: type[_Stream]) -> Any:
        call = self._call
        assert call is not None

        def watch() -> None:
            stream._raw_stream = proxy(stream._raw_stream, call, self._on_event)

        call.safely(watch)  # without it the call still ends on exit, with no usage
        return stream

    def _failed(self, error: BaseException) -> None:
        assert self._call is not None
        self._call.set_error(error)
        self._call.end()

    def __enter__(self) -> Any:
        self._call = self._start()
        token = _CURRENT.set(self._call)
        try:
            stream = self._manager.__enter__()
        except BaseException as error:
            self._failed(error)
            raise
        finally:
            _CURRENT.reset(token)
        return self._opened(stream, _Stream)

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._manager.__exit__(*exc)
        finally:
            if self._call is not None:
                self._call.end()

    async def __aenter__(self) -> Any:
        self._call = self._start()
        token = _CURRENT.set(self._call)
        try:
            stream = await self._manager.__aenter__()
        except BaseException as error:
            self._failed(error)
            raise
        finally:
            _CURRENT.reset(token)
        return self._opened(stream, _AsyncStream)

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._manager.__aexit__(*exc)
        finally:
            if self._call is not None:
                self._call.end()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def _wrap_manager(
    inst: Instrumentation,
    original: Callable,
    provider: str,
    operation: str,
    on_event: OnEvent,
    extra: dict[str, Any],
) -> Callable:
    """``original`` returns a stream manager (``messages.stream``): recorded from the
    moment it is entered (nothing is sent before)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        manager = original(*args, **kwargs)

        def start() -> Call:
            return inst.start_call(kwargs, provider, operation, extra, defer=True)

        return _StreamManager(manager, start, on_event)

    return wrapper


def _settle(call: Call, result: Any, streaming: bool, on_event: OnEvent, is_async: bool) -> Any:
    """What the caller gets: the result, or the stream behind a watching proxy."""
    if streaming:
        return (_AsyncStream if is_async else _Stream)(result, call, on_event)
    call.set_response(result)
    call.end()
    return result


def _wrap(
    inst: Instrumentation,
    original: Callable,
    provider: str,
    operation: str,
    on_event: OnEvent,
    extra: dict[str, Any],
) -> Callable:
    """``original`` recorded: sync, or async (the SDKs' async methods return awaitables)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = inst.start_call(kwargs, provider, operation, extra, defer=True)
        streaming = bool(kwargs.get("stream"))  # as the SDK reads it
        token = _CURRENT.set(call)
        try:
            result = original(*args, **kwargs)
        except BaseException as error:
            call.set_error(error)
            call.end()
            raise
        finally:
            _CURRENT.reset(token)
        if not inspect.isawaitable(result):
            return _settle(call, result, streaming, on_event, False)

        async def settle_later() -> Any:
            token = _CURRENT.set(call)
            try:
                value = await result
            except BaseException as error:
                call.set_error(error)
                call.end()
                raise
            finally:
                _CURRENT.reset(token)
            return _settle(call, value, streaming, on_event, True)

        return settle_later()

    return wrapper


def _extra(
    route: str | None, replica: str | None, prompt_version: str | None, schema_version: str | None
) -> dict[str, Any]:
    from collector import attributes as A

    return {
        A.ROUTE.name: route,
        A.REPLICA.name: replica,
        A.PROMPT_VERSION.name: prompt_version,
        A.SCHEMA_VERSION.name: schema_version,
    }


def instrument_openai(
    client: Any,
    inst: Instrumentation,
    *,
    provider: str = "openai",
    route: str | None = None,
    replica: str | None = None,
    prompt_version: str | None = None,
    schema_version: str | None = None,
) -> Any:
    """Record every Chat Completions and Responses call of an (Async)OpenAI client."""
    extra = _extra(route, replica, prompt_version, schema_version)
    _hook_transport(client)
    chat = client.chat.completions
    chat.create = _wrap(inst, chat.create, provider, "chat", _openai_chat_event, extra)
    responses = getattr(client, "responses", None)
    if responses is not None:
        responses.create = _wrap(
            inst, responses.create, provider, "chat", _openai_responses_event, extra
        )
    return client


def instrument_anthropic(
    client: Any,
    inst: Instrumentation,
    *,
    route: str | None = None,
    replica: str | None = None,
    prompt_version: str | None = None,
    schema_version: str | None = None,
) -> Any:
    """Record every Messages call of an (Async)Anthropic client: ``messages.create``
    (streamed or not) and the ``messages.stream()`` helper."""
    extra = _extra(route, replica, prompt_version, schema_version)
    _hook_transport(client)
    messages = client.messages
    messages.create = _wrap(inst, messages.create, "anthropic", "chat", _anthropic_event, extra)
    if hasattr(messages, "stream"):
        messages.stream = _wrap_manager(
            inst, messages.stream, "anthropic", "chat", _anthropic_event, extra
        )
    return client
