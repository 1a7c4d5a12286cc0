"""Prefixes: how stable is each route's cacheable prefix over time?"""

import streamlit as st

from dashboard.common import WINDOWS, empty_note, fetch, lines

st.title("Prefixes")
window = st.selectbox("Window", WINDOWS, index=2)
frame = fetch("prefixes", window=window)
if not empty_note(frame, "prefixes"):
    for column, title in (
        ("distinct_prefixes", "Distinct prefix hashes per window"),
        ("new_prefixes", "Prefixes never seen before"),
        ("tools_count", "Tools declared"),
    ):
        st.subheader(title)
        st.altair_chart(lines(frame, "window", "route", column, "route"), width="stretch")
    st.subheader("Versions")
    st.dataframe(
        frame.select("window", "route", "prompt_versions", "schema_versions").to_pandas(),
        hide_index=True,
    )
