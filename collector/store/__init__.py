"""The DuckDB store: the database and its writer (``database``), the migrations
that shape it (``migrations``) and the read queries over it (``queries``)."""
