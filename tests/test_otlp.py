"""OTLP decoders: protobuf and JSON agree; bounds hold; malformed input is rejected."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import otlp
from tests.otlp_build import logs, to_json, traces

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


def test_a_compiled_reader_built_from_an_older_pyx_is_not_used():
    import types

    stale = types.ModuleType("collector._wire")  # API 1: no depth limit, no API attribute
    assert otlp._current(stale) is None
    assert otlp._current(None) is None
    if otlp._wire is not None:
        assert otlp._current(otlp._wire) is otlp._wire
