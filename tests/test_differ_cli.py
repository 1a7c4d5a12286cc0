"""``cachediag diff`` over many pairs: JSONL files line by line, a folder of pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cachediag

PAIRS = Path(__file__).parent.parent / "sample_data" / "pairs"
CAUSES = sorted(p.name for p in PAIRS.iterdir())


def _jsonl(tmp_path: Path, name: str, causes: list[str], side: str) -> str:
    path = tmp_path / name
    lines = [json.dumps(json.loads((PAIRS / c / side).read_text())) for c in causes]
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is skipped
    return str(path)


def test_a_folder_of_pairs_gives_one_line_per_pair():
    proc = cachediag("diff", str(PAIRS))
    assert proc.exit_code == 1 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == CAUSES
    assert all(line.split(": ")[1].split()[0] == line.split(":")[0] for line in lines)


def test_a_folder_of_pairs_as_json_lines_matches_the_single_diffs():
    proc = cachediag("diff", str(PAIRS), "--format", "json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["pair"], r["cause"]) for r in rows] == [(c, c) for c in CAUSES]
    for row in rows:
        expected = json.loads((PAIRS / row.pop("pair") / "expected.json").read_text())
        assert row == expected


def test_jsonl_files_are_compared_line_by_line(tmp_path):
    a = _jsonl(tmp_path, "a.jsonl", ["identical", "whitespace"], "a.json")
    b = _jsonl(tmp_path, "b.jsonl", ["identical", "whitespace"], "b.json")
    proc = cachediag("diff", a, b)
    assert proc.exit_code == 1
    first, second = proc.stdout.splitlines()
    assert first.startswith("line 1: identical") and second.startswith("line 2: whitespace")
    rows = [
        json.loads(line)
        for line in cachediag("diff", a, b, "--format", "json").stdout.split("\n")
        if line
    ]
    assert [r["cause"] for r in rows] == ["identical", "whitespace"]


def test_all_identical_pairs_exit_zero(tmp_path):
    a = _jsonl(tmp_path, "a.jsonl", ["identical"] * 3, "a.json")
    b = _jsonl(tmp_path, "b.jsonl", ["identical"] * 3, "b.json")
    proc = cachediag("diff", a, b)
    assert proc.exit_code == 0 and len(proc.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: ("a.jsonl", ["identical", "key_order"], "b.jsonl", ["identical"]), "holds 2"),
        (lambda t: ("a.jsonl", ["identical"], "b.json", None), "not one of each"),
        (lambda t: ("a.jsonl", ["identical"], "bad.jsonl", "bad"), "bad.jsonl:2:"),
        (lambda t: ("empty.jsonl", [], "b.jsonl", ["identical"]), "no requests"),
    ],
)
def test_bad_batches_are_one_line_and_exit_two(tmp_path, make, message):
    name_a, causes_a, name_b, causes_b = make(tmp_path)
    a = _jsonl(tmp_path, name_a, causes_a, "a.json")
    if causes_b is None:
        b = str(PAIRS / "identical" / "b.json")
    elif causes_b == "bad":
        b = str(tmp_path / name_b)
        Path(b).write_text(json.dumps({"model": "gpt-4o", "messages": []}) + '\n{"x": 1}\n')
    else:
        b = _jsonl(tmp_path, name_b, causes_b, "b.json")
    proc = cachediag("diff", a, b)
    assert proc.exit_code == 2 and proc.stdout == ""
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_a_folder_without_pairs_and_a_missing_one(tmp_path):
    for target in (tmp_path, tmp_path / "missing"):
        proc = cachediag("diff", str(target))
        assert proc.exit_code == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_help_names_the_batch_inputs():
    text = cachediag("diff", "--help").stdout
    assert "a.jsonl b.jsonl" in text and "a folder per pair" in text
