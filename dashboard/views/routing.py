"""Routing: hit ratio by replica, session stickiness, and what another router would do."""

import time

import pandas as pd
import streamlit as st

from dashboard.client import ServerError
from dashboard.common import WINDOWS, client, empty_note, fetch, lines, prefetch

SAMPLES = {"newest 20,000 requests": 20_000, "newest 100,000 requests": 100_000, "all": 0}
POLL_S = 0.25
WAIT_S = 600.0  # the longest the page follows one what-if


def run_whatif(**asked) -> dict | None:
    """Start the what-if on the server's worker and follow it with a progress bar; its
    finished job, or None after an error shown on the page."""
    try:
        job = client().post("whatif/jobs", **asked)
        bar = st.progress(0.0, text="queued")
        deadline = time.monotonic() + WAIT_S
        while job["state"] in ("queued", "running") and time.monotonic() < deadline:
            share = job["done"] / job["total"] if job["total"] else 0.0
            bar.progress(min(share, 1.0), text=f"replayed {job['done']:,} of {job['total']:,}")
            time.sleep(POLL_S)
            job = client().get("whatif/jobs", id=job["id"])
        bar.empty()
    except ServerError as exc:
        st.error(str(exc))
        return None
    if job["state"] != "done":
        st.error(job.get("error") or "the what-if is still running; run it again to follow it")
        return None
    return job


st.title("Routing")
window = st.selectbox("Window", WINDOWS, index=2)
prefetch(("timeseries", {"window": window, "group": "replica"}), ("routing", {}))
series = fetch("timeseries", window=window, group="replica")
if not empty_note(series, "requests"):
    st.subheader("Hit ratio by replica")
    st.altair_chart(lines(series, "window", "group", "hit_ratio", "replica"), width="stretch")
    st.subheader("Stickiness")
    # A few rows, one per route: a plain table, which the browser draws faster than a grid.
    sticky = fetch("routing").to_pandas().style.hide(axis="index")
    st.table(sticky.format({"hit_ratio": "{:.1%}"}, na_rep="–"))
    st.subheader("What if")
    c1, c2, c3, c4 = st.columns(4)
    router = c1.selectbox("Router", ("sticky", "prefix_affinity", "round_robin", "random"))
    ttl = c2.selectbox("TTL", ("5m", "10m", "1h"), index=1)
    sample = c3.selectbox("Replay", tuple(SAMPLES))
    warmup = c4.checkbox("Warm up new prefixes")
    st.caption(
        "The what-if replays a sample, the newest requests in time order (whole stretches "
        "of traffic, so caches warm as they did), on a worker of its own on the server."
    )
    # Run on demand, not on every repaint; the server runs one what-if at a time.
    if st.button("Run the what-if"):
        job = run_whatif(
            router=router, ttl=ttl, warmup="1" if warmup else None, sample=SAMPLES[sample]
        )
        if job is not None:
            sampled = job.get("sampled")
            st.caption(
                f"Simulated over the newest {sampled:,} of {job['stored']:,} stored requests "
                f"in {job['seconds']:.1f} s."
                if sampled
                else f"Simulated over all {job['stored']:,} stored requests in "
                f"{job['seconds']:.1f} s."
            )
            st.dataframe(pd.DataFrame(job["data"]), hide_index=True)
