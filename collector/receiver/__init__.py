"""The server process's front: OTLP/HTTP (``http``) and OTLP/gRPC
(``grpc_server``) receivers, decode workers (``workers``), and the collector
that admits, decodes and commits each export (``server``)."""
