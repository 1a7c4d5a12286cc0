"""The CLI end to end: golden reports, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.prompt import parse
from cachediag.cli import main
from tests.cli_run import cachediag

PAIRS = Path(__file__).parent.parent / "sample_data" / "pairs"
CAUSES = sorted(p.name for p in PAIRS.iterdir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
REQUIRED = {
    "identical",
    "first_diff_token",
    "first_diff_byte",
    "shared_tokens",
    "tokens_a",
    "tokens_b",
    "encoding",
    "segment",
    "cause",
    "explanation",
    "fix",
    "cacheable_tokens",
    "missed_tokens",
    "missed_cost_usd",
}


def _golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert actual == path.read_text(), f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


def test_there_is_a_pair_for_every_cause():
    from analysis.causes import SHAPE_CAUSES

    assert set(CAUSES) == set(SHAPE_CAUSES)


@pytest.mark.parametrize("cause", CAUSES)
def test_diff_json_matches_golden(cause):
    pair = PAIRS / cause
    result = CliRunner().invoke(
        main, ["diff", str(pair / "a.json"), str(pair / "b.json"), "--format", "json"]
    )
    assert result.exit_code == (0 if cause == "identical" else 1), result.output
    data = json.loads(result.output)
    assert set(data) >= REQUIRED and data["cause"] == cause
    _golden(pair / "expected.json", result.output)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["dynamic_value/a.json", "dynamic_value/b.json", "--format", "json"], 1),
        (["identical/a.json", "identical/b.json", "--format", "json"], 0),
        (["dynamic_value/a.json", "dynamic_value/b.json"], 1),
        (["dynamic_value/a.json", "no/such.json"], 2),
        (["--help"], 0),
    ],
)
def test_a_diff_process_leaves_fast_with_its_whole_output_and_status(args, status):
    """``cachediag diff`` skips the interpreter's teardown (``cli.run``): what it printed and
    its exit status are still what the command gives in process."""
    paths = [str(PAIRS / a) if a.endswith(".json") else a for a in args]
    command = [sys.executable, "-m", "cachediag", "diff", *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    inside = cachediag("diff", *paths)
    assert done.returncode == inside.exit_code == status
    if args == ["--help"]:  # its usage line names the program as it was called
        assert "Usage:" in done.stdout and "first differing token" in done.stdout
    else:
        assert done.stdout == inside.stdout and (done.stdout.strip() or status == 2)
    assert done.stderr.startswith("Error: ") == (status == 2)


def test_text_report_matches_golden():
    pair = PAIRS / "dynamic_value"
    proc = cachediag("diff", str(pair / "a.json"), str(pair / "b.json"))
    assert proc.exit_code == 1 and proc.stderr == ""
    assert "\x1b[" not in proc.stdout  # no colour when not on a terminal
    _golden(pair / "report.txt", proc.stdout.replace(str(pair), "PAIR"))


def test_render_prints_exactly_the_tokenized_text():
    path = PAIRS / "reasoning_dropped" / "a.json"
    proc = cachediag("render", str(path))
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout_bytes == parse(json.loads(path.read_text())).text.encode()
    assert proc.stdout_bytes.startswith(b"<|tool|>\n{")


def test_render_reads_standard_input():
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "héllo"}]})
    proc = cachediag("render", "-", stdin=body)
    assert proc.stdout == "<|user|>\nhéllo\n"


def test_lint_exit_codes():
    dirty = cachediag("lint", str(PAIRS / "dynamic_value" / "b.json"), "--format", "json")
    assert dirty.exit_code == 1
    assert json.loads(dirty.stdout)["findings"][0]["code"] == "dynamic_in_prefix"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{", "invalid JSON at line 1 column 2"),
        ('{"foo": 1}', "no request body found"),
        ('{"messages": [{"content": "x"}]}', "not a valid openai_chat request body"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = PAIRS / "identical" / "a.json"
    for args in (
        ["diff", str(bad), str(good)],
        ["diff", str(good), str(bad)],
        ["lint", str(bad)],
        ["render", str(bad)],
    ):
        proc = cachediag(*args)
        assert proc.exit_code == 2, args
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(bad) in lines[0]


def test_bad_options_exit_2_with_one_clear_line(tmp_path):
    good = str(PAIRS / "identical" / "a.json")
    proc = cachediag("diff", good, good, "--encoding", "nope")
    assert proc.exit_code == 2 and "unknown encoding 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
    prices = tmp_path / "p.toml"
    prices.write_text("[prices\n")
    proc = cachediag("diff", good, good, "--prices", str(prices))
    assert proc.exit_code == 2 and "cannot use it as a price file" in proc.stderr


def test_help_gives_the_exit_statuses():
    diff, lint = cachediag("diff", "--help").stdout, cachediag("lint", "--help").stdout
    assert "Exit status: 0 identical, 1 different, 2 bad input" in diff
    assert "Exit status: 0 clean, 1 findings, 2 bad input" in lint


def _hostile(tmp_path: Path) -> dict[str, bytes]:
    """Request files each of which once ended in a traceback (exit 1, "different")."""
    schema: dict = {"type": "string"}
    for _ in range(450):
        schema = {"type": "object", "properties": {"a": schema}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    hi = [{"role": "user", "content": "hi"}]
    return {
        "deep": b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "long int": b'{"messages": [], "max_tokens": ' + b"9" * 5000 + b"}",
        "messages int": b'{"model": "gpt-4o", "messages": 5}',
        "message int": b'{"messages": [5]}',
        "content dict": b'{"messages": [{"role": "user", "content": {"a": 1}}]}',
        "tools str": b'{"messages": [], "tools": "all"}',
        "deep schema": json.dumps({"model": "gpt-4o", "tools": [tool], "messages": hi}).encode(),
        "latin-1": '{"messages": [{"role": "user", "content": "café"}]}'.encode("latin-1"),
        "binary": bytes(range(256)),
    }


@pytest.mark.parametrize("command", ["render", "lint", "diff a", "diff b"])
def test_hostile_requests_are_exit_2_and_one_line(tmp_path, command):
    good = str(PAIRS / "identical" / "a.json")
    runner = CliRunner()
    for name, data in _hostile(tmp_path).items():
        bad = tmp_path / "bad.json"
        bad.write_bytes(data)
        args = {
            "render": ["render", str(bad)],
            "lint": ["lint", str(bad)],
            "diff a": ["diff", str(bad), good],
            "diff b": ["diff", good, str(bad)],
        }[command]
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {bad}: "), (name, lines)
        assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "prices, message",
    [
        (bytes(range(256)), "not UTF-8"),
        (b"[prices\n", "invalid TOML"),
        (b'[profiles.openai]\nminimum = "x"\n', "profiles.openai.minimum must be a number"),
        (b"profiles = 5\n", "'profiles' and 'prices' must be tables"),
        (b'[prices]\n"gpt-4o" = 3\n', "prices.gpt-4o must be"),
        (b'[prices."gpt-4o"]\ninput = -1\ncached = 0\n', "prices.gpt-4o.input must be"),
        (b"[profiles.openai.minimum_by_model]\ngpt = [1]\n", "minimum_by_model.gpt must be"),
    ],
)
def test_a_bad_price_file_is_exit_2_and_one_line(tmp_path, prices, message):
    path = tmp_path / "prices.toml"
    path.write_bytes(prices)
    good = str(PAIRS / "identical" / "a.json")
    for args in (
        ["diff", good, good, "--prices", str(path)],
        ["lint", good, "--prices", str(path)],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert message in line and str(path) in line


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "--db"],
        ["explain", "--request", "x", "--db"],
        ["alerts", "--db"],
        ["series", "--db"],
        ["simulate", "--db"],
        ["serve", "--port", "0", "--no-grpc", "--db"],
        ["demo", "--no-dashboard", "--exit", "--db"],
    ],
)
def test_a_file_that_is_not_duckdb_is_exit_2_and_one_line(tmp_path, args):
    db = tmp_path / "notes.duckdb"
    db.write_text("these are my notes, not a database\n")
    result = CliRunner().invoke(main, [*args, str(db)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert f"{db}: not a DuckDB database" in line
    assert db.read_text() == "these are my notes, not a database\n"  # left alone


def test_alerts_server_sends_the_token(tmp_path, monkeypatch):
    from tests.servers import Server

    server = Server(tmp_path / "db.duckdb", "--workers", "0", "--token", "s3", "--no-grpc")
    server.start()
    try:
        monkeypatch.delenv("CACHEDIAG_TOKEN", raising=False)
        runner = CliRunner()
        ok = runner.invoke(main, ["alerts", "--server", server.url, "--token", "s3"])
        assert ok.exit_code == 0 and ok.output == "no alerts\n", ok.output
        refused = runner.invoke(main, ["alerts", "--server", server.url])
        assert refused.exit_code == 2
        (line,) = refused.output.strip().splitlines()
        assert "answered 401" in line and "--token" in line
        monkeypatch.setenv("CACHEDIAG_TOKEN", "s3")
        assert runner.invoke(main, ["alerts", "--server", server.url]).exit_code == 0
    finally:
        server.stop()


def test_a_database_a_server_holds_is_one_clear_line(tmp_path):
    from tests.servers import Server

    db = tmp_path / "db.duckdb"
    server = Server(db, "--workers", "0", "--no-grpc").start()
    try:
        runner = CliRunner()
        for args in (["explain"], ["alerts"], ["series"], ["simulate"], ["ingest", str(db)]):
            result = runner.invoke(main, [*args, "--db", str(db)])
            assert result.exit_code == 2, (args, result.output)
            (line,) = result.output.strip().splitlines()
            assert "is open in another process (a running cachediag serve?)" in line, line
    finally:
        server.stop()


def test_diff_compares_json_nested_deep_inside_a_string_as_text(tmp_path):
    paths = []
    for leaf in "12":
        args = "[" * 900 + leaf + "]" * 900
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}
        body = {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
            ],
        }
        paths.append(tmp_path / f"{leaf}.json")
        paths[-1].write_text(json.dumps(body))
    result = CliRunner().invoke(main, ["diff", "--format", "json", *map(str, paths)])
    assert result.exit_code == 1, result.output
    found = json.loads(result.output)
    assert found["segment"] == "messages[1].tool_calls" and found["cause"] != "identical"


def test_help_explains_the_new_flags():
    runner = CliRunner()
    for command in ("alerts", "dashboard", "replay", "serve"):
        text = " ".join(runner.invoke(main, [command, "--help"]).output.split())
        assert "--token" in text and "CACHEDIAG_TOKEN" in text, command
    ingest = " ".join(runner.invoke(main, ["ingest", "--help"]).output.split())
    assert "--memory-mib" in ingest and "reported with its number" in ingest
