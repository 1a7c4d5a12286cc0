"""`cachediag ingest`: files into a database without a server, streamed, with progress."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from cachediag.options import InputError, open_store

INGEST_MEMORY_MIB = 384  # DuckDB's memory while `ingest` loads files (its default: 80 % of RAM)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--db", default="cachediag.duckdb", show_default=True, help="DuckDB file to write.")
@click.option(
    "--content/--no-content",
    default=True,
    show_default=True,
    help="Keep captured prompts (of request records, of spans, and other libraries' "
    "rebuilt ones) for token-level diffs; --no-content keeps only their hashes.",
)
@click.option(
    "--memory-mib",
    type=click.IntRange(64),
    default=INGEST_MEMORY_MIB,
    show_default=True,
    help="Memory DuckDB may use while loading; its index of stored ids must fit "
    "(about 70 MiB per million rows).",
)
def ingest(files: tuple[str, ...], db: str, content: bool, memory_mib: int) -> None:
    """Load FILES into a database without a server.

    Each line of a file is either an OTLP-JSON export (as the OpenTelemetry
    Collector's file exporter writes them) or a JSON request record
    ({"time", "request", "response", "route", "replica", ...}). Files may be
    gzip-compressed whatever their name. Rows go through the same mapping as the
    server's; a span already stored is skipped. Files are streamed (memory stays
    flat whatever their size), with progress on a terminal's stderr.

    A line that cannot be read is reported with its number and skipped; every
    other line is stored, and so is everything before the cut of a truncated
    gzip file. Exit status: 0 every line stored, 2 some lines or files were not.
    """
    import duckdb

    from collector.records import ingest_file

    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise InputError(f"{missing[0]}: no such file; pass OTLP-JSON or JSONL record files")
    store = open_store(db, memory_mib)
    stored = skipped = 0
    trouble = False
    try:
        with _ingest_progress(sum(os.path.getsize(f) for f in files)) as advance:
            for path in files:
                try:
                    got = ingest_file(store, path, content, advance)
                except OSError as exc:
                    raise InputError(
                        f"{path}: cannot read it ({exc.strerror or exc}); the files before "
                        "it are stored"
                    ) from None
                stored, skipped = stored + got.stored, skipped + got.skipped
                trouble = _report_file(path, got) or trouble
    except duckdb.Error as exc:
        raise InputError(
            f"{db}: cannot store more ({str(exc).splitlines()[0]}); the rows of the files "
            "and lines before are stored (for out of memory, raise --memory-mib)"
        ) from None
    finally:
        store.close()
    click.echo(f"{stored:,} requests stored in {db}; {skipped:,} records were not LLM calls")
    if trouble:
        sys.exit(2)


@contextmanager
def _ingest_progress(total: int) -> Iterator[Callable[[int, int], None]]:
    """advance(bytes read, rows stored so far in this file), drawn on stderr when it
    is a terminal: bytes read of the total, rows stored and rows per second."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("ingesting"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
        TimeRemainingColumn(),
    )
    done = [0, 0]  # rows of the files finished, rows of the current file

    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("ingesting", total=total, rows=0, rate=0.0)

        def advance(read: int, rows: int) -> None:
            if rows < done[1]:  # a new file started
                done[0] += done[1]
            done[1] = rows
            elapsed = bar.tasks[0].elapsed or 0.0
            total_rows = done[0] + rows
            rate = total_rows / elapsed if elapsed else 0.0
            bar.update(task, advance=read, rows=total_rows, rate=rate)

        yield advance


def _report_file(path: str, got) -> bool:
    """One line on stderr for a file with refused lines, one if it ended early;
    True when there was either."""
    if got.bad:
        named = "; ".join(f"line {n:,}: {why}" for n, why in got.first_bad)
        more = (
            f"; and {got.bad - len(got.first_bad):,} more" if got.bad > len(got.first_bad) else ""
        )
        click.echo(
            f"{path}: {got.bad:,} of {got.lines:,} lines not stored ({named}{more}); "
            "fix or remove them and ingest the file again (stored rows are not duplicated)",
            err=True,
        )
    if got.stopped:
        click.echo(f"{path}: {got.stopped}; the complete records before it are stored", err=True)
    return bool(got.bad or got.stopped)
