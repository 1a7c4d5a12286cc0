"""The server process's front: OTLP/HTTP (``http``) and OTLP/gRPC
(``grpc_server``) receivers with the answers and token check they share
(``reply``), decode workers (``workers``), what is done with each export
(``intake``), and the server's start and stop (``server``)."""
