"""The environment variables a cachediag server and its clients share, with no imports:
the CLI, the dashboard and the server read them from here without loading the server
(the dashboard may import ``collector`` but not the store; ``collector`` never imports
``cachediag`` or ``dashboard``, so this is the lowest home all three can reach)."""

TOKEN_ENV = "CACHEDIAG_TOKEN"  # bearer token the server requires, and clients send
SERVER_ENV = "CACHEDIAG_SERVER"  # the server URL the dashboard and `--server` read
DEFAULT_SERVER = "http://127.0.0.1:4318"
