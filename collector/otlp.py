"""OTLP decoding: protobuf and JSON trace/log exports ─► plain records.

The JSON decoder lives in ``collector.otlp_json``, the decoded form (records and
errors) in ``collector.decoded``. Bodies are decompressed with
a hard bound, so a gzip bomb cannot inflate past the size limit. An AnyValue
nests at most ``MAX_DEPTH`` arrays/key-value lists: deeper makes the whole
export a ``DecodeError``, and no decoder recurses further than that.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

import numpy as np
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from collector import otlp_json
from collector.decoded import (  # noqa: F401 - the decoded form is part of this API
    MAX_DEPTH,
    BadValue,
    Decoded,
    DecodeError,
    Record,
    TooLarge,
    brief,
    too_deep,
)

log = logging.getLogger(__name__)
WIRE_API = 2  # of collector/_wire.pyx: 2 bounds AnyValue depth; older builds are not used


def _current(wire: Any) -> Any:
    """The compiled reader if it was built from this _wire.pyx; None otherwise."""
    if wire is not None and getattr(wire, "API", 1) != WIRE_API:
        log.warning(
            "collector/_wire was built from an older _wire.pyx (no depth limit); decoding "
            "with upb instead. Rebuild it: python setup.py build_ext --inplace"
        )
        return None
    return wire


try:  # compiled when the package was installed with a C compiler at hand
    from collector import _wire
except ImportError:  # pragma: no cover - exercised on machines without one
    _wire = None
_wire = _current(_wire)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def inflate(data: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its content encoding, never more than ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise DecodeError(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"corrupt {encoding} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"body inflates past the {limit}-byte limit")
    if not inflater.eof:
        raise DecodeError(f"truncated {encoding} body")
    return out


# --- protobuf ----------------------------------------------------------------------------------


def _value(v: common_pb2.AnyValue, left: int = MAX_DEPTH) -> Any:
    """An AnyValue as Python; ``left``: array/kvlist levels still allowed in it."""
    kind = v.WhichOneof("value")
    if kind in ("array_value", "kvlist_value") and left <= 0:
        raise too_deep()
    if kind == "array_value":
        return [_value(x, left - 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value, left - 1) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


class _Arrays:
    """Array attributes met while decoding, converted together at the end.

    Block-hash arrays carry hundreds of ints per span; reading them one
    AnyValue at a time dominates decoding. Serialized, an int-only ArrayValue
    is a run of ``0x0a len 0x18 varint`` entries, so all of a batch's arrays
    decode in a few vectorized numpy steps. Anything else takes the general path.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, Any], str, common_pb2.ArrayValue]] = []

    def attrs(self, kvs) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in kvs:
            value = kv.value
            kind = value.WhichOneof("value")
            if kind in _SCALARS:
                out[kv.key] = getattr(value, kind)
            elif kind == "array_value":
                self.pending.append((out, kv.key, value.array_value))
                out[kv.key] = None
            else:
                out[kv.key] = _value(value)
        return out

    def resolve(self) -> None:
        if not self.pending:
            return
        counts = [len(arr.values) for _, _, arr in self.pending]
        raw = b"".join(arr.SerializeToString() for _, _, arr in self.pending)
        flat = _int_varints(raw, sum(counts))
        if flat is None:
            for out, key, arr in self.pending:
                out[key] = [_value(x, MAX_DEPTH - 1) for x in arr.values]
            return
        for (out, key, _), part in zip(
            self.pending, np.split(flat, np.cumsum(counts)[:-1]), strict=True
        ):
            out[key] = part


def _int_varints(raw: bytes, count: int) -> np.ndarray | None:
    """Decode ``count`` serialized int AnyValues, or None if they are not exactly that."""
    data = np.frombuffer(raw, dtype=np.uint8)
    low = np.flatnonzero(data < 0x80)  # each entry: 0x0a, len, 0x18, last varint byte
    if len(low) != 4 * count:
        return None
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    head, tag, last = low[0::4], low[2::4], low[3::4]
    width = last - tag  # bytes of each varint, 1 to 10
    if not (
        head[0] == 0
        and last[-1] == len(data) - 1
        and np.all(head[1:] == last[:-1] + 1)
        and np.all(data[head] == 0x0A)
        and np.all(data[tag] == 0x18)
        and np.all(low[1::4] == head + 1)
        and np.all(data[head + 1] == width + 1)
        and np.all(width <= 10)
    ):
        return None
    out = np.zeros(count, dtype=np.uint64)
    for k in range(int(width.max())):
        byte = data[np.minimum(tag + 1 + k, len(data) - 1)] & np.uint8(0x7F)
        byte[width <= k] = 0
        out |= byte.astype(np.uint64) << np.uint64(7 * k)
    return out.view(np.int64)


def _attrs(kvs) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode_traces_protobuf(data: bytes) -> Decoded:
    """A trace export; the compiled reader when built, upb and Python otherwise (and
    always for bodies the compiled reader refuses, so the error says what upb says)."""
    if _wire is not None:
        try:
            records, rejected, error = _wire.decode_traces(data, Record, MAX_DEPTH)
            return Decoded(records, rejected, error)
        except ValueError:
            pass
    return _decode_traces_upb(data)


def _decode_traces_upb(data: bytes) -> Decoded:
    try:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
    except Exception as exc:  # protobuf raises DecodeError, sometimes others
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    out, arrays = Decoded([]), _Arrays()
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                    out.rejected += 1
                    out.error = "span with a trace_id not 16 bytes or span_id not 8 bytes"
                    continue
                out.records.append(
                    Record(
                        signal="span",
                        trace_id=sp.trace_id.hex(),
                        span_id=sp.span_id.hex(),
                        parent_span_id=sp.parent_span_id.hex(),
                        name=sp.name,
                        kind=sp.kind,
                        start_ns=sp.start_time_unix_nano,
                        end_ns=sp.end_time_unix_nano,
                        status_code=sp.status.code,
                        status_message=sp.status.message,
                        attributes=arrays.attrs(sp.attributes),
                        resource=resource,
                        events=[(e.name, e.time_unix_nano) for e in sp.events],
                    )
                )
    arrays.resolve()
    return out


def decode_logs_protobuf(data: bytes) -> Decoded:
    try:
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(data)
    except Exception as exc:
        raise DecodeError(f"not an OTLP ExportLogsServiceRequest: {exc}") from None
    out = Decoded([])
    for rl in request.resource_logs:
        resource = _attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                body = _value(lr.body) if lr.HasField("body") else None
                ts = lr.time_unix_nano or lr.observed_time_unix_nano
                out.records.append(
                    Record(
                        signal="log",
                        trace_id=lr.trace_id.hex(),
                        span_id=lr.span_id.hex(),
                        name=lr.event_name,
                        start_ns=ts,
                        end_ns=ts,
                        attributes=_attrs(lr.attributes),
                        resource=resource,
                        body=body,
                    )
                )
    return out


def decode_traces_json(data: bytes | dict) -> Decoded:
    """An OTLP/JSON trace export (bytes, or a document already parsed)."""
    return otlp_json.decode_traces(data)


def decode_logs_json(data: bytes | dict) -> Decoded:
    """An OTLP/JSON logs export (bytes, or a document already parsed)."""
    return otlp_json.decode_logs(data)


def decode(signal: str, content_type: str, data: bytes) -> Decoded:
    """Decode a traces or logs export by its content type."""
    table = {
        ("traces", PROTOBUF): decode_traces_protobuf,
        ("traces", JSON): decode_traces_json,
        ("logs", PROTOBUF): decode_logs_protobuf,
        ("logs", JSON): decode_logs_json,
    }
    return table[(signal, content_type)](data)


def response_body(signal: str, content_type: str, rejected: int, error: str) -> bytes:
    """The Export*ServiceResponse in the request's content type."""
    error = brief(error)
    if content_type == JSON:
        if not rejected:
            return b"{}"
        field_name = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
        return json.dumps(
            {"partialSuccess": {field_name: rejected, "errorMessage": error}}
        ).encode()
    if signal == "traces":
        msg = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            msg.partial_success.rejected_spans = rejected
            msg.partial_success.error_message = error
    else:
        msg = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            msg.partial_success.rejected_log_records = rejected
            msg.partial_success.error_message = error
    return msg.SerializeToString()


# gRPC status codes that match the HTTP answers the server gives.
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14}


def status_body(content_type: str, http_status: int, message: str) -> bytes:
    """A google.rpc.Status error body in the request's content type, as OTLP asks."""
    code, message = _GRPC_CODES.get(http_status, 2), brief(message)
    if content_type == PROTOBUF:
        return status_pb2.Status(code=code, message=message).SerializeToString()
    return json.dumps({"code": code, "message": message}).encode()
