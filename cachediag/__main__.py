"""``python -m cachediag`` runs the CLI."""

from cachediag.cli import run

run()
