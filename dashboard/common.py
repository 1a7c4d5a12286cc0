"""What every page shares: the client, the group picker, a clear message on errors."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from dashboard.client import Client, ServerError, rows_frame

GROUPS = ("route", "model", "replica", "prompt_version", "schema_version", "service")
WINDOWS = ("5m", "15m", "1h", "1d")
WINDOW_SECONDS = {"5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
PAGE_ROWS = 50  # rows a list shows at once; the server pages the rest
FRESH_S = 10  # how long an answer is reused across reruns and sessions: data is per minute


def client() -> Client:
    if "client" not in st.session_state:
        st.session_state["client"] = Client()
    return st.session_state["client"]


@st.cache_data(ttl=FRESH_S, max_entries=256, show_spinner=False)
def _answer(base: str, headers: tuple, path: str, params: tuple) -> dict:
    """One GET's answer, kept FRESH_S seconds per server, token, endpoint and parameters
    (errors are not kept)."""
    reader = Client(base, token="")
    reader.headers = dict(headers)
    return reader.get(path, **dict(params))


def answer(path: str, **params) -> dict:
    """An endpoint's JSON answer (reused for FRESH_S seconds); ServerError on failure."""
    reader = client()
    kept = tuple(sorted((k, v) for k, v in params.items() if v not in (None, "")))
    return _answer(reader.base, tuple(sorted(reader.headers.items())), path, kept)


def prefetch(*calls: tuple[str, dict]) -> None:
    """Ask for several endpoints at once (``(path, params)`` each) so that the page's
    ``fetch``/``get`` calls that follow find their answers kept; errors surface there."""
    ctx = get_script_run_ctx()

    def one(call: tuple[str, dict]) -> None:
        add_script_run_ctx(ctx=ctx)
        with contextlib.suppress(ServerError):  # asked again by the page, which shows it
            answer(call[0], **call[1])

    with ThreadPoolExecutor(max_workers=len(calls) or 1) as pool:
        list(pool.map(one, calls))


def fetch(path: str, **params):
    """A frame from the API, or a visible error and a stop (never a traceback)."""
    return rows_frame(get(path, **params).get("data", []))


def get(path: str, **params) -> dict:
    """An endpoint's JSON answer, or a visible error and a stop (never a traceback)."""
    try:
        return answer(path, **params)
    except ServerError as exc:
        st.error(str(exc))
        st.stop()


def optional(path: str, **params) -> dict | None:
    """The answer of an endpoint this server may not have yet (None when it answers
    404), else as ``get``."""
    try:
        return answer(path, **params)
    except ServerError as exc:
        if exc.status == 404:
            return None
        st.error(str(exc))
        st.stop()


def paged(path: str, key: str, **params):
    """One page of a list the server pages, and its total: a page picker under the
    caller's filters (``key`` names it), the frame of that page."""
    number = st.session_state.get(key, 1)
    answer = get(path, limit=PAGE_ROWS, offset=(number - 1) * PAGE_ROWS, **params)
    frame = rows_frame(answer.get("data", []))
    total = answer.get("total", answer.get("count", len(frame)))
    pages = max(1, -(-total // PAGE_ROWS))
    if number > pages:  # the filters changed under a later page
        st.session_state[key] = number = 1
        answer = get(path, limit=PAGE_ROWS, offset=0, **params)
        frame = rows_frame(answer.get("data", []))
    if len(frame) > PAGE_ROWS:  # a server that does not page this list answers all of it
        frame = frame.slice((number - 1) * PAGE_ROWS, PAGE_ROWS)
    return frame, total, pages


def pager(key: str, total: int, pages: int, what: str) -> None:
    """The page picker of ``paged``, with how many rows there are in all."""
    left, right = st.columns([1, 3])
    left.number_input("Page", 1, pages, key=key, step=1)
    plural = "page" if pages == 1 else "pages"
    right.caption(f"{total:,} {what} in all · {PAGE_ROWS} a page · {pages:,} {plural}")


def lines(frame, index: str, on: str, values: str, title: str):
    """One line per ``on`` value of ``values`` over ``index``: a plain Altair chart (as the
    Overview draws, which the browser draws faster than ``st.line_chart``'s)."""
    import altair as alt

    data = frame.select(index, on, values).sort(index).to_pandas()
    return (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=alt.X(f"{index}:T", title=None),
            y=alt.Y(f"{values}:Q", title=None),
            color=alt.Color(f"{on}:N", title=title),
            tooltip=[f"{index}:T", f"{on}:N", f"{values}:Q"],
        )
    )


def empty_note(frame, what: str) -> bool:
    """Say so when there is nothing to show; True if empty."""
    if frame.is_empty():
        st.info(
            f"No {what} yet: send traffic to the server (cachediag replay, or an "
            "instrumented service)."
        )
        return True
    return False
