"""OTLP decoders: protobuf and JSON agree; bounds hold; malformed input is rejected."""

from __future__ import annotations

import contextlib
import gzip
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

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
attributes = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=6)
span = st.fixed_dictionaries(
    {
        "attributes": attributes,
        "name": st.text(max_size=10),
        "status": st.sampled_from([0, 1, 2]),
        "start": st.integers(0, 2**63 - 1),
        "events": st.lists(st.tuples(st.text(max_size=6), st.integers(0, 2**63 - 1)), max_size=2),
    }
)


def _plain(record: otlp.Record) -> tuple:
    attrs = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in record.attributes.items()}
    return (
        record.trace_id,
        record.span_id,
        record.name,
        record.kind,
        record.start_ns,
        record.end_ns,
        record.status_code,
        attrs,
        record.resource,
        record.events,
    )


@settings(max_examples=150, deadline=None)
@given(spans=st.lists(span, max_size=5))
def test_protobuf_and_json_decode_the_same(spans):
    message = traces(spans)
    from_pb = otlp.decode_traces_protobuf(message.SerializeToString())
    from_json = otlp.decode_traces_json(json.dumps(to_json(message)).encode())
    assert [_plain(r) for r in from_pb.records] == [_plain(r) for r in from_json.records]


@settings(max_examples=200, deadline=None)
@given(ints=st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40), max_size=6))
def test_int_arrays_take_the_fast_path_exactly(ints):
    message = traces([{"attributes": {"cachediag.block_hashes": arr}} for arr in ints])
    decoded = otlp.decode_traces_protobuf(message.SerializeToString())
    got = [r.attributes["cachediag.block_hashes"] for r in decoded.records]
    assert [list(g) for g in got] == ints


def test_mixed_arrays_fall_back_to_the_general_path():
    message = traces([{"attributes": {"a": [1, 2]}}, {"attributes": {"b": ["x", 3, True]}}])
    records = otlp.decode_traces_protobuf(message.SerializeToString()).records
    assert list(records[0].attributes["a"]) == [1, 2]
    assert records[1].attributes["b"] == ["x", 3, True]


needs_wire = pytest.mark.skipif(otlp._wire is None, reason="compiled OTLP reader not built")


@needs_wire
@settings(max_examples=200, deadline=None)
@given(spans=st.lists(span, max_size=5), resource=attributes)
def test_compiled_reader_and_upb_decode_the_same(spans, resource):
    message = traces(spans)
    for key, value in resource.items():  # nested values exercise the resource path too
        kv = message.resource_spans[0].resource.attributes.add()
        kv.key = key
        kv.value.CopyFrom(_any(value))
    data = message.SerializeToString()
    records, rejected, error = otlp._wire.decode_traces(data, otlp.Record, otlp.MAX_DEPTH)
    upb = otlp._decode_traces_upb(data)
    assert [_plain(r) for r in records] == [_plain(r) for r in upb.records]
    assert (rejected, error) == (upb.rejected, upb.error)


def _any(value):
    from opentelemetry.proto.common.v1 import common_pb2

    out = common_pb2.AnyValue()
    if isinstance(value, list):
        out.array_value.values.extend(_any(v) for v in value)
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    else:
        out.string_value = value
    return out


@needs_wire
@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05\x12\x03\x12\x01", b"\x0a\xff", b"\x0b", b"\x0a\x02\x12\x00\x99"],
    ids=["truncated", "overlong-length", "group-wire-type", "trailing-garbage"],
)
def test_compiled_reader_refuses_what_upb_refuses(data):
    with pytest.raises(ValueError):
        otlp._wire.decode_traces(data, otlp.Record, otlp.MAX_DEPTH)
    with pytest.raises(otlp.DecodeError):
        otlp.decode_traces_protobuf(data)


def test_json_decoder_reads_hex_ids_int64_strings_and_snake_case():
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "5B8EFFF798038103D269B633813FC60C",
                                "span_id": "EEE19B7EC3C1B174",
                                "name": "chat",
                                "kind": "SPAN_KIND_CLIENT",
                                "start_time_unix_nano": "1763800000000000000",
                                "end_time_unix_nano": 1763800001000000000,
                                "unknownField": {"x": 1},
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "9007199254740993"}},
                                    {"key": "b", "value": {"bytesValue": "AQI="}},
                                ],
                                "status": {"code": "STATUS_CODE_ERROR"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    record = otlp.decode_traces_json(json.dumps(doc).encode()).records[0]
    assert record.trace_id == "5b8efff798038103d269b633813fc60c"
    assert record.span_id == "eee19b7ec3c1b174"
    assert record.kind == 3 and record.status_code == 2
    assert record.start_ns == 1763800000000000000
    assert record.attributes == {"n": 9007199254740993, "b": "0102"}


def test_malformed_ids_are_rejected_not_fatal():
    good = to_json(traces([{"attributes": {"gen_ai.system": "openai"}}]))
    bad_span = dict(good["resourceSpans"][0]["scopeSpans"][0]["spans"][0], spanId="zz")
    good["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad_span)
    decoded = otlp.decode_traces_json(json.dumps(good).encode())
    assert (len(decoded.records), decoded.rejected) == (1, 1)
    message = traces([{"span_id": b"\x01\x02"}, {}])
    decoded = otlp.decode_traces_protobuf(message.SerializeToString())
    assert (len(decoded.records), decoded.rejected) == (1, 1)


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"not protobuf at all \x00\x01"])
def test_undecodable_protobuf_raises(data):
    with pytest.raises(otlp.DecodeError):
        otlp.decode_traces_protobuf(data)


@pytest.mark.parametrize("data", [b"{", b"[1]", b'{"resourceSpans": 5}'])
def test_undecodable_json_raises(data):
    with pytest.raises(otlp.DecodeError):
        otlp.decode_traces_json(data)


def test_logs_decode_with_body_and_time():
    message = logs([{"attributes": {"gen_ai.system": "openai"}, "body": {"usage": {"x": 1}}}])
    for decoded in (
        otlp.decode_logs_protobuf(message.SerializeToString()),
        otlp.decode_logs_json(json.dumps(to_json(message)).encode()),
    ):
        record = decoded.records[0]
        assert record.signal == "log" and record.body == {"usage": {"x": 1}}
        assert record.start_ns == 1_763_800_000_000_000_000 and record.trace_id == ""


def test_inflate_is_bounded_and_strict():
    raw = b"x" * 10_000
    assert otlp.inflate(gzip.compress(raw), "gzip", 10_000) == raw
    assert otlp.inflate(raw, None, 10) == raw  # identity: the caller bounds the raw size
    with pytest.raises(otlp.TooLarge):
        otlp.inflate(gzip.compress(b"\0" * 50_000_000), "gzip", 1_000_000)  # a gzip bomb
    with pytest.raises(otlp.DecodeError, match="corrupt"):
        otlp.inflate(b"not gzip", "gzip", 100)
    with pytest.raises(otlp.DecodeError, match="truncated"):
        otlp.inflate(gzip.compress(raw)[:-12], "gzip", 100_000)
    with pytest.raises(otlp.DecodeError, match="Content-Encoding"):
        otlp.inflate(raw, "br", 100)


def test_partial_success_response_in_both_encodings():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    body = otlp.response_body("traces", otlp.PROTOBUF, 2, "bad ids")
    parsed = ExportTraceServiceResponse.FromString(body)
    assert parsed.partial_success.rejected_spans == 2
    assert json.loads(otlp.response_body("traces", otlp.JSON, 2, "bad ids")) == {
        "partialSuccess": {"rejectedSpans": 2, "errorMessage": "bad ids"}
    }
    assert otlp.response_body("logs", otlp.JSON, 0, "") == b"{}"


# --- hostile exports ----------------------------------------------------------------------------

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


def test_a_compiled_reader_built_from_an_older_pyx_is_not_used():
    import types

    stale = types.ModuleType("collector._wire")  # API 1: no depth limit, no API attribute
    assert otlp._current(stale) is None
    assert otlp._current(None) is None
    if otlp._wire is not None:
        assert otlp._current(otlp._wire) is otlp._wire
