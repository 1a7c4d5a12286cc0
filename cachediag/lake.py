"""``cachediag lake``: look after a DuckLake that many collectors write (docs/scale-out.md)."""

from __future__ import annotations

import json

import click

from cachediag.options import InputError, lake_config, lake_options, open_lake


@click.group()
def lake() -> None:
    """Look after a shared DuckLake (cachediag serve --lake)."""


@lake.command()
@lake_options
@click.option(
    "--keep",
    default="1 hour",
    show_default=True,
    help="Snapshots younger than this are kept (readers may still be reading them).",
)
def maintain(lake: str | None, data_path: str | None, keep: str) -> None:
    """Drop copies of re-sent spans, merge small files, expire old snapshots and delete
    the files nothing refers to any more; writers keep writing meanwhile.

    Run it on a schedule (e.g. every 10 minutes from cron), one at a time.
    """
    import duckdb

    from collector.store import maintenance

    config = lake_config(lake, data_path)
    if config is None:
        raise InputError("give --lake CATALOG and --data-path PATH")
    con = open_lake(config, read_only=False)
    try:
        done = maintenance.maintain(con, keep)
    except duckdb.ConversionException:
        raise InputError(f"--keep {keep!r}: expected an interval such as '1 hour'") from None
    finally:
        con.close()
    click.echo(json.dumps(done))


def lake_alerts(config, rules) -> list[dict]:
    """Evaluate the rules over every collector's rows in the lake and store the alerts
    there (one evaluator at a time, or several: each writes the same evaluation)."""
    from collector.service import alerts as service
    from collector.store.database import alert_frame
    from collector.store.lake import replace_alerts

    con = open_lake(config, read_only=False)
    try:
        found = service.find(con, rules)
        replace_alerts(con, alert_frame([a.row() for a in found]))
        return [service.record(a) for a in found]
    finally:
        con.close()
