"""Alerts: one row per incident with its signals, cause, cost per hour and a sparkline;
the details (attribution, top causes, its misses) of the incident picked below it."""

import pandas as pd
import streamlit as st

from dashboard.common import empty_note, paged, pager
from dashboard.incidents import incidents, signals_text, unit


def dot(incident: dict) -> str:
    """Red while it fires, white once resolved."""
    return "🔴" if incident["state"] == "firing" else "⚪"


def heading(incident: dict) -> str:
    """One line for an incident: state, where, since, signals, cause, cost per hour."""
    return (
        f"{dot(incident)} {incident['label']} · "
        f"{incident['started_at']:%Y-%m-%d %H:%M} · "
        f"{', '.join(s['rule'] for s in incident['signals'])} · "
        f"{incident['cause'] or 'no cause yet'} · ${incident['cost_per_hour']:,.2f}/h"
    )


def details(incident: dict) -> None:
    """Its state and span, signals against baseline, where it concentrates, its top
    causes, and a way to its misses."""
    since, until = incident["started_at"], incident["resolved_at"]
    st.markdown(
        f"{incident['label']} · `{incident['state']}` since {since:%Y-%m-%d %H:%M}"
        + (f", resolved {until:%Y-%m-%d %H:%M}" if until is not None else "")
    )
    st.markdown(
        "| signal | now | baseline |\n| --- | --- | --- |\n"
        + "\n".join(
            f"| {s.get('rule')} | {unit(s, 'value')} | {unit(s, 'baseline')} |"
            for s in incident["signals"]
        )
    )
    where = incident["attribution"]
    st.markdown(
        "Concentrated in: "
        + (
            ", ".join(f"`{k}={v}`" for k, v in where.items())
            or "no single replica, prefix or version"
        )
    )
    causes = incident["top_causes"]
    st.markdown(
        "Top causes: "
        + (
            ", ".join(f"{c[0]} ({c[1]:,} request{'' if c[1] == 1 else 's'})" for c in causes)
            or "none explained"
        )
    )
    if st.button("Show its misses"):
        st.session_state["miss_filter"] = {
            "route": incident["group"].get("route"),
            "since": since.isoformat(),
            "cause": incident["cause"],
        }
        st.switch_page("views/misses.py")


st.title("Alerts")
state = st.radio("Show", ("all", "firing", "resolved"), horizontal=True)
frame, total, pages = paged("alerts", "alerts_page", state=None if state == "all" else state)
if not empty_note(frame, "alerts"):
    found = incidents(frame.to_dicts())
    table = pd.DataFrame(
        {
            "state": [f"{dot(i)} {i['state']}" for i in found],
            "where": [i["label"] for i in found],
            "since": [i["started_at"] for i in found],
            "cause": [i["cause"] or "" for i in found],
            "cost / h": [i["cost_per_hour"] for i in found],
            "trend": [i["sparkline"] or None for i in found],
            "signals": [signals_text(i["signals"]) for i in found],
        }
    )
    st.caption(f"{len(found):,} incidents on this page")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "since": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "cost / h": st.column_config.NumberColumn(format="$%.2f"),
            "trend": st.column_config.LineChartColumn("trend", width="small"),
        },
    )
    pager("alerts_page", total, pages, "incidents")
    st.subheader("Details")
    # One incident's details at a time: drawing all fifty of a page (expanders with
    # tables and buttons) cost the browser a quarter of a second at every load.
    by_id = {incident["id"]: incident for incident in found}
    chosen = st.selectbox("Incident", list(by_id), format_func=lambda i: heading(by_id[i]))
    details(by_id[chosen])
