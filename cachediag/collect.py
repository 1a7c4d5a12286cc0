"""CLI commands that get data in: serve, ingest, generate, replay."""

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
    server_token,
    token_option,
)


@click.command()
@click.option("--db", default="cachediag.duckdb", show_default=True, help="DuckDB file to write.")
@lake_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=4318,
    show_default=True,
    help="OTLP/HTTP and query API port (0 picks a free one).",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=4317,
    show_default=True,
    help="OTLP/gRPC port, served when grpcio is installed (pip install 'cachediag[grpc]').",
)
@click.option("--no-grpc", is_flag=True, help="Do not serve OTLP/gRPC.")
@click.option(
    "--token",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on every request; default: the "
    "CACHEDIAG_TOKEN environment variable.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=None,
    help="Processes that decode OTLP in parallel [default: one per core, 0 = none].",
)
@click.option(
    "--max-body-mib",
    type=click.IntRange(1, 1024),
    default=20,
    show_default=True,
    help="Largest export accepted, before and after decompression.",
)
@click.option(
    "--max-pending-rows",
    type=click.IntRange(1),
    default=50_000,
    show_default=True,
    help="Rows waiting for commit before exports get 429 (bounds memory).",
)
@click.option(
    "--inflight-mib",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Export bodies being read or decoded at once before 429 (bounds memory).",
)
@click.option(
    "--db-memory-mib",
    type=click.IntRange(64),
    default=None,
    help="DuckDB's memory limit (its buffer pool and indexes); raise it if commits fail "
    "with 'Out of Memory' [default: 2048].",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds a request may stall before it is dropped with 408 "
    "[default: CACHEDIAG_READ_TIMEOUT_S or 5].",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds an idle keep-alive connection is kept open "
    "[default: CACHEDIAG_IDLE_TIMEOUT_S or 30].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=None,
    help="Open connections before new ones get 503 + Retry-After "
    "[default: CACHEDIAG_MAX_CONNECTIONS or 256].",
)
@click.option("--alert-rules", default=None, help="TOML file with an [alerts] table.")
@click.option(
    "--alert-every",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds between alert evaluations; 0 turns alerting off.",
)
@click.option(
    "--webhook",
    default=None,
    help="POST newly firing alerts here (JSON with a Slack-compatible 'text').",
)
@click.option(
    "--content/--no-content",
    default=True,
    show_default=True,
    help="Keep captured prompts (ours, and other libraries' rebuilt ones) for token-level "
    "diffs; --no-content keeps only their hashes.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def serve(
    db: str,
    lake: str | None,
    data_path: str | None,
    host: str,
    port: int,
    grpc_port: int,
    no_grpc: bool,
    token: str | None,
    workers: int | None,
    max_body_mib: int,
    max_pending_rows: int,
    inflight_mib: int,
    db_memory_mib: int | None,
    read_timeout: float | None,
    idle_timeout: float | None,
    max_connections: int | None,
    alert_rules: str | None,
    alert_every: float,
    webhook: str | None,
    content: bool,
    verbose: bool,
) -> None:
    """Receive OTLP traces and logs into DuckDB and answer the query API.

    Point any OpenTelemetry SDK or Collector (otlphttp exporter) at
    http://HOST:PORT; exports are acknowledged after their rows are committed.
    The query API is under /api/v1 (spec at /api/v1/openapi.json). SIGTERM or
    Ctrl-C commits everything acknowledged and exits.
    """
    from collector.receiver.intake import Config

    _log(verbose)
    config = Config(
        db=db,
        host=host,
        port=port,
        grpc_port=None if no_grpc else grpc_port,
        token=server_token(token),
        workers=(os.cpu_count() or 1) if workers is None else workers,
        max_body=max_body_mib * 1024 * 1024,
        max_pending_rows=max_pending_rows,
        inflight_bytes=inflight_mib * 1024 * 1024,
        alert_rules=alert_rules,
        alert_every_s=alert_every,
        webhook=webhook,
        content=content,
        lake=lake_config(lake, data_path),
    )
    for name, value in (
        ("read_timeout_s", read_timeout),
        ("idle_timeout_s", idle_timeout),
        ("max_connections", max_connections),
        ("db_memory_mib", db_memory_mib),
    ):
        if value is not None:  # else the Config default (timeouts: from the environment)
            setattr(config, name, value)
    _run_server(config)


def _log(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )


def _run_server(config) -> None:
    """Serve until stopped; what the user can fix becomes a one-line InputError."""
    import tomllib

    from collector.receiver.server import serve as run
    from collector.store.database import StoreLocked
    from collector.store.lake import LakeError

    check_database(config.db)
    try:
        run(config)
    except (StoreLocked, LakeError) as exc:
        raise InputError(str(exc)) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"--alert-rules {config.alert_rules}: {exc}") from None
    except OSError as exc:
        raise InputError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None


@click.command()
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same traffic.")
@click.option(
    "--hours",
    type=click.FloatRange(0.1, 24 * 14),
    default=24.0,
    show_default=True,
    help="Length of the traffic; incidents sit at fixed fractions of it.",
)
@click.option(
    "--sessions-per-hour",
    type=click.FloatRange(1, 100_000),
    default=60.0,
    show_default=True,
    help="Conversations started per hour at peak load.",
)
@click.option("--out", required=True, help="JSONL file to write (.gz compresses).")
def generate(seed: int, hours: float, sessions_per_hour: float, out: str) -> None:
    """Generate realistic LLM traffic with labelled cache incidents.

    A support bot (with title requests under the minimum), a coding agent, a
    RAG assistant and a research service on the Responses API, served by
    simulated providers (cached tokens and TTFT come from real fingerprints of
    real bodies). Writes one request record per line, each with its true cause
    and missed tokens from the simulated cache state, loadable with `cachediag
    ingest` or `cachediag replay`, and the incidents (cause, route, time span)
    to OUT.labels.json.
    """
    from rich.progress import Progress

    from analysis.traffic import TrafficGenerator, labels, labels_path
    from collector import files

    generator = TrafficGenerator(seed, hours, sessions_per_hour=sessions_per_hour)
    truth_path = labels_path(out)
    count = 0
    try:
        with files.writing(out) as handle, Progress(transient=True) as bar:
            task = bar.add_task("generating", total=hours * 3600)
            for record in generator.records():
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
                count += 1
                seconds = generator.elapsed(record)
                bar.update(task, completed=seconds)
        with open(truth_path, "w", encoding="utf-8") as handle:
            json.dump(labels(generator), handle, indent=2)
    except OSError as exc:
        raise InputError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    click.echo(f"{count:,} requests over {hours:g} h written to {out}; labels in {truth_path}")


@click.command()
@click.argument("file")
@click.option(
    "--endpoint",
    default="http://127.0.0.1:4318",
    show_default=True,
    help="OTLP/HTTP endpoint (a cachediag serve, or any OpenTelemetry Collector).",
)
@click.option(
    "--speed",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="1 replays as recorded, 60 a minute per second; 0 as fast as possible.",
)
@click.option("--now", is_flag=True, help="Shift every time so that the traffic ends now.")
@click.option(
    "--capture-content",
    is_flag=True,
    help="Send the rendered prompts too (redacted), for token-level diffs.",
)
@token_option
def replay(
    file: str, endpoint: str, speed: float, now: bool, token: str | None, capture_content: bool
) -> None:
    """Send recorded request records (from `cachediag generate`, or your own) as OTLP spans.

    Each record goes through the same instrumentation a service would run, so the
    endpoint receives exactly what instrumented services send: fingerprints, usage,
    TTFT, route, replica and versions, one service.name per record's service.
    """
    from rich.progress import Progress

    from collector.replay import Services, read_records
    from collector.replay import replay as run

    if not os.path.isfile(file):
        raise InputError(f"{file}: no such file; pass a JSONL file of request records")
    from dashboard.client import bearer

    services = Services(endpoint, bearer(server_token(token)) or None, capture_content)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("replaying", total=None)
            sent = run(services, read_records(file), speed, now, lambda n: bar.advance(task, n))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise InputError(f"{file}: {exc}") from None
    ok, dropped = services.finish()
    click.echo(
        f"{sent:,} requests replayed to {endpoint}"
        + ("" if ok and not dropped else f"; {dropped:,} spans dropped or not acknowledged")
    )
    if not ok or dropped:
        sys.exit(1)


@click.command()
@click.option(
    "--server",
    default="http://127.0.0.1:4318",
    show_default=True,
    help="The cachediag server whose query API the dashboard reads.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8501,
    show_default=True,
    help="Port the dashboard listens on (loopback).",
)
@token_option
def dashboard(server: str, port: int, token: str | None) -> None:
    """Run the Streamlit dashboard (Overview, Alerts, Misses, Prefixes, Routing).

    It reads only the server's query API, never the database, and refreshes live;
    every call sends the server's bearer token when there is one. Ctrl-C stops it.
    """
    from pathlib import Path

    from collector.settings import SERVER_ENV, TOKEN_ENV

    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    click.echo(f"dashboard on http://127.0.0.1:{port}, reading {server}")
    sys.stdout.flush()
    # Become Streamlit, so that a signal to this process reaches the dashboard itself.
    env = {**os.environ, SERVER_ENV: server}
    if server_token(token):
        env[TOKEN_ENV] = server_token(token)  # the dashboard's client reads it from there
    os.execve(sys.executable, cmd, env)


@click.command()
@click.option("--no-dashboard", is_flag=True, help="Terminal only: no Streamlit dashboard.")
@click.option(
    "--exit",
    "exit_after",
    is_flag=True,
    help="Stop everything after the summary instead of waiting for Ctrl-C.",
)
@click.option(
    "--db",
    default=".demo.duckdb",
    show_default=True,
    help="Database the demo server writes (emptied first).",
)
def demo(no_dashboard: bool, exit_after: bool, db: str) -> None:
    """The whole pipeline on a recorded day: server, OTLP replay, explanations, alerts,
    dashboard, and what was found for each injected incident.

    Starts the server and the dashboard on free loopback ports and prints their URLs;
    Ctrl-C stops every process it started.
    """
    from cachediag import demo as demo_mod

    check_database(db)  # it is emptied: never delete a file that is not a database
    try:
        sys.exit(demo_mod.run(not no_dashboard, not exit_after, db))
    except RuntimeError as exc:
        raise InputError(str(exc).splitlines()[0]) from None
