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


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cachediag", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


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


def test_text_report_matches_golden():
    pair = PAIRS / "dynamic_value"
    proc = _run("diff", str(pair / "a.json"), str(pair / "b.json"))
    assert proc.returncode == 1 and proc.stderr == ""
    assert "\x1b[" not in proc.stdout  # no colour when not on a terminal
    _golden(pair / "report.txt", proc.stdout.replace(str(pair), "PAIR"))


def test_render_prints_exactly_the_tokenized_text():
    path = PAIRS / "reasoning_dropped" / "a.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cachediag", "render", str(path)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout == parse(json.loads(path.read_text())).text.encode()
    assert proc.stdout.startswith(b"<|tool|>\n{")


def test_render_reads_standard_input():
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "héllo"}]})
    proc = _run("render", "-", stdin=body)
    assert proc.stdout == "<|user|>\nhéllo\n"


def test_lint_exit_codes():
    dirty = _run("lint", str(PAIRS / "dynamic_value" / "b.json"), "--format", "json")
    assert dirty.returncode == 1
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
        proc = _run(*args)
        assert proc.returncode == 2, args
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(bad) in lines[0]


def test_bad_options_exit_2_with_one_clear_line(tmp_path):
    good = str(PAIRS / "identical" / "a.json")
    proc = _run("diff", good, good, "--encoding", "nope")
    assert proc.returncode == 2 and "unknown encoding 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
    prices = tmp_path / "p.toml"
    prices.write_text("[prices\n")
    proc = _run("diff", good, good, "--prices", str(prices))
    assert proc.returncode == 2 and "cannot use it as a price file" in proc.stderr


def test_help_explains_every_command():
    for command in ("diff", "render", "lint"):
        proc = _run(command, "--help")
        assert proc.returncode == 0 and "Usage:" in proc.stdout
    assert "Exit status: 0 identical, 1 different, 2 bad input" in _run("diff", "--help").stdout
