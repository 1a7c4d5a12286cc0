"""OTLP decoding: protobuf and JSON trace/log exports ─► plain records.

The JSON decoder is our own: protobuf's json_format reads OTLP's hex trace and
span ids as base64 and gets them wrong. It takes int64 values as strings or
numbers, enum values as numbers or names, camelCase or snake_case field
names, and ignores unknown fields. Bodies are decompressed with a hard bound,
so a gzip bomb cannot inflate past the size limit.

Limits: an AnyValue nests at most ``MAX_DEPTH`` arrays/key-value lists (deeper,
or JSON too deep to parse, makes the whole export a ``DecodeError``); in JSON
an int64 or uint64 field out of its range, or a value of the wrong type, rejects
its span or log record alone (counted in ``Decoded.rejected``, the rest kept).
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

try:  # compiled when the package was installed with a C compiler at hand
    from collector import _wire
except ImportError:  # pragma: no cover - exercised on machines without one
    _wire = None

MAX_DEPTH = 30  # arrays/kvlists in one AnyValue: upb refuses 100 nested messages, 31 kvlists
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_MESSAGE_CHARS = 300  # of an error message echoed back to the client


class DecodeError(ValueError):
    """The body is not a decodable OTLP export."""


class TooLarge(ValueError):
    """The body, or what it inflates to, passes the size limit."""


class BadValue(ValueError):
    """One span or log record holds a value of the wrong type or out of range."""


def _too_deep() -> DecodeError:
    return DecodeError(f"an attribute value nests more than {MAX_DEPTH} arrays or lists")


def brief(text: object) -> str:
    """``text`` fit for an error message: bounded, and encodable (no lone surrogates)."""
    out = str(text)
    if len(out) > _MESSAGE_CHARS:
        out = out[:_MESSAGE_CHARS] + "..."
    return out.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(slots=True)
class Record:
    """One span or log record, as plain Python values."""

    signal: str  # "span" or "log"
    trace_id: str  # hex, "" when absent
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, int]] = field(default_factory=list)  # (name, time_ns)
    body: Any = None  # a log record's body
    id: str = ""  # a stable id of its own (request records); else trace + span id


@dataclass
class Decoded:
    """The records of one export plus the ones rejected as malformed."""

    records: list[Record]
    rejected: int = 0
    error: str = ""


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
        raise _too_deep()
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
                        "span",
                        sp.trace_id.hex(),
                        sp.span_id.hex(),
                        sp.parent_span_id.hex(),
                        sp.name,
                        sp.kind,
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                        sp.status.code,
                        sp.status.message,
                        arrays.attrs(sp.attributes),
                        resource,
                        [(e.name, e.time_unix_nano) for e in sp.events],
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
                        "log",
                        lr.trace_id.hex(),
                        lr.span_id.hex(),
                        "",
                        lr.event_name,
                        0,
                        ts,
                        ts,
                        0,
                        "",
                        _attrs(lr.attributes),
                        resource,
                        [],
                        body,
                    )
                )
    return out


# --- JSON --------------------------------------------------------------------------------------


def _get(obj: dict, camel: str, default: Any = None) -> Any:
    """A field by its camelCase or snake_case name."""
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake, default)


def _int(raw: Any, bounds: tuple[int, int], what: str) -> int:
    """An integer field, written as a number or a decimal string, within ``bounds``."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raise BadValue(f"{what} {brief(repr(raw))} is not an integer") from None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise BadValue(f"{what} {brief(repr(raw))} is not an integer")
    if not bounds[0] <= raw <= bounds[1]:
        raise BadValue(f"{what} {raw} is outside {bounds[0]}..{bounds[1]}")
    return raw


def _str(raw: Any, what: str) -> str:
    if not isinstance(raw, str):
        raise BadValue(f"{what} {brief(repr(raw))} is not a string")
    return raw


def _json_value(v: Any, left: int = MAX_DEPTH) -> Any:
    """A JSON AnyValue as Python; ``left``: array/kvlist levels still allowed in it."""
    if not isinstance(v, dict) or not v:
        return None
    key, raw = next(iter(v.items()))
    if key in ("stringValue", "string_value"):
        return _str(raw, "stringValue")
    if key in ("boolValue", "bool_value"):
        if not isinstance(raw, bool):
            raise BadValue(f"boolValue {brief(repr(raw))} is not true or false")
        return raw
    if key in ("intValue", "int_value"):
        return _int(raw, _INT64, "intValue")
    if key in ("doubleValue", "double_value"):
        return float(raw)
    if key in ("arrayValue", "array_value", "kvlistValue", "kvlist_value"):
        if left <= 0:
            raise _too_deep()
        values = (raw or {}).get("values", [])
        if key in ("arrayValue", "array_value"):
            return [_json_value(x, left - 1) for x in values]
        return _json_attrs(values, left - 1)
    if key in ("bytesValue", "bytes_value"):
        return base64.b64decode(raw).hex()
    return None


def _json_attrs(kvs: Any, left: int = MAX_DEPTH) -> dict[str, Any]:
    return {
        _str(kv["key"], "attribute key"): _json_value(kv.get("value"), left)
        for kv in kvs or []
        if "key" in kv
    }


def _hex_id(value: Any, size: int) -> str | None:
    text = (value or "").lower()
    try:
        return text if len(bytes.fromhex(text)) == size else None
    except ValueError:
        return None


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    return names.get(value, 0) if isinstance(value, str) else _int(value or 0, _INT32, what)


def _loads(data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {brief(exc)}") from None
    except RecursionError:  # the C scanner counts its depth: no stack is exhausted
        raise DecodeError("JSON nested too deep; flatten the export") from None
    if not isinstance(doc, dict):
        raise DecodeError("an OTLP JSON export must be an object")
    return doc


def _label(item: Any, index: int) -> str:
    """How an error message names one span or log record: its place, name and id."""
    found = [item.get(k) for k in ("name", "spanId", "span_id")] if isinstance(item, dict) else []
    return " ".join([f"#{index} of its scope", *(brief(repr(v)) for v in found if v)])


def decode_traces_json(data: bytes | dict) -> Decoded:
    doc = data if isinstance(data, dict) else _loads(data)
    out = Decoded([])
    try:
        for rs in _get(doc, "resourceSpans", []):
            resource = _json_attrs(_get(rs.get("resource") or {}, "attributes"))
            for ss in _get(rs, "scopeSpans", []):
                for index, sp in enumerate(ss.get("spans", [])):
                    try:
                        out.records.append(_json_span(sp, resource))
                    except BadValue as exc:
                        out.rejected += 1
                        out.error = f"span {_label(sp, index)}: {exc}"
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DecodeError(f"not an OTLP JSON trace export: {brief(exc)}") from None
    return out


def _json_span(sp: dict, resource: dict) -> Record:
    trace_id, span_id = _hex_id(_get(sp, "traceId"), 16), _hex_id(_get(sp, "spanId"), 8)
    if trace_id is None or span_id is None:
        raise BadValue("missing or malformed hex traceId/spanId")
    status = sp.get("status") or {}
    events = [
        (
            _str(e.get("name", ""), "event name"),
            _int(_get(e, "timeUnixNano", 0), _UINT64, "event timeUnixNano"),
        )
        for e in sp.get("events", [])
    ]
    return Record(
        "span",
        trace_id,
        span_id,
        _hex_id(_get(sp, "parentSpanId"), 8) or "",
        _str(sp.get("name", ""), "name"),
        _enum(sp.get("kind"), _KINDS, "kind"),
        _int(_get(sp, "startTimeUnixNano", 0), _UINT64, "startTimeUnixNano"),
        _int(_get(sp, "endTimeUnixNano", 0), _UINT64, "endTimeUnixNano"),
        _enum(status.get("code"), _STATUS, "status code"),
        _str(status.get("message", ""), "status message"),
        _json_attrs(sp.get("attributes")),
        resource,
        events,
    )


def decode_logs_json(data: bytes | dict) -> Decoded:
    doc = data if isinstance(data, dict) else _loads(data)
    out = Decoded([])
    try:
        for rl in _get(doc, "resourceLogs", []):
            resource = _json_attrs(_get(rl.get("resource") or {}, "attributes"))
            for sl in _get(rl, "scopeLogs", []):
                for index, lr in enumerate(_get(sl, "logRecords", [])):
                    try:
                        out.records.append(_json_log(lr, resource))
                    except BadValue as exc:
                        out.rejected += 1
                        out.error = f"log record {_label(lr, index)}: {exc}"
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DecodeError(f"not an OTLP JSON logs export: {brief(exc)}") from None
    return out


def _json_log(lr: dict, resource: dict) -> Record:
    ts = _int(_get(lr, "timeUnixNano", 0), _UINT64, "timeUnixNano") or _int(
        _get(lr, "observedTimeUnixNano", 0), _UINT64, "observedTimeUnixNano"
    )
    return Record(
        "log",
        _hex_id(_get(lr, "traceId", ""), 16) or "",
        _hex_id(_get(lr, "spanId", ""), 8) or "",
        "",
        _str(_get(lr, "eventName", ""), "eventName"),
        0,
        ts,
        ts,
        0,
        "",
        _json_attrs(lr.get("attributes")),
        resource,
        [],
        _json_value(lr.get("body")),
    )


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
