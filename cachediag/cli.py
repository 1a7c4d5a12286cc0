"""The ``cachediag`` command line: thin commands over the analysis library."""

from __future__ import annotations

import json
import os
import sys

import click

from cachediag import analyze, collect, insight, lake, loading
from cachediag.options import (
    encoding_option,
    output_format,
    parse_request,
    price_table,
    prices_option,
    provider_option,
    request_format,
    tokenizer_for,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cachediag")
def main() -> None:
    """cachediag: find out why your LLM prompt cache stopped paying.

    Request bodies: render one as a prefix cache sees it, diff two down to the
    first differing token, lint one for prefix anti-patterns. Traffic: collect it
    (serve, ingest, generate, replay), explain every miss, raise alerts, chart it
    (series, dashboard) and replay it under another router or TTL (simulate).
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
    prompt = parse_request(file, request_format)
    sys.stdout.buffer.write(prompt.text.encode("utf-8", "surrogatepass"))
    sys.stdout.flush()


@main.command()
@click.argument("file_a")
@click.argument("file_b", required=False)
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
    file_b: str | None,
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

    \b
    Many pairs at once (CI), one line each (one JSON object per line with
    --format json), exit 1 when any pair differs:
      cachediag diff a.jsonl b.jsonl   JSONL files of requests, line by line
      cachediag diff PAIRS/            a folder per pair, each with a.json, b.json
    """
    from analysis.compare import compare_prompts
    from cachediag import pairs

    todo = pairs.load(file_a, file_b, request_format)
    table = price_table(prices)
    differs = False
    for pair in todo:
        a, b = pair.a, pair.b
        tokenizer = tokenizer_for(b.model or a.model, encoding)
        result = compare_prompts(a, b, tokenizer, provider, block_size, table)
        differs = differs or result.cause != "identical"
        if pairs.is_batch(file_a, file_b):
            _batch_line(pair.name, result, output)
        elif output == "json":
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        else:
            from cachediag import report

            report.diff_report(result, file_a, pair.name, report.console())
    sys.exit(1 if differs else 0)


def _batch_line(name: str, result, output: str) -> None:
    if output == "json":
        click.echo(json.dumps({"pair": name, **result.to_dict()}, ensure_ascii=False))
    else:
        from cachediag import report

        click.echo(report.diff_line(name, result))


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

    prompt = parse_request(file, request_format)
    tokenizer = tokenizer_for(prompt.model, encoding)
    findings, tokens = run_lint(prompt, tokenizer, provider, price_table(prices))
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


for _command in (
    loading.ingest,
    collect.serve,
    collect.generate,
    collect.replay,
    collect.dashboard,
    collect.demo,
    analyze.series,
    analyze.explain,
    analyze.alerts,
    analyze.simulate,
    insight.insights,
    lake.lake,
):
    main.add_command(_command)


def run() -> None:
    """The console entry (``cachediag``, ``python -m cachediag``). A ``diff`` leaves without
    the interpreter's teardown: freeing the loaded tokenizer and modules took about 15 ms of a
    170 ms process (bench_diff.py), and a diff holds nothing to finalize. Its output is
    flushed first; a flush that fails takes the ordinary way out."""
    try:
        main()
    except SystemExit as done:
        if sys.argv[1:2] != ["diff"] or not isinstance(done.code, int | None):
            raise
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            raise done from None
        os._exit(done.code or 0)
