"""Overview: does the cache pay? Hit ratio, cached tokens, p95 TTFT and missed cost over time."""

import streamlit as st

from dashboard.common import GROUPS, WINDOWS, empty_note, fetch

st.title("Overview")
left, right = st.columns(2)
window = left.selectbox("Window", WINDOWS, index=2)
group = right.selectbox("Group by", ("(none)", *GROUPS))


@st.fragment(run_every="30s")
def charts() -> None:
    series = fetch("timeseries", window=window, group=None if group == "(none)" else group)
    if empty_note(series, "requests"):
        return
    totals = series.select("prompt_tokens", "cached_tokens", "missed_cost_usd", "requests").sum()
    ratio = totals["cached_tokens"][0] / max(totals["prompt_tokens"][0], 1)
    half = series["window"].sort()[len(series) // 2]
    recent, base = series.filter(series["window"] >= half), series.filter(series["window"] < half)

    def hit(frame):
        return frame["cached_tokens"].sum() / max(frame["prompt_tokens"].sum(), 1)

    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Hit ratio", f"{ratio:.1%}", f"{hit(recent) - hit(base):+.1%} vs earlier half")
    k2.metric("Cached tokens", f"{totals['cached_tokens'][0]:,}")
    k3.metric(
        "p95 TTFT (latest window)", f"{series.sort('window')['ttft_p95_ms'][-1] or 0:,.0f} ms"
    )
    k4.metric("Cost of misses", f"${totals['missed_cost_usd'][0]:,.2f}")
    pivot_on = "group" if group != "(none)" else None
    for column, title in (
        ("hit_ratio", "Token-weighted hit ratio"),
        ("cached_tokens", "Cached tokens"),
        ("ttft_p95_ms", "p95 TTFT (ms)"),
        ("missed_cost_usd", "Cost of misses ($)"),
    ):
        st.subheader(title)
        data = (
            series.select("window", pivot_on or "window", column)
            if pivot_on
            else series.select("window", column)
        )
        if pivot_on:
            data = data.pivot(on="group", index="window", values=column).sort("window")
        st.line_chart(data.to_pandas(), x="window")
    alerts = fetch("alerts")
    if not alerts.is_empty():
        st.subheader("Alerts on this range")
        st.dataframe(
            alerts.select("rule", "group_key", "state", "started_at", "resolved_at").to_pandas(),
            hide_index=True,
        )


charts()
