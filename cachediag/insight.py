"""`cachediag insights`: recurring costs that are a route's normal, with their fixes."""

from __future__ import annotations

import json

import click

from cachediag.options import InputError, output_format, server_token, token_option

INSIGHTS_WAIT_S = 900.0  # a server finds insights by replaying traffic: minutes at scale


@click.command()
@click.option("--db", default=None, help="DuckDB file to read (opened read-only).")
@click.option("--server", default=None, help="Or: a cachediag server URL to ask.")
@token_option
@click.option("--rules", default=None, help="TOML file with an [alerts] table of thresholds.")
@click.option(
    "--no-simulate",
    is_flag=True,
    help="Skip the what-if replays (no savings for TTL, routing or fan-out costs).",
)
@output_format
def insights(
    db: str | None,
    server: str | None,
    token: str | None,
    rules: str | None,
    no_simulate: bool,
    output: str,
) -> None:
    """Recurring costs: causes that cost money on a route every day outside its
    incidents (nightly TTL lapses, un-warmed fan-out, sticky-less routing), each with
    its cost per day, the fix, and what the what-if simulator says the fix would save.

    These raise no alerts: the route's baseline knows them.
    """
    import tomllib

    from analysis import alerts as rules_mod
    from dashboard.client import ServerError

    if bool(db) == bool(server):
        raise InputError("give exactly one of --db FILE or --server URL")
    try:
        if server:
            from dashboard.client import Client

            reader = Client(server, timeout=INSIGHTS_WAIT_S, token=server_token(token) or "")
            found = reader.get("insights", wait=1)["data"]
            for row in found:
                row["group_key"] = json.loads(row["group_key"] or "{}")
                row["hours"] = json.loads(row["hours"] or "[]")
        else:
            found = _db_insights(db, rules_mod.Rules.load(rules), not no_simulate)
    except (OSError, ValueError, tomllib.TOMLDecodeError, ServerError) as exc:
        raise InputError(str(exc)) from None
    if output == "json":
        click.echo(json.dumps(found, default=str, indent=2))
        return
    for row in found:
        click.echo(row["text"])
    if not found:
        click.echo("no recurring costs")


def _db_insights(db: str, rules, simulate: bool) -> list[dict]:
    from cachediag.analyze import read_only
    from collector.service import insights as service

    con = read_only(db)
    try:
        return service.find(con.cursor(), rules, simulate=simulate)
    finally:
        con.close()
