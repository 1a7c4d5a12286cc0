"""Misses: explained misses by cause, route, replica and time, filtered and paged by the
server; one opens its diff as a picture."""

from datetime import datetime, time

import streamlit as st

from analysis.causes import SHAPE_CAUSES, TRAFFIC_CAUSES
from dashboard.common import empty_note, get, paged, pager
from dashboard.diffview import segment_bars, side_by_side

st.title("Misses")
preset = st.session_state.pop("miss_filter", {}) or {}
causes = (
    "(any)",
    *sorted(set(SHAPE_CAUSES) - {"identical", "appended"}),
    *(c for c in TRAFFIC_CAUSES if c not in ("cold_start", "no_miss")),
)
c1, c2, c3, c4 = st.columns(4)
cause = c1.selectbox(
    "Cause", causes, index=causes.index(preset["cause"]) if preset.get("cause") in causes else 0
)
route = c2.text_input("Route", value=preset.get("route") or "")
replica = c3.text_input("Replica")
since_preset = datetime.fromisoformat(preset["since"]) if preset.get("since") else None
day = c4.date_input("Since (UTC day)", value=since_preset.date() if since_preset else None)
since = since_preset or (datetime.combine(day, time()) if day else None)
misses, total, pages = paged(
    "explanations",
    "misses_page",
    misses=1,
    cause=None if cause == "(any)" else cause,
    route=route,
    replica=replica,
    since=since.isoformat() if since else None,
)
if not empty_note(misses, "explained misses"):
    st.dataframe(
        misses.select(
            "id", "ts", "route", "replica", "cause", "segment", "missed_tokens", "missed_cost_usd"
        ).to_pandas(),
        hide_index=True,
        width="stretch",
    )
    pager("misses_page", total, pages, "misses")
    chosen = st.selectbox("Open a miss", misses["id"].to_list())
    detail = get(f"requests/{chosen}/diff")
    explanation = detail["explanation"]
    st.subheader(f"{explanation.get('cause')} · after {detail['predecessor_id']}")
    st.write(explanation.get("detail"))
    comparison = detail.get("comparison")
    if comparison:
        st.markdown(
            f"**First differing token {comparison['first_diff_token']:,}** "
            f"(byte {comparison['first_diff_byte']:,}) at `{comparison['path']}`"
        )
        st.write(comparison["explanation"])
        st.write("Fix:", comparison["fix"])
        st.html(side_by_side(comparison))
    else:
        st.info("Content was not captured for both requests: their segment maps alone.")
    first = explanation.get("first_diff_token")
    if comparison and first is None:
        first = comparison["first_diff_token"]
    block, size = explanation.get("first_diff_block"), detail.get("block_size")
    if first is None and block is not None and size:
        first = block * size
    st.markdown("**Segment maps** (A earlier, B this request; hatched: not in A)")
    st.html(
        segment_bars(
            detail["segments_a"],
            detail["segments_b"],
            first,
            size if block is not None else None,
        )
    )
