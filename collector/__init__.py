"""Getting data in and serving it. Rooms, each a subpackage or module:

- ``collector.instrument``: runs inside a user's service (standard library,
  OpenTelemetry and the pure fingerprinting only);
- ``collector.receiver``: the server process's network front (OTLP/HTTP,
  OTLP/gRPC, decode workers) and its lifecycle;
- ``otlp``, ``otlp_json``, ``mapping``, ``ingest``: OTLP exports to request rows;
- ``collector.store``: the DuckDB database, its migrations and every query;
- ``collector.service``: one function per operation, under the CLI and the API;
- ``collector.api``: the query API (FastAPI) the receiver hands /api requests to;
- ``settings``: the environment variables the server and its clients share;
- ``explanations``, ``alerting``, ``notify``: the server's background work;
- ``records``, ``replay``: request records in (ingest) and out (as spans);
- ``attributes``: the span-attribute contract both sides share.
"""
