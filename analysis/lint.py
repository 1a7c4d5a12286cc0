"""Prefix anti-patterns visible in a single request."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analysis import fingerprint, jsonpath, providers, volatile
from analysis.prompt import Prompt, Segment
from analysis.tokens import Tokenizer

_SCHEMA_KEYS = ("parameters", "input_schema")


@dataclass(frozen=True)
class Finding:
    """One anti-pattern: what, where, and the fix."""

    code: str
    path: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _schema(tool: dict) -> tuple[str, Any]:
    inner = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    prefix = "function." if inner is not tool else ""
    for key in _SCHEMA_KEYS:
        if key in inner:
            return prefix + key, inner[key]
    return "", None


def _unsorted_properties(value: Any, path: str) -> str | None:
    """Path of the first ``properties`` map whose keys are not sorted."""
    if isinstance(value, dict):
        props = value.get("properties")
        if isinstance(props, dict) and list(props) != sorted(props):
            return jsonpath.child(path, "properties")
        for key, item in value.items():
            found = _unsorted_properties(item, jsonpath.child(path, key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unsorted_properties(item, jsonpath.child(path, i))
            if found:
                return found
    return None


def _volatile(seg: Segment) -> list[Finding]:
    out = []
    start = seg.body_start
    for value in volatile.find(seg.body):
        path = seg.locate(start + value.start)
        in_schema = any(f".{k}" in path for k in _SCHEMA_KEYS)
        code = "volatile_in_schema" if in_schema else "dynamic_in_prefix"
        out.append(
            Finding(
                code,
                path,
                f"{value.kind} {value.text!r} in the cacheable prefix changes per request",
                "Move it after the prefix (into the last user message or request metadata).",
            )
        )
    return out


def _tool_findings(prompt: Prompt) -> list[Finding]:
    out = []
    names = [
        s.value.get("name") or (s.value.get("function") or {}).get("name") for s in prompt.tools
    ]
    if all(isinstance(n, str) for n in names) and names != sorted(names):
        out.append(
            Finding(
                "tools_unordered",
                "tools",
                "tools are not in a canonical (sorted by name) order; a list "
                "built from an unordered registry reshuffles between requests",
                "Sort tools by name, declare the full list every time.",
            )
        )
    for seg in prompt.tools:
        key, schema = _schema(seg.value)
        found = _unsorted_properties(schema, f"{seg.path}.{key}") if key else None
        if found:
            out.append(
                Finding(
                    "schema_keys_unsorted",
                    found,
                    "schema properties are not in sorted order; a serializer "
                    "without a fixed key order can emit them differently",
                    "Serialize schemas with sorted keys (sort_keys=True).",
                )
            )
    return out


def lint(
    prompt: Prompt, tokenizer: Tokenizer, provider: str | None = None, table: dict | None = None
) -> tuple[list[Finding], int]:
    """Findings for one request, and its token count."""
    table = table or providers.load_table()
    provider = provider or providers.provider_for(prompt.format, prompt.model)
    findings: list[Finding] = []
    for seg in prompt.segments:
        if seg.kind in ("tool", "system"):
            findings.extend(_volatile(seg))
    findings.extend(_tool_findings(prompt))
    ids, _ = fingerprint.token_ids(prompt, tokenizer)
    minimum = providers.minimum_tokens(table, provider, prompt.model)
    if len(ids) < minimum:
        findings.append(
            Finding(
                "below_minimum",
                "",
                f"{len(ids)} tokens is under the {provider} minimum of {minimum}: never cached",
                "Accept the miss, or grow the stable prefix past the minimum if it is reused.",
            )
        )
    return findings, len(ids)
