"""The cachediag dashboard: `cachediag dashboard --server URL` runs it with Streamlit."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

st.set_page_config(page_title="cachediag", layout="wide")
pages = Path(__file__).parent / "views"
st.navigation(
    [
        st.Page(pages / "overview.py", title="Overview", default=True),
        st.Page(pages / "alerts.py", title="Alerts"),
        st.Page(pages / "misses.py", title="Misses"),
        st.Page(pages / "prefixes.py", title="Prefixes"),
        st.Page(pages / "routing.py", title="Routing"),
    ]
).run()
