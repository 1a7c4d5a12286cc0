"""Overview: does the cache pay? Hit ratio (the incidents marked on it as bands), cached
tokens and p95 TTFT over time, missed dollars per hour stacked by cause, and the insights:
what keeps costing and what would fix it."""

import altair as alt
import polars as pl
import streamlit as st

from dashboard.client import rows_frame
from dashboard.common import (
    GROUPS,
    WINDOW_SECONDS,
    WINDOWS,
    empty_note,
    fetch,
    optional,
    prefetch,
)
from dashboard.incidents import incidents

BAND_COLOURS = {"firing": "#d62728", "resolved": "#ff9f40"}
MAX_BANDS = 100  # incidents fetched to mark on the charts

st.title("Overview")
left, right = st.columns(2)
window = left.selectbox("Window", WINDOWS, index=2)
group = right.selectbox("Group by", ("(none)", *GROUPS))


def bands(series: pl.DataFrame) -> pl.DataFrame:
    """The incidents overlapping the series, clipped to it: start, end, label, state."""
    first, last = series["window"].min(), series["window"].max()
    found = incidents(fetch("alerts", limit=MAX_BANDS).to_dicts())
    rows = []
    for incident in found:
        start, end = incident["started_at"], incident["resolved_at"] or last
        if start is None or start > last or end < first:
            continue
        rows.append(
            {
                "start": max(start, first),
                "end": min(end, last),
                "incident": f"{incident['label']} · {incident['cause'] or ''}",
                "state": incident["state"],
            }
        )
    return pl.DataFrame(rows, schema=["start", "end", "incident", "state"], orient="row")


def banded(series: pl.DataFrame, column: str, marked: pl.DataFrame, grouped: bool):
    """A line chart of ``column`` over the windows, incidents as bands behind it."""
    line = (
        alt.Chart(series.select("window", "group", column).to_pandas())
        .mark_line(point=len(series) < 60)
        .encode(
            x=alt.X("window:T", title=None),
            y=alt.Y(f"{column}:Q", title=None),
            **({"color": alt.Color("group:N", title=group)} if grouped else {}),
        )
    )
    if marked.is_empty():
        return line
    rect = (
        alt.Chart(marked.to_pandas())
        .mark_rect(opacity=0.18)
        .encode(
            x="start:T",
            x2="end:T",
            color=alt.Color(
                "state:N",
                scale=alt.Scale(domain=list(BAND_COLOURS), range=list(BAND_COLOURS.values())),
                # on top: the time axis as wide as the charts' below, which have no legend
                legend=alt.Legend(title="incident", orient="top"),
            ),
            tooltip=["incident", "state", "start", "end"],
        )
    )
    return alt.layer(rect, line).resolve_scale(color="independent")


def cost_by_cause(window_s: int) -> None:
    """Missed dollars per hour, stacked by cause."""
    frame = fetch("causes", window=window_s)
    st.subheader("Missed $ per hour, by cause")
    if frame.is_empty():
        st.caption("No explained misses in this range.")
        return
    per_hour = frame.with_columns(
        (pl.col("missed_cost_usd").fill_null(0) * 3600 / window_s).alias("usd_per_hour")
    )
    chart = (
        alt.Chart(per_hour.select("window", "cause", "usd_per_hour").to_pandas())
        .mark_area()
        .encode(
            x=alt.X("window:T", title=None),
            y=alt.Y("usd_per_hour:Q", stack="zero", title="$ / h"),
            color=alt.Color("cause:N", title="cause"),
            tooltip=["window:T", "cause", alt.Tooltip("usd_per_hour:Q", format="$.2f")],
        )
    )
    st.altair_chart(chart, width="stretch")


def insights() -> None:
    """What keeps costing, and what would fix it (the server's insights, when it has them)."""
    st.subheader("Insights")
    answered = optional("insights", limit=5)
    if answered is None:
        st.caption("This server does not compute insights yet.")
        return
    found = rows_frame(answered.get("data", []))
    if found.is_empty():
        st.caption(
            "The server is finding them (a replay of the traffic); they show on the next refresh."
            if answered.get("computing")
            else "No recurring cost found."
        )
        return
    for row in found.head(5).iter_rows(named=True):
        saving = row.get("saving_per_day")
        st.markdown(
            f"- **${row.get('cost_per_day') or 0:,.2f}/day** · `{row.get('cause')}` · "
            f"{row.get('text') or ''}"
            + (f" Fix: {row['fix']}" if row.get("fix") else "")
            + (f" (saves ${saving:,.2f}/day)" if saving else "")
        )


@st.fragment(run_every="30s")
def charts() -> None:
    window_s = WINDOW_SECONDS[window]
    grouped = None if group == "(none)" else group
    prefetch(  # every call of the page at once; each is then read where it is drawn
        ("timeseries", {"window": window, "group": grouped}),
        ("alerts", {"limit": MAX_BANDS}),
        ("causes", {"window": window_s}),
        ("insights", {"limit": 5}),
    )
    series = fetch("timeseries", window=window, group=grouped)
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
    marked = bands(series)
    if not marked.is_empty():
        st.caption(f"Shaded: {len(marked)} incidents (red firing, orange resolved).")
    # The bands go on the hit ratio, the series the incidents are about; the charts
    # under it share its time axis. A banded (layered) chart takes headless Chromium
    # about 0.2 s longer to draw than a plain line, so the other two stay lines.
    plain = marked.clear()
    for column, title, shaded in (
        ("hit_ratio", "Token-weighted hit ratio", marked),
        ("cached_tokens", "Cached tokens", plain),
        ("ttft_p95_ms", "p95 TTFT (ms)", plain),
    ):
        st.subheader(title)
        st.altair_chart(banded(series, column, shaded, group != "(none)"), width="stretch")
    cost_by_cause(window_s)
    insights()


charts()
