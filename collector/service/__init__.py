"""The service layer: one function per operation, under both faces (the CLI and the
query API). Plain data in and out (dicts, dataclasses, polars frames); the SQL lives
here or in ``collector.store.queries``, never in a face, so a CLI command and its
endpoint cannot disagree.

- ``reads``: requests, one request, series, explanations, prefixes, routing, stats;
- ``explaining``: explain stored requests (pending or all), one request with its diff;
- ``alerts``: evaluate the rules (the only writer of the alerts table) and list them;
- ``whatif``: stored traffic replayed through a simulated provider.
"""
