"""Routing: hit ratio by replica, session stickiness, and what another router would do."""

import streamlit as st

from dashboard.common import WINDOWS, empty_note, fetch

st.title("Routing")
window = st.selectbox("Window", WINDOWS, index=2)
series = fetch("timeseries", window=window, group="replica")
if not empty_note(series, "requests"):
    st.subheader("Hit ratio by replica")
    data = series.pivot(on="group", index="window", values="hit_ratio").sort("window")
    st.line_chart(data.to_pandas(), x="window")
    st.subheader("Stickiness")
    st.dataframe(fetch("routing").to_pandas(), hide_index=True)
    st.subheader("What if")
    c1, c2, c3 = st.columns(3)
    router = c1.selectbox("Router", ("sticky", "prefix_affinity", "round_robin", "random"))
    ttl = c2.selectbox("TTL", ("5m", "10m", "1h"), index=1)
    warmup = c3.checkbox("Warm up new prefixes")
    # The what-if replays every stored request: run it on demand, not on every repaint.
    if st.button("Run the what-if"):
        st.dataframe(
            fetch("whatif", router=router, ttl=ttl, warmup="1" if warmup else None).to_pandas(),
            hide_index=True,
        )
