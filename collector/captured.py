"""At ingest: a record that carries other libraries' captured prompt content but no
fingerprint of ours gets one, rebuilt (``collector.rebuild``) and fingerprinted by
the instrumentation's own step (``collector.bodies``).

Content follows the server's rule, as for our own capture: the rendered prompt
is kept (``cachediag.content``) only when content is kept; the library's raw
content attributes never reach the stored attributes once they are rebuilt, nor
at all when only hashes are kept.
"""

from __future__ import annotations

from typing import Any

from analysis import fingerprint, prompt
from collector import attributes as A
from collector import rebuild
from collector.bodies import fingerprint_body

_PROVIDER = (A.PROVIDER.name, A.SYSTEM.name, "llm.provider", "llm.system")
_MODEL = (A.REQUEST_MODEL.name, "llm.request.model", "llm.request.model_name", "llm.model_name")
# Ingest runs in one process per decode worker, each with its memo: a conversation's next
# turn tokenizes only its new tail, as in the instrumentation (the memo is thread-safe).
_MEMO = fingerprint.TokenMemo()


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str) and value:
            return value
    return None


EVENTS = "gen_ai.<role>.message"  # REBUILT_FROM of a call rebuilt from its message events


def fingerprint_events(
    events: list[tuple[str, Any]], provider: str | None, model: str | None
) -> dict[str, Any] | None:
    """Our fingerprint attributes of a call whose prompt came as message events (in
    order: (event name, body)), with its rendering (``cachediag.content``: the events
    are kept only where content is); None when they do not make a request."""
    body = rebuild.from_message_events(events, provider, model)
    if body is None:
        return None
    try:
        parsed, found = fingerprint_body(body, memo=_MEMO)
    except (prompt.PromptError, RecursionError):
        return None
    if _markers_lost(body, EVENTS, rebuild.is_anthropic(provider, model)):
        del found[A.BREAKPOINTS.name]
    return {**found, A.REBUILT_FROM.name: EVENTS, A.CONTENT.name: parsed.text}


def _markers_lost(body: dict, source: str, anthropic: bool) -> bool:
    """Was ``body`` rebuilt for Anthropic from a message list that may have lost its
    cache_control markers (it holds none)?"""
    return anthropic and source not in rebuild.FULL_BODIES and "cache_control" not in str(body)


def fingerprint_captured(attrs: dict[str, Any], keep_content: bool = True) -> None:
    """Add our fingerprint attributes to ``attrs`` (in place) when they hold another
    library's captured input content and no fingerprint yet; drop the raw content
    once rebuilt, or whenever content is not kept. Never raises for bad content."""
    if A.BLOCK_HASHES.name in attrs:
        return
    if not rebuild.has_content(attrs):
        if not keep_content:  # partial content too: only hashes are kept
            for key in rebuild.content_keys(attrs):
                del attrs[key]
        return
    model, provider = _first(attrs, _MODEL), _first(attrs, _PROVIDER)
    found = rebuild.request_body(attrs, provider, model)
    fingerprinted = None
    if found is not None:
        body, source = found
        try:
            parsed, fingerprinted = fingerprint_body(body, memo=_MEMO)  # body's model
        except (prompt.PromptError, RecursionError):
            fingerprinted = None
    if fingerprinted is not None or not keep_content:
        for key in rebuild.content_keys(attrs):
            del attrs[key]
    if fingerprinted is None:
        return
    attrs.update(fingerprinted)
    if _markers_lost(body, source, rebuild.is_anthropic(provider, model)):
        del attrs[A.BREAKPOINTS.name]  # unknown, not none
    attrs[A.REBUILT_FROM.name] = source
    if source in rebuild.FULL_BODIES and isinstance(body.get("model"), str):
        attrs.setdefault(A.REQUEST_MODEL.name, body["model"])  # OpenInference names none
    if keep_content and A.CONTENT.name not in attrs:
        attrs[A.CONTENT.name] = parsed.text
