"""The Streamlit dashboard over the query API (not built yet)."""
