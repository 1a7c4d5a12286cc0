"""The attributes a logged record and a provider's usage give a span, made in one place."""

from __future__ import annotations

from analysis import usage
from collector import attributes as A


def test_record_attributes_take_the_records_fields_and_its_own_provider():
    record = {"route": "/chat", "replica": 2, "ttft_ms": 41.5, "session_key": None}
    attrs = A.record_attributes(record, "openai", "gpt-4o")
    assert attrs == {
        A.PROVIDER.name: "openai",
        A.OPERATION.name: "chat",
        A.REQUEST_MODEL.name: "gpt-4o",
        A.ROUTE.name: "/chat",
        A.REPLICA.name: "2",  # a string attribute holds a string
        A.TTFT_MS.name: 41.5,
    }
    named = A.record_attributes({"provider": "deepseek"}, "openai", "m")
    assert named[A.PROVIDER.name] == "deepseek"


def test_usage_attributes_carry_only_what_the_usage_knows():
    anthropic = usage.from_provider({"input_tokens": 10, "cache_read_input_tokens": 90})
    assert A.usage_attributes(anthropic) == {
        A.INPUT_TOKENS.name: 100,
        A.CACHE_READ.name: 90,
        A.CACHE_CREATION.name: 0,
    }
    assert A.usage_attributes(usage.Usage()) == {}
