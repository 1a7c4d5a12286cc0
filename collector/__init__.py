"""Getting data in: OTLP ingest, mapping and the DuckDB store (not built yet)."""
