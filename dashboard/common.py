"""What every page shares: the client, the group picker, a clear message on errors."""

from __future__ import annotations

import streamlit as st

from dashboard.client import Client, ServerError

GROUPS = ("route", "model", "replica", "prompt_version", "schema_version", "service")
WINDOWS = ("5m", "15m", "1h", "1d")


def client() -> Client:
    if "client" not in st.session_state:
        st.session_state["client"] = Client()
    return st.session_state["client"]


def fetch(path: str, **params):
    """A frame from the API, or a visible error and a stop (never a traceback)."""
    try:
        return client().frame(path, **params)
    except ServerError as exc:
        st.error(str(exc))
        st.stop()


def get(path: str, **params) -> dict:
    """An endpoint's JSON answer, or a visible error and a stop (never a traceback)."""
    try:
        return client().get(path, **params)
    except ServerError as exc:
        st.error(str(exc))
        st.stop()


def empty_note(frame, what: str) -> bool:
    """Say so when there is nothing to show; True if empty."""
    if frame.is_empty():
        st.info(
            f"No {what} yet: send traffic to the server (cachediag replay, or an "
            "instrumented service)."
        )
        return True
    return False
