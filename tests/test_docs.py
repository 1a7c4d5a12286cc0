"""README's command reference is every command's --help, word for word (as sqlite-utils
checks its docs). After changing a command, rewrite the section:

    python -m tests.test_docs --write
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from cachediag.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## Command reference"
INTRO = (
    "What `cachediag --help` and `cachediag COMMAND --help` print. "
    "`tests/test_docs.py` fails when this section and the commands differ; "
    "`python -m tests.test_docs --write` rewrites it."
)
BLOCK = re.compile(r"^### `cachediag ?([\w-]*)`\n\n```text\n(.*?)```\n", re.M | re.S)


def help_text(command: str | None) -> str:
    """``cachediag [COMMAND] --help`` at 80 columns, as a terminal that wide shows it."""
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(main, args, prog_name="cachediag", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def section() -> str:
    """The command reference as README should hold it."""
    parts = [HEADING, "", INTRO, ""]
    for command in [None, *sorted(main.commands)]:
        name = f"cachediag {command}" if command else "cachediag"
        parts += [f"### `{name}`", "", "```text", help_text(command).rstrip("\n"), "```", ""]
    return "\n".join(parts) + "\n"


def split(readme: str) -> tuple[str, str, str]:
    """README as (before the section, the section, from the next ``## `` heading on)."""
    start = readme.index(HEADING + "\n")
    end = readme.find("\n## ", start + len(HEADING))
    end = len(readme) if end < 0 else end + 1
    return readme[:start], readme[start:end], readme[end:]


def test_every_command_is_in_the_readme():
    _, written, _ = split(README.read_text(encoding="utf-8"))
    documented = {name for name, _ in BLOCK.findall(written)}
    assert len(main.commands) == 15
    assert set(main.commands) | {""} == documented, "python -m tests.test_docs --write"


def test_the_readme_shows_each_commands_help_as_it_is():
    _, written, _ = split(README.read_text(encoding="utf-8"))
    shown = dict(BLOCK.findall(written))
    for command in ["", *sorted(main.commands)]:
        assert shown.get(command) == help_text(command or None), (
            f"README's `cachediag {command} --help` differs: python -m tests.test_docs --write"
        )
    assert written == section()


def test_a_changed_help_fails_the_check(monkeypatch):
    monkeypatch.setattr(main.commands["render"], "help", "Something else.")
    _, written, _ = split(README.read_text(encoding="utf-8"))
    assert written != section()
    assert dict(BLOCK.findall(written))["render"] != help_text("render")


API_ROW = re.compile(r"^\| `(GET|POST) ([^`]+)` \|", re.M)


def test_the_readme_api_table_lists_every_endpoint_of_the_openapi_document():
    """Each path and method the generated document has is a row of README's table,
    and the table has no row the API lacks (path parameters compared by position)."""
    from collector.api.app import PREFIX, create_app

    doc = create_app(collector=None).openapi()
    served = {
        (method.upper(), re.sub(r"\{\w+\}", "{}", path.removeprefix(PREFIX + "/")))
        for path, methods in doc["paths"].items()
        for method in methods
    } | {("GET", "openapi.json")}
    listed = {
        (method, re.sub(r"\{\w+\}", "{}", path))
        for method, path in API_ROW.findall(README.read_text(encoding="utf-8"))
    }
    assert listed == served


def write() -> None:
    before, _, after = split(README.read_text(encoding="utf-8"))
    README.write_text(before + section() + after, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_docs --write")
    write()


def test_the_readme_documents_every_alert_threshold_with_its_default():
    import dataclasses

    from analysis.alerts import Rules

    shown = {}
    for line in README.read_text().splitlines():
        if line.startswith("| `") and line.count("|") == 4:
            names, defaults, _ = (cell.strip() for cell in line.strip("|").split("|"))
            names = [n.strip("`") for n in names.split(", ")]
            values = defaults.split(", ")
            if len(names) == 1:
                values = [values]
            shown |= dict(zip(names, values, strict=True))
    for field in dataclasses.fields(Rules):
        default = field.default if isinstance(field.default, tuple) else (field.default,)
        found = shown.get(field.name)
        assert found is not None, f"{field.name} is not in the README's thresholds table"
        found = found if isinstance(found, list) else [found]
        as_text = [str(v) for v in default]
        if isinstance(default[0], str):
            assert found == as_text, field.name
        else:
            assert [float(v.replace(",", "")) for v in found] == list(default), field.name
