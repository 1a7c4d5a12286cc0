"""Hostile OTLP input to the decoders: nesting past the limit, values out of range, lone
surrogates, long error messages; arbitrary or mutated bytes and JSON only raise DecodeError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import otlp
from tests.otlp_build import (
    deep_any,
    deep_json,
    json_with_value,
    logs,
    to_json,
    traces,
    with_raw_attribute,
)

TRACE_DECODERS = {
    "compiled": lambda data: (
        otlp.Decoded(*otlp._wire.decode_traces(data, otlp.Record, otlp.MAX_DEPTH))
        if otlp._wire
        else pytest.skip("compiled OTLP reader not built")
    ),
    "upb": otlp._decode_traces_upb,
}


@pytest.mark.parametrize("kind", ["array", "kvlist"])
@pytest.mark.parametrize("decoder", sorted(TRACE_DECODERS))
def test_nesting_up_to_the_limit_decodes_and_past_it_is_refused(decoder, kind):
    decode = TRACE_DECODERS[decoder]
    fine = decode(with_raw_attribute("traces", "x", deep_any(otlp.MAX_DEPTH, kind)))
    value = fine.records[0].attributes["x"]
    for _ in range(otlp.MAX_DEPTH):
        value = value[0] if kind == "array" else value["k"]
    assert value == 1
    too_deep = with_raw_attribute("traces", "x", deep_any(otlp.MAX_DEPTH + 1, kind))
    with pytest.raises(ValueError, match="nest"):
        decode(too_deep)
    with pytest.raises(otlp.DecodeError, match=f"nests more than {otlp.MAX_DEPTH}"):
        otlp.decode_traces_protobuf(too_deep)


@pytest.mark.parametrize("depth", [otlp.MAX_DEPTH + 1, 1_000, 50_000])
@pytest.mark.parametrize("decoder", sorted(TRACE_DECODERS))
def test_deep_protobuf_values_are_refused_without_exhausting_the_stack(decoder, depth):
    for kind in ("array", "kvlist"):
        with pytest.raises(ValueError):
            TRACE_DECODERS[decoder](with_raw_attribute("traces", "x", deep_any(depth, kind)))
        for body in (False, True):
            with pytest.raises(otlp.DecodeError):
                otlp.decode_logs_protobuf(with_raw_attribute("logs", "x", deep_any(depth), body))


@pytest.mark.parametrize("depth", [otlp.MAX_DEPTH + 1, 900, 100_000])
@pytest.mark.parametrize("kind", ["arrayValue", "kvlistValue"])
def test_deep_json_is_refused(depth, kind):
    value = deep_json(depth, kind)
    with pytest.raises(otlp.DecodeError, match="deep|nests"):
        otlp.decode_traces_json(json_with_value("traces", value))
    for body in (False, True):
        with pytest.raises(otlp.DecodeError, match="deep|nests"):
            otlp.decode_logs_json(json_with_value("logs", value, body))
    with pytest.raises(otlp.DecodeError, match="deep"):
        otlp.decode_traces_json(b"[" * 100_000 + b"]" * 100_000)
    at_limit = otlp.decode_traces_json(json_with_value("traces", deep_json(otlp.MAX_DEPTH, kind)))
    assert len(at_limit.records) == 1


HOSTILE_JSON_SPAN_FIELDS = {
    "int64 too big": ("value", '{"intValue": "9223372036854775808"}'),
    "int64 too small": ("value", '{"intValue": -9223372036854775809}'),
    "int as inf": ("value", '{"intValue": 1e400}'),
    "int as float": ("value", '{"intValue": 1.5}'),
    "int as text": ("value", '{"intValue": "1e400"}'),
    "string as list": ("value", '{"stringValue": [[["x"]]]}'),
    "bool as text": ("value", '{"boolValue": "yes"}'),
    "start past uint64": ("startTimeUnixNano", '"18446744073709551616"'),
    "start negative": ("startTimeUnixNano", "-1"),
    "end inf": ("endTimeUnixNano", "1e400"),
    "kind inf": ("kind", "1e400"),
    "name a number": ("name", "5"),
    "bad span id": ("spanId", '"zz"'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON_SPAN_FIELDS))
def test_a_json_span_out_of_range_is_rejected_alone(case):
    where, raw = HOSTILE_JSON_SPAN_FIELDS[case]
    doc = to_json(traces([{"attributes": {"gen_ai.system": "openai", "x": 0}}, {"name": "ok"}]))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["name"] = "victim"
    text = json.dumps(doc)
    if where == "value":
        text = text.replace('"key": "x", "value": {"intValue": "0"}', f'"key": "x", "value": {raw}')
    else:
        text = text.replace(f'"{where}": ', f'"{where}": {raw}, "ignored{where}": ', 1)
    decoded = otlp.decode_traces_json(text.encode())
    assert [r.name for r in decoded.records] == ["ok"]
    assert decoded.rejected == 1 and "span #0" in decoded.error
    assert "victim" in decoded.error or where == "name"


@pytest.mark.parametrize("raw", ['"18446744073709551616"', "1e400", '"soon"'])
def test_a_json_log_record_out_of_range_is_rejected_alone(raw):
    doc = to_json(logs([{"attributes": {"gen_ai.system": "openai"}}] * 2))
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["timeUnixNano"] = "PLACEHOLDER"
    text = json.dumps(doc).replace('"PLACEHOLDER"', raw)
    decoded = otlp.decode_logs_json(text.encode())
    assert (len(decoded.records), decoded.rejected) == (1, 1)
    assert "log record #0" in decoded.error and "timeUnixNano" in decoded.error


@pytest.mark.parametrize("raw", ["1e400", "1" + "0" * 400, '"1e400"', '"Infinity"'])
def test_doubles_past_the_range_read_as_infinity(raw):
    decoded = otlp.decode_traces_json(json_with_value("traces", '{"doubleValue": ' + raw + "}"))
    assert decoded.records[0].attributes["x"] == float("inf")


def test_error_messages_are_bounded_and_encodable():
    huge = '{"intValue": "' + "9" * 5000 + '"}'
    decoded = otlp.decode_traces_json(json_with_value("traces", huge))
    assert decoded.rejected == 1 and len(decoded.error) < 600
    lone = otlp.response_body("traces", otlp.PROTOBUF, 1, "span '\ud800' " + "x" * 10_000)
    assert len(lone) < 600
    assert b"\\ud800" in otlp.status_body(otlp.PROTOBUF, 400, "bad \ud800")


def test_lone_surrogates_in_json_strings_decode_and_reach_mapping():
    doc = to_json(traces([{"attributes": {"gen_ai.system": "openai", "cachediag.route": "r"}}]))
    text = json.dumps(doc).replace('"stringValue": "r"', '"stringValue": "r\\ud800"')
    record = otlp.decode_traces_json(text.encode()).records[0]
    assert record.attributes["cachediag.route"] == "r\ud800"  # mapping mends it before storing


# --- properties: nothing but DecodeError, whatever the bytes --------------------------------

_valid = traces(
    [{"attributes": {"gen_ai.system": "openai", "cachediag.block_hashes": [1, 2], "x": {"a": [1]}}}]
).SerializeToString()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_decode_errors(data):
    for decode in (otlp.decode_traces_protobuf, otlp.decode_logs_protobuf, otlp.decode_traces_json):
        with contextlib.suppress(otlp.DecodeError):
            decode(data)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(0, len(_valid)),
    flips=st.lists(st.tuples(st.integers(0, len(_valid) - 1), st.integers(0, 255)), max_size=4),
)
def test_mutated_exports_only_ever_raise_decode_errors(cut, flips):
    data = bytearray(_valid[:cut] + _valid[cut + 1 :])
    for at, byte in flips:
        if at < len(data):
            data[at] = byte
    for decode in TRACE_DECODERS.values():
        with contextlib.suppress(ValueError):
            decode(bytes(data))
    with contextlib.suppress(otlp.DecodeError):
        otlp.decode_traces_protobuf(bytes(data))


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "resourceLogs",
                    "scopeSpans",
                    "scopeLogs",
                    "spans",
                    "logRecords",
                    "attributes",
                    "key",
                    "value",
                    "values",
                    "intValue",
                    "stringValue",
                    "arrayValue",
                    "kvlistValue",
                    "bytesValue",
                    "traceId",
                    "spanId",
                    "startTimeUnixNano",
                    "kind",
                    "status",
                    "code",
                    "name",
                    "events",
                    "body",
                    "resource",
                    "timeUnixNano",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(doc=json_docs)
def test_arbitrary_json_only_ever_raises_decode_errors(doc):
    data = json.dumps(doc).encode()
    for decode in (otlp.decode_traces_json, otlp.decode_logs_json):
        with contextlib.suppress(otlp.DecodeError):
            decode(data)
