"""Human-readable reports for the CLI (rich; colour only on a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from analysis.compare import Comparison
from analysis.lint import Finding

REPORT_WIDTH = 100  # fixed when not on a terminal, so reports are reproducible


def console(stream=None) -> Console:
    """A console that colours only a terminal and wraps at a fixed width elsewhere."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else REPORT_WIDTH,
        no_color=not tty,
    )


def _visible(token: str) -> str:
    return escape(
        token.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )


def _tokens(tokens: list[str], style: str) -> str:
    """Tokens with their boundaries shown: [tok][tok]."""
    return "".join(f"[{style}]⟦{_visible(t)}⟧[/]" for t in tokens) or "[dim](end of request)[/]"


def _encoding_note(c: Comparison) -> str:
    if c.encoding_exact:
        return c.encoding
    return f"{c.encoding} ({c.encoding_requested} is not cached locally; counts are approximate)"


def diff_report(c: Comparison, name_a: str, name_b: str, out: Console) -> None:
    """Print one comparison."""
    out.print(f"[bold]cachediag diff[/] {escape(name_a)} → {escape(name_b)}")
    where = f" at [bold]{escape(c.path or c.segment)}[/]" if c.segment else ""
    side = f" (in {'A' if c.side == 'a' else 'B'})" if c.side else ""
    colour = "green" if c.cause in ("identical", "appended") else "red"
    out.print(f"  cause      [{colour} bold]{c.cause}[/]{where}{side}")
    out.print(f"  why        {escape(c.explanation)}")
    out.print(f"  fix        {escape(c.fix)}")
    if not c.identical:
        out.print(
            f"  diverges   token {c.first_diff_token:,} (byte {c.first_diff_byte:,})"
            f" · {c.shared_tokens:,} tokens shared"
        )
    out.print(f"  tokens     A {c.tokens_a:,} · B {c.tokens_b:,} · encoding {_encoding_note(c)}")
    out.print(
        f"  cache      {c.provider}: {c.cacheable_tokens:,} of {c.tokens_b:,} tokens "
        f"of B cacheable (minimum {c.minimum_tokens:,}) · {c.missed_tokens:,} at full "
        f"price · ${c.missed_cost_usd:.6f} more than cached, per request"
    )
    if not c.identical:
        context = "".join(_visible(t) for t in c.excerpt["context"])
        out.print(f"  excerpt    …{context}")
        out.print(f"         A → {_tokens(c.excerpt['a'], 'red')}")
        out.print(f"         B → {_tokens(c.excerpt['b'], 'green')}")


def diff_line(name: str, c: Comparison) -> str:
    """One comparison on one plain line (many pairs at once, for CI logs)."""
    if c.identical:
        return f"{name}: {c.cause} · {c.tokens_b:,} tokens · {c.encoding}"
    where = f" at {c.path or c.segment}" if c.segment else ""
    side = f" (in {'A' if c.side == 'a' else 'B'})" if c.side else ""
    return (
        f"{name}: {c.cause}{where}{side} · diverges at token {c.first_diff_token:,}"
        f" · {c.missed_tokens:,} of {c.tokens_b:,} tokens missed · {c.encoding}"
    )


def lint_report(
    findings: list[Finding], tokens: int, name: str, encoding: str, out: Console
) -> None:
    """Print the findings of one request."""
    out.print(f"[bold]cachediag lint[/] {escape(name)} · {tokens:,} tokens ({encoding})")
    if not findings:
        out.print("  [green]no prefix anti-patterns found[/]")
    for f in findings:
        where = f" at {escape(f.path)}" if f.path else ""
        out.print(f"  [red bold]{f.code}[/]{where}: {escape(f.message)}")
        out.print(f"      fix: {escape(f.fix)}")


def series_table(frame, group: str, out: Console) -> None:
    """A timeseries frame as a table: one row per window and group."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for name in ("window", group, "requests", "hit ratio", "p95 TTFT ms", "missed $"):
        table.add_column(name, justify="left" if name in ("window", group) else "right")
    for row in frame.iter_rows(named=True):
        ratio = row["hit_ratio"]
        p95 = row["ttft_p95_ms"]
        table.add_row(
            row["window"].strftime("%Y-%m-%d %H:%M"),
            escape(str(row["group"])),
            f"{row['requests']:,}",
            "-" if ratio is None else f"{ratio:.1%}",
            "-" if p95 is None else f"{p95:,.0f}",
            f"{row['missed_cost_usd'] or 0:.4f}",
        )
    out.print(table)


def cause_table(rows: list[dict], out: Console) -> None:
    """Causes with their requests, missed tokens and missed dollars."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for name in ("cause", "requests", "missed tokens", "missed $"):
        table.add_column(name, justify="left" if name == "cause" else "right")
    for row in rows:
        table.add_row(
            row["cause"],
            f"{row['requests']:,}",
            f"{row['missed_tokens'] or 0:,}",
            f"{row['missed_cost_usd'] or 0:.4f}",
        )
    out.print(table)


def whatif_table(result: dict, model, warmup: bool, days: float, out: Console) -> None:
    """Observed beside simulated, per route, and the saving per day."""
    from rich.table import Table

    setting = f"{model.router}, {model.replicas} replicas, TTL {model.ttl_s:g} s" + (
        ", warmup" if warmup else ""
    )
    table = Table(title=f"what if: {setting}", box=None, header_style="bold")
    for name in ("route", "requests", "hit ratio", "→", "p95 TTFT ms", "→", "missed $", "→"):
        table.add_column(name, justify="left" if name == "route" else "right")
    saved = 0.0
    for route, (seen, sim) in sorted(result.items()):
        saved += seen.missed_cost_usd - sim.missed_cost_usd
        p95 = (seen.p95_ttft_ms, sim.p95_ttft_ms)
        table.add_row(
            escape(route),
            f"{seen.requests:,}",
            f"{seen.hit_ratio:.1%}",
            f"{sim.hit_ratio:.1%}",
            "-" if p95[0] is None else f"{p95[0]:,.0f}",
            "-" if p95[1] is None else f"{p95[1]:,.0f}",
            f"{seen.missed_cost_usd:.4f}",
            f"{sim.missed_cost_usd:.4f}",
        )
    out.print(table)
    verb = "would have saved" if saved >= 0 else "would have cost"
    out.print(f"{setting} {verb} ${abs(saved) / days:.2f}/day")


def explanation_report(row: dict, out: Console) -> None:
    """One stored explanation."""
    where = f" at [bold]{escape(row['segment'])}[/]" if row.get("segment") else ""
    out.print(
        f"[bold]request[/] {escape(row['id'])} · {escape(str(row.get('route')))} · "
        f"{escape(str(row.get('replica')))} · {escape(str(row.get('request_model')))}"
    )
    out.print(f"  cause      [bold]{row['cause']}[/]{where}: {escape(row.get('detail') or '')}")
    out.print(
        f"  cached     {row['reported_cached']:,} reported of {row['expected_cached']:,} "
        f"the cache could serve · {row['missed_tokens']:,} missed · "
        f"${row['missed_cost_usd'] or 0:.6f}"
    )
    out.print(f"  after      {escape(str(row.get('predecessor_id')))}")
    if row.get("provider_verdict"):
        out.print(f"  provider   {escape(row['provider_verdict'])}")
