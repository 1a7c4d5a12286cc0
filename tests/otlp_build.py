"""Build OTLP exports for tests: protobuf messages and their OTLP/JSON form."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def _set(value, item: Any) -> None:
    if isinstance(item, bool):
        value.bool_value = item
    elif isinstance(item, int):
        value.int_value = item
    elif isinstance(item, float):
        value.double_value = item
    elif isinstance(item, str):
        value.string_value = item
    elif isinstance(item, list):
        value.array_value.SetInParent()
        for x in item:
            _set(value.array_value.values.add(), x)
    elif isinstance(item, dict):
        value.kvlist_value.SetInParent()
        for k, x in item.items():
            kv = value.kvlist_value.values.add()
            kv.key = k
            _set(kv.value, x)


def traces(spans: list[dict], service: str = "svc", seed: int = 0) -> ExportTraceServiceRequest:
    """spans: dicts with attributes, and optional name, events, status, ids (trace_id,
    span_id, parent: bytes), start/end."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    out = rs.scope_spans.add().spans
    for spec in spans:
        sp = out.add()
        sp.trace_id = spec.get("trace_id", rng.randbytes(16))
        sp.span_id = spec.get("span_id", rng.randbytes(8))
        sp.parent_span_id = spec.get("parent", b"")
        sp.name = spec.get("name", "chat gpt-4o")
        sp.kind = 3
        sp.start_time_unix_nano = spec.get("start", 1_763_800_000_000_000_000)
        sp.end_time_unix_nano = spec.get("end", sp.start_time_unix_nano + 10**9)
        sp.status.code = spec.get("status", 0)
        for name, t in spec.get("events", []):
            event = sp.events.add()
            event.name, event.time_unix_nano = name, t
        for key, item in spec.get("attributes", {}).items():
            kv = sp.attributes.add()
            kv.key = key
            _set(kv.value, item)
    return request


def logs(records: list[dict]) -> ExportLogsServiceRequest:
    """records: dicts with attributes, and optional body, time, name, trace_id, span_id."""
    request = ExportLogsServiceRequest()
    out = request.resource_logs.add().scope_logs.add().log_records
    for spec in records:
        lr = out.add()
        lr.time_unix_nano = spec.get("time", 1_763_800_000_000_000_000)
        lr.trace_id, lr.span_id = spec.get("trace_id", b""), spec.get("span_id", b"")
        lr.event_name = spec.get("name", "")
        for key, item in spec.get("attributes", {}).items():
            kv = lr.attributes.add()
            kv.key = key
            _set(kv.value, item)
        if "body" in spec:
            _set(lr.body, spec["body"])
    return request


def to_json(message) -> dict:
    """OTLP/JSON as the spec writes it: hex ids (protobuf's JSON mapping uses base64)."""
    doc = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in node:
                    node[key] = base64.b64decode(node[key]).hex()
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(doc)
    return doc


# --- hostile exports: raw wire bytes no well-behaved encoder would write ----------------------


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def deep_any(depth: int, kind: str = "array") -> bytes:
    """A serialized AnyValue of ``depth`` nested arrays (or kvlists) around an int, built
    inside out as headers, so a 100,000-deep one costs no recursion and linear time."""
    inner = b"\x18\x01"  # int_value 1
    size, headers = len(inner), []
    for _ in range(depth):
        if kind == "array":  # AnyValue{5: ArrayValue{1: AnyValue}}
            head = b"\x0a" + _varint(size)
        else:  # AnyValue{6: KeyValueList{1: KeyValue{1: "k", 2: AnyValue}}}
            kv = b"\x0a\x01k\x12" + _varint(size)
            head = b"\x0a" + _varint(len(kv) + size) + kv
        tag = b"\x2a" if kind == "array" else b"\x32"
        head = tag + _varint(len(head) + size) + head
        size += len(head)
        headers.append(head)
    return b"".join(reversed(headers)) + inner


def with_raw_attribute(signal: str, key: str, value: bytes, body: bool = False) -> bytes:
    """A one-record traces or logs export whose attribute ``key`` (or log body) is the
    serialized AnyValue ``value``, whatever it holds."""
    kv = field(1, key.encode()) + field(2, value)
    if signal == "traces":
        span = traces([{"attributes": {"gen_ai.system": "openai"}}]).resource_spans[0]
        record = span.scope_spans[0].spans[0].SerializeToString() + field(9, kv)
        resource = span.resource.SerializeToString()
    else:
        log = logs([{"attributes": {"gen_ai.system": "openai"}}]).resource_logs[0]
        extra = field(5, value) if body else field(6, kv)
        record = log.scope_logs[0].log_records[0].SerializeToString() + extra
        resource = log.resource.SerializeToString()
    return field(1, field(1, resource) + field(2, field(2, record)))


def deep_json(depth: int, kind: str = "arrayValue") -> str:
    """A JSON AnyValue of ``depth`` nested arrayValues (or kvlistValues) around an int."""
    open_, close = (
        ('{"arrayValue":{"values":[', "]}}")
        if kind == "arrayValue"
        else ('{"kvlistValue":{"values":[{"key":"k","value":', "}]}}")
    )
    return open_ * depth + '{"intValue":"1"}' + close * depth


def json_with_value(signal: str, value: str, body: bool = False) -> bytes:
    """A one-record JSON export whose attribute "x" (or log body) is the raw JSON ``value``."""
    attributes = {"gen_ai.system": "openai", "x": 0}
    message = traces([{"attributes": attributes}])
    if signal == "logs":
        message = logs([{"attributes": attributes, "body": 0}])
    text = json.dumps(to_json(message))
    marker = '"body": {"intValue": "0"}' if body else '"key": "x", "value": {"intValue": "0"}'
    replacement = f'"body": {value}' if body else f'"key": "x", "value": {value}'
    assert marker in text
    return text.replace(marker, replacement).encode()
