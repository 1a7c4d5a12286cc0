"""The house rules as functions over a source tree; tests/test_house.py applies them.

Each check returns every offender as a "path:line: what" string, so one failing
run names them all. A module is a .py file under one of the given directories;
its name is its path with dots (a package's __init__.py is the package).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# A string is SQL when it opens (after blanks) with a statement keyword and the
# words that keyword must be followed by, in upper case as the project writes SQL:
# "SELECT ... FROM", "INSERT INTO", "UPDATE t SET", "DELETE FROM", "CREATE TABLE",
# "WITH x AS (". Prose ("Select the rows from...") and single words do not match.
SQL = re.compile(
    r"^\s*(SELECT\b[\s\S]*\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b"
    r"|DELETE\s+FROM\b|CREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?(UNIQUE\s+)?"
    r"(TABLE|VIEW|INDEX|SEQUENCE|MACRO)\b|WITH\s+\w+\s+AS\s*\()"
)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # relative to the tree's root
    tree: ast.Module
    lines: int


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    top_level: bool  # runs when the module is imported (not inside a function)


def modules(root: Path, dirs: Iterable[str]) -> dict[str, Module]:
    """Every module under ``dirs`` of ``root``, by dotted name."""
    found = {}
    for top in dirs:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            text = path.read_text(encoding="utf-8")
            found[".".join(parts)] = Module(
                ".".join(parts), rel, parse(text, str(rel)), text.count("\n")
            )
    return found


def parse(text: str, name: str, attempts: int = 3) -> ast.Module:
    """``ast.parse``, again when CPython 3.11's spurious SystemError strikes.

    Before 3.12, ast.parse counts its recursion depth in state every thread
    shares, so a parse racing one on another thread of the test process can
    fail with "AST constructor recursion depth mismatch"
    (python/cpython#106905, pytest-dev/pytest#10763). The parse is
    deterministic; only that error is tried again, and only ``attempts`` times.
    """
    for _ in range(attempts - 1):
        try:
            return ast.parse(text, name)
        except SystemError as error:
            if "recursion depth mismatch" not in str(error):
                raise
    return ast.parse(text, name)


def long_modules(mods: dict[str, Module]) -> list[str]:
    return [
        f"{m.path}:1: {m.lines} lines (limit {MAX_MODULE_LINES})"
        for m in mods.values()
        if m.lines > MAX_MODULE_LINES
    ]


def long_functions(mods: dict[str, Module]) -> list[str]:
    """Functions (and methods) whose def line to last line span over the limit."""
    out = []
    for m in mods.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(
                        f"{m.path}:{node.lineno}: {node.name} is {length} lines "
                        f"(limit {MAX_FUNCTION_LINES})"
                    )
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], top_level: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Import statements in ``body``, skipping ``if TYPE_CHECKING:`` blocks; whether each
    runs at import time (outside any function or class method body)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, top_level
        elif isinstance(node, ast.If) and _type_checking(node):
            yield from _imports(node.orelse, top_level)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _imports(node.body, False)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    yield from _imports([child], top_level)


def _resolve(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = mod.name.split(".")
    if mod.path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(mod: Module, known: Iterable[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported name, line, at import time) for every import of ``mod``: project
    modules by their full name (``from pkg import sub`` names ``pkg.sub`` when that is
    a module), anything else by the name as written."""
    known = set(known)
    for node, top in _imports(mod.tree.body, True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, top
            continue
        base = _resolve(mod, node)
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        if len(subs) < len(node.names):
            yield base, node.lineno, top
        for sub in subs:
            yield sub, node.lineno, top


def graph(mods: dict[str, Module]) -> dict[str, list[Edge]]:
    """Project-internal import edges of every module."""
    return {
        name: [Edge(t, line, top) for t, line, top in imports(m, mods) if t in mods]
        for name, m in mods.items()
    }


def _components(edges: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative) with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for edge in children:
                if edge.target not in index:
                    index[edge.target] = low[edge.target] = len(index)
                    stack.append(edge.target)
                    on_stack.add(edge.target)
                    work.append((edge.target, iter(edges[edge.target])))
                    break
                if edge.target in on_stack:
                    low[node] = min(low[node], index[edge.target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def circles(mods: dict[str, Module]) -> list[str]:
    """One line per import inside a circle of modules, function-level imports included."""
    edges = graph(mods)
    out = []
    for comp in _components(edges):
        members = set(comp)
        for name in comp:
            for edge in edges[name]:
                if edge.target in members and edge.target != name:
                    out.append(
                        f"{mods[name].path}:{edge.line}: imports {edge.target} "
                        f"(circle: {', '.join(comp)})"
                    )
    return out


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            ids.add(id(first.value))
    return ids


def sql_strings(mods: dict[str, Module], allowed: tuple[str, ...]) -> list[str]:
    """String literals (f-string parts too, docstrings not) that are SQL statements, in
    modules whose path starts with none of ``allowed``."""
    out = []
    for m in mods.values():
        if m.path.as_posix().startswith(allowed):
            continue
        docs = _docstrings(m.tree)
        hits = [
            node
            for node in ast.walk(m.tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and SQL.match(node.value)
        ]
        for node in sorted(hits, key=lambda n: n.lineno):
            first = node.value.strip().splitlines()[0][:50]
            out.append(f"{m.path}:{node.lineno}: SQL {first!r}")
    return out


def heavy_imports(mods: dict[str, Module], room: str, banned: set[str]) -> list[str]:
    """Modules of package ``room`` that import any of ``banned`` when they are imported,
    directly or through project modules (and their packages' __init__), with the chain."""
    out = []
    for name in sorted(n for n in mods if n == room or n.startswith(room + ".")):
        parts = name.split(".")
        steps = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        seen = set(steps)
        todo = [(step, [step]) for step in steps if step in mods]
        while todo:
            current, chain = todo.pop()
            for target, line, top in imports(mods[current], mods):
                if not top:
                    continue
                if target.split(".")[0] in banned:
                    via = " -> ".join(chain)
                    out.append(f"{mods[current].path}:{line}: imports {target} (via {via})")
                    continue
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    step = ".".join(parts[:i])
                    if step in mods and step not in seen:
                        seen.add(step)
                        todo.append((step, [*chain, step]))
    return sorted(set(out))
