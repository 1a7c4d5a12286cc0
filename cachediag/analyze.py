"""CLI commands that read a database: series, explain, alerts, simulate."""

from __future__ import annotations

import json
import os
import sys

import click

from cachediag.options import (
    InputError,
    check_database,
    lake_config,
    lake_options,
    open_lake,
    open_store,
    output_format,
    server_token,
    token_option,
)


def _writable(db: str, memory_mib: int | None = None):
    """The store of an existing database no server holds, or a one-line error."""
    if not os.path.isfile(db):
        raise InputError(f"{db}: no such database; create it with cachediag ingest or serve")
    return open_store(db, memory_mib)


def read_only(db: str | None, lake=None):
    """A read-only connection to an existing database (or to the lake), or a one-line
    error."""
    import duckdb

    from collector.store.database import Store, StoreLocked

    if lake is not None:
        return open_lake(lake)
    if db is None:
        raise InputError("give --db FILE, or --lake CATALOG with --data-path PATH")
    if not os.path.isfile(db):
        raise InputError(f"{db}: no such database; create it with cachediag ingest or serve")
    check_database(db)
    try:
        return Store(db, read_only=True).con
    except StoreLocked as exc:
        raise InputError(str(exc)) from None
    except duckdb.Error as exc:
        raise InputError(f"{db}: cannot open it read-only ({str(exc).splitlines()[0]})") from None


@click.command()
@click.option("--db", default=None, help="DuckDB file to read (opened read-only).")
@lake_options
@click.option("--window", default="1h", show_default=True, help="Window: 60, 5m, 1h, 1d.")
@click.option(
    "--group",
    default="route",
    show_default=True,
    help="route, model, replica, prompt_version, schema_version, service, ...",
)
@output_format
def series(
    db: str | None, lake: str | None, data_path: str | None, window: str, group: str, output: str
) -> None:
    """Print token-weighted hit ratio, p95 TTFT and missed cost per window and group.

    Reads a database no server holds (stop `cachediag serve` first, or ask its
    /api/v1/timeseries instead).
    """

    from cachediag import report
    from collector.service import reads
    from collector.store import queries

    if group not in queries.GROUPS:
        raise InputError(f"--group {group!r}: expected one of {', '.join(queries.GROUPS)}")
    try:
        seconds = queries.seconds(window)
    except ValueError as exc:
        raise InputError(f"--window {exc}") from None
    con = read_only(db, lake_config(lake, data_path))
    frame = reads.series(con, queries.Filters(), seconds, group)
    if output == "json":
        click.echo(frame.write_json())
    else:
        report.series_table(frame, group, report.console())


@click.command()
@click.option("--db", default=None, help="DuckDB file (no server may hold it).")
@lake_options
@click.option(
    "--request",
    "request_id",
    default=None,
    help="Show the explanation of one request (and its token diff, when captured).",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Explain every request again (after an upgrade or a price change), not only "
    "those without an explanation.",
)
@output_format
def explain(
    db: str | None,
    lake: str | None,
    data_path: str | None,
    request_id: str | None,
    everything: bool,
    output: str,
) -> None:
    """Explain stored requests: predecessor, cacheable tokens, cause and cost.

    Without --request, explains in time order the requests that have no
    explanation yet (all of them with --all) and prints the miss causes of the
    whole database with their missed tokens and dollars. With --request ID,
    prints that request's explanation (from a lake too: its collectors explain it).
    """
    from rich.progress import Progress

    from cachediag import report
    from collector.service import explaining
    from collector.store.database import EXPLAIN_MEMORY_MIB

    shared = lake_config(lake, data_path)
    if shared is not None:  # the collectors explain what they store; this shows one
        if not request_id:
            raise InputError("with --lake, pass --request ID: the collectors explain the lake")
        con = read_only(None, shared)
        _show_explanation(explaining.diff(con, request_id), request_id, "FILE", output)
        return
    if db is None:
        raise InputError("give --db FILE, or --lake CATALOG with --data-path PATH")
    store = _writable(db, EXPLAIN_MEMORY_MIB)  # a pass on its own: under 2 GB in all
    try:
        if request_id:
            _show_explanation(explaining.diff(store.con, request_id), request_id, db, output)
            return
        with Progress(transient=True) as bar:
            task = bar.add_task("explaining", total=None)
            summary = explaining.explain(
                store, everything, lambda n, total: bar.update(task, total=total, advance=n)
            )
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(summary))
    else:
        report.cause_table(summary, report.console())


@click.command()
@click.option("--db", default=None, help="DuckDB file to evaluate (no server may hold it).")
@click.option("--server", default=None, help="Or: a cachediag server URL to ask.")
@lake_options
@token_option
@click.option("--rules", default=None, help="TOML file with an [alerts] table of thresholds.")
@click.option(
    "--webhook",
    default=None,
    help="POST each firing alert here (JSON with a Slack-compatible 'text').",
)
@output_format
def alerts(
    db: str | None,
    server: str | None,
    lake: str | None,
    data_path: str | None,
    token: str | None,
    rules: str | None,
    webhook: str | None,
    output: str,
) -> None:
    """Cached-token drops, p95 TTFT rises, prefix breaks and TTL lapses, per route and
    model, with their causes.

    With --db (or --lake), evaluates the rules over the stored requests (and stores the
    alerts);
    with --server, lists the server's alerts. Exit status 1 while any alert fires,
    for cron and CI.
    """
    import tomllib

    from analysis import alerts as rules_mod
    from dashboard.client import ServerError

    shared = lake_config(lake, data_path)
    if bool(db) + bool(server) + bool(shared) != 1:
        raise InputError("give exactly one of --db FILE, --server URL or --lake CATALOG")
    try:
        if shared:
            from cachediag.lake import lake_alerts

            found = lake_alerts(shared, rules_mod.Rules.load(rules))
        elif server:
            found = _server_alerts(server, server_token(token))
        else:
            found = _db_alerts(db, rules_mod.Rules.load(rules))
    except (OSError, ValueError, tomllib.TOMLDecodeError, ServerError) as exc:
        raise InputError(str(exc)) from None
    firing = [a for a in found if a["state"] == "firing"]
    if webhook:
        from collector.notify import post

        for alert in firing:
            if not post(webhook, alert["text"], alert):
                click.echo(f"webhook {webhook} did not take the alert", err=True)
    if output == "json":
        click.echo(json.dumps(found, default=str, indent=2))
    else:
        for alert in found:
            click.echo(alert["text"])
        if not found:
            click.echo("no alerts")
    sys.exit(1 if firing else 0)


def _db_alerts(db: str, rules) -> list[dict]:
    from collector.service import alerts as service

    store = _writable(db)
    try:
        return [service.record(a) for a in service.evaluate(store, rules)]
    finally:
        store.close()


def _server_alerts(url: str, token: str | None) -> list[dict]:
    """The server's alerts, each with the text the server wrote for it."""
    from dashboard.client import Client

    rows = Client(url, token=token or "").get("alerts", limit=10_000)["data"]
    return [
        dict(
            row,
            group=json.loads(row["group_key"] or "{}"),
            attribution=json.loads(row["attribution"] or "{}"),
            top_causes=json.loads(row["top_causes"] or "[]"),
        )
        for row in rows
    ]


@click.command()
@click.option("--db", required=True, help="DuckDB file to read (opened read-only).")
@click.option(
    "--router",
    type=click.Choice(["round_robin", "random", "sticky", "prefix_affinity"]),
    default="sticky",
    show_default=True,
    help="How the simulated provider routes requests.",
)
@click.option("--ttl", default="10m", show_default=True, help="Cache TTL: 300, 10m, 1h.")
@click.option(
    "--replicas",
    type=click.IntRange(1, 1024),
    default=None,
    help="Replicas per route [default: as many as the traffic used].",
)
@click.option(
    "--warmup",
    is_flag=True,
    help="Warm every replica with each new stable prefix (tools + system).",
)
@output_format
def simulate(
    db: str, router: str, ttl: str, replicas: int | None, warmup: bool, output: str
) -> None:
    """What-if: replay stored traffic through a provider with other routing, TTL or warmup.

    Prints, per route, the hit ratio, p95 TTFT and missed-token cost observed beside
    what the simulated provider gives, and what the change would save per day.
    """

    from cachediag import report
    from collector.service.whatif import whatif
    from collector.store.queries import seconds

    try:
        ttl_s = seconds(ttl)
    except ValueError as exc:
        raise InputError(f"--ttl {exc}") from None
    found = whatif(read_only(db), router, ttl_s, replicas, warmup)
    if output == "json":
        click.echo(
            json.dumps(
                {
                    route: {
                        "observed": vars(o) | {"hit_ratio": o.hit_ratio},
                        "simulated": vars(s) | {"hit_ratio": s.hit_ratio},
                    }
                    for route, (o, s) in found.routes.items()
                },
                default=str,
            )
        )
    else:
        report.whatif_table(found.routes, found.model, warmup, found.days, report.console())


def _show_explanation(found: dict | None, request_id: str, db: str, output: str) -> None:
    """One request's explanation, and the token diff against its predecessor when both
    renderings were captured (the service's comparison, as the API's /diff shows it)."""
    from analysis.compare import Comparison
    from cachediag import report

    if not found or not found["explanation"]:
        raise InputError(f"{request_id}: no explanation; run cachediag explain --db {db}")
    row = {
        **found["explanation"],
        **{k: found[k] for k in ("route", "replica", "request_model", "provider")},
    }
    comparison = found["comparison"]
    if output == "json":
        click.echo(json.dumps(dict(row, diff=comparison), default=str, indent=2))
        return
    out = report.console()
    report.explanation_report(row, out)
    if comparison is not None:
        report.diff_report(Comparison(**comparison), row["predecessor_id"], row["id"], out)
    else:
        out.print(
            "  (no token diff: the content of this request or its predecessor was not captured)"
        )
