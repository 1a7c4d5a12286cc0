"""Run the ``cachediag`` command line inside the test process, as a shell would see it."""

from __future__ import annotations

from click.testing import CliRunner, Result

from cachediag.cli import main


def cachediag(*args: str, stdin: str | bytes | None = None) -> Result:
    """``cachediag ARGS``: its exit code, stdout and stderr (kept apart, click >= 8.2)."""
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
