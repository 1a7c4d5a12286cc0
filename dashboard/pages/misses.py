"""Misses: explained misses by cause, route, replica and time; one opens its diff."""

import streamlit as st

from analysis.causes import SHAPE_CAUSES, TRAFFIC_CAUSES
from dashboard.common import empty_note, fetch, get

st.title("Misses")
preset = st.session_state.pop("miss_filter", {}) or {}
causes = (
    "(any)",
    *sorted(set(SHAPE_CAUSES) - {"identical", "appended"}),
    *(c for c in TRAFFIC_CAUSES if c not in ("cold_start", "no_miss")),
)
c1, c2, c3 = st.columns(3)
cause = c1.selectbox(
    "Cause", causes, index=causes.index(preset["cause"]) if preset.get("cause") in causes else 0
)
route = c2.text_input("Route", value=preset.get("route") or "")
replica = c3.text_input("Replica")
since = preset.get("since")
misses = fetch(
    "explanations",
    cause=None if cause == "(any)" else cause,
    route=route,
    replica=replica,
    since=since,
    limit=500,
)
if not misses.is_empty():
    misses = misses.filter(~misses["cause"].is_in(["no_miss", "cold_start"]))
if not empty_note(misses, "explained misses"):
    st.dataframe(
        misses.select(
            "id", "ts", "route", "replica", "cause", "segment", "missed_tokens", "missed_cost_usd"
        ).to_pandas(),
        hide_index=True,
    )
    chosen = st.selectbox("Open a miss", misses["id"].to_list())
    detail = get(f"requests/{chosen}/diff")
    st.subheader(f"{detail['explanation'].get('cause')} · after {detail['predecessor_id']}")
    st.write(detail["explanation"].get("detail"))
    comparison = detail.get("comparison")
    if comparison:
        st.markdown(
            f"**First differing token {comparison['first_diff_token']:,}** "
            f"(byte {comparison['first_diff_byte']:,}) at `{comparison['path']}`"
        )
        st.write(comparison["explanation"])
        st.write("Fix:", comparison["fix"])
        context = "".join(comparison["excerpt"]["context"])

        def tokens(values):
            return " ".join(f"⟦{t}⟧" for t in values) or "(end)"

        st.code(
            f"…{context}\nA → {tokens(comparison['excerpt']['a'])}\n"
            f"B → {tokens(comparison['excerpt']['b'])}",
            language=None,
        )
    else:
        st.info("Content was not captured for both requests: segment maps side by side.")
        left, right = st.columns(2)
        left.dataframe(detail["segments_a"], hide_index=True)
        right.dataframe(detail["segments_b"], hide_index=True)
