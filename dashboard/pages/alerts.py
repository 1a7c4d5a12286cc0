"""Alerts: firing and resolved, with attribution, top causes, cost, and their misses."""

import json

import streamlit as st

from dashboard.common import empty_note, fetch

_UNITS = {
    "cached_drop": lambda v: f"{v:.1%}",  # hit ratio
    "ttft_p95_rise": lambda v: f"{v:,.0f} ms",
    "prefix_break": lambda v: f"{v:,.0f} broken",  # requests whose prefix broke
    "ttl_lapse": lambda v: f"{v:,.0f} expired",  # requests whose prefix expired
}

st.title("Alerts")
state = st.radio("Show", ("all", "firing", "resolved"), horizontal=True)
alerts = fetch("alerts", state=None if state == "all" else state)
if not empty_note(alerts, "alerts"):
    for i, row in enumerate(alerts.iter_rows(named=True)):
        group = json.loads(row["group_key"] or "{}")
        label = ", ".join(f"{k}={v}" for k, v in group.items())
        with st.container(border=True):
            st.markdown(
                f"**{row['rule']}** · {label} · `{row['state']}` since "
                f"{row['started_at']:%Y-%m-%d %H:%M}"
            )
            c1, c2, c3 = st.columns(3)
            unit = _UNITS.get(row["rule"], lambda v: f"{v:,.2f}")
            c1.metric("Now", unit(row["value"]))
            c2.metric("Baseline", unit(row["baseline"]))
            c3.metric("Cost per hour", f"${row['cost_per_hour']:,.2f}")
            where = json.loads(row["attribution"] or "{}")
            st.markdown(
                "Concentrated in: "
                + (
                    ", ".join(f"`{k}={v}`" for k, v in where.items())
                    or "no single replica, prefix or version"
                )
            )
            causes = json.loads(row["top_causes"] or "[]")
            st.write("Top causes:", ", ".join(f"{c} ({n} requests)" for c, n, _ in causes))
            if st.button("Show its misses", key=f"misses-{i}"):
                st.session_state["miss_filter"] = {
                    "route": group.get("route"),
                    "since": row["started_at"].isoformat(),
                    "cause": causes[0][0] if causes else None,
                }
                st.switch_page("pages/misses.py")
