"""The Streamlit dashboard: pages that draw what the query API returns."""
