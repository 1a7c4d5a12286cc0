"""The query API under /api/v1 on FastAPI: typed endpoints, JSON or Arrow IPC, and an
OpenAPI document generated from them (``/api/v1/openapi.json``).

- ``app``: the endpoints, each parsing its parameters and calling ``collector.service``;
- ``params``: the typed query parameters (times, durations, pages, filters);
- ``encode``: frames and dicts to JSON (ISO times, null for non-finite floats) or Arrow;
- ``bridge``: how the threaded HTTP receiver hands an /api request to the ASGI app.
"""
