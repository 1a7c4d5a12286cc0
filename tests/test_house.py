"""The house rules hold over the whole tree, and each check can fail.

Every check names all its offenders at once as path:line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import house

ROOT = Path(__file__).resolve().parent.parent
DIRS = ("analysis", "collector", "cachediag", "dashboard", "benchmarks", "tests")
# The shipped code; tests and benchmarks may read a database directly to check or
# measure what the store holds.
PRODUCT = ("analysis/", "collector/", "cachediag/", "dashboard/")
SQL_HOME = ("collector/store/", "collector/service")
IN_SERVICE = "collector.instrument"
HEAVY = {"numpy", "polars", "duckdb", "pyarrow"}


@pytest.fixture(scope="module")
def tree() -> dict[str, house.Module]:
    return house.modules(ROOT, DIRS)


def _judge(offenders: list[str]) -> None:
    assert not offenders, "\n" + "\n".join(offenders)


def test_no_module_is_over_400_lines(tree):
    _judge(house.long_modules(tree))


def test_no_function_is_over_60_lines(tree):
    _judge(house.long_functions(tree))


def test_no_import_circle(tree):
    _judge(house.circles(tree))


def test_sql_lives_in_the_store_and_the_service(tree):
    shipped = {n: m for n, m in tree.items() if m.path.as_posix().startswith(PRODUCT)}
    _judge(house.sql_strings(shipped, SQL_HOME))


def test_the_in_service_room_imports_nothing_heavy(tree):
    assert IN_SERVICE in tree
    _judge(house.heavy_imports(tree, IN_SERVICE, HEAVY))


# --- the checks themselves, on a small tree ---------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, house.Module]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return house.modules(root, ["pkg"])


def test_long_modules_and_functions_are_named_with_their_line(tmp_path):
    body = "".join(f"    x = {i}\n" for i in range(60))
    mods = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/short.py": "def ok():\n" + body[: -len("    x = 59\n")],
            "pkg/long.py": "\n" * 5 + "def too_long():\n" + body + "\n" * 400,
        },
    )
    assert house.long_modules(mods) == ["pkg/long.py:1: 466 lines (limit 400)"]
    assert house.long_functions(mods) == ["pkg/long.py:6: too_long is 61 lines (limit 60)"]


def test_circles_count_function_level_imports_but_not_type_checking(tmp_path):
    mods = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def f():\n    from . import a\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n",
            "pkg/d.py": "import pkg.c\n",
            "pkg/e.py": "from pkg.f import thing\n",
            "pkg/f.py": "from pkg.e import other\n",
        },
    )
    assert sorted(house.circles(mods)) == [
        "pkg/a.py:1: imports pkg.b (circle: pkg.a, pkg.b)",
        "pkg/b.py:2: imports pkg.a (circle: pkg.a, pkg.b)",
        "pkg/e.py:1: imports pkg.f (circle: pkg.e, pkg.f)",
        "pkg/f.py:1: imports pkg.e (circle: pkg.e, pkg.f)",
    ]


def test_a_package_init_is_a_module_of_a_circle(tmp_path):
    mods = _write(
        tmp_path, {"pkg/__init__.py": "from pkg.a import x\n", "pkg/a.py": "import pkg\n"}
    )
    assert len(house.circles(mods)) == 2


def test_sql_is_found_in_strings_and_f_strings_but_not_prose(tmp_path):
    mods = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/store/db.py": 'Q = "SELECT a FROM t"\n',
            "pkg/q.py": (
                '"""SELECT the rows FROM a docstring is prose."""\n'
                'A = "Select the rows from t"\n'
                'B = "  SELECT a\\n  FROM t"\n'
                'C = f"DELETE FROM {name} WHERE x"\n'
                'D = "INSERT INTO t VALUES (1)"\n'
                'E = "UPDATE settings SET x = 1"\n'
                'F = "CREATE TABLE IF NOT EXISTS t (a INT)"\n'
                'G = "WITH c AS (SELECT 1) SELECT * FROM c"\n'
                'H = "SELECT"\n'
            ),
        },
    )
    found = house.sql_strings(mods, ("pkg/store/",))
    assert [f.split(":")[1] for f in found] == ["3", "4", "5", "6", "7", "8"]
    assert all(f.startswith("pkg/q.py:") for f in found)


def test_heavy_imports_are_followed_through_project_modules_and_packages(tmp_path):
    mods = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/room/__init__.py": "",
            "pkg/room/light.py": "import json\nfrom pkg import core\n",
            "pkg/room/lazy.py": "def f():\n    import numpy\n",
            "pkg/room/typed.py": "import typing\nif typing.TYPE_CHECKING:\n    import polars\n",
            "pkg/core/__init__.py": "from pkg.core.maths import mean\n",
            "pkg/core/maths.py": "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n",
        },
    )
    assert house.heavy_imports(mods, "pkg.room", {"numpy", "polars"}) == [
        "pkg/core/maths.py:2: imports numpy (via pkg.room.light -> pkg.core -> pkg.core.maths)"
    ]
    mods = _write(tmp_path, {"pkg/__init__.py": "import polars\n"})
    assert "pkg/__init__.py:1: imports polars (via pkg)" in house.heavy_imports(
        mods, "pkg.room", {"polars"}
    )


def _failing(first_n: int, message: str, calls: list, real=ast.parse):
    def parse(text, name):
        calls.append(name)
        if len(calls) <= first_n:
            raise SystemError(message)
        return real(text, name)

    return parse


def test_a_spurious_ast_recursion_mismatch_is_parsed_again_but_not_forever(monkeypatch):
    mismatch = "AST constructor recursion depth mismatch (before=141, after=172)"
    calls: list = []
    monkeypatch.setattr(ast, "parse", _failing(2, mismatch, calls))
    assert isinstance(house.parse("x = 1\n", "m.py"), ast.Module)
    assert calls == ["m.py"] * 3
    calls.clear()
    monkeypatch.setattr(ast, "parse", _failing(3, mismatch, calls))
    with pytest.raises(SystemError, match="mismatch"):
        house.parse("x = 1\n", "m.py")
    calls.clear()
    monkeypatch.setattr(ast, "parse", _failing(1, "another error", calls))
    with pytest.raises(SystemError, match="another"):
        house.parse("x = 1\n", "m.py")
    assert len(calls) == 1
