"""OTLP/JSON decoding: trace and log exports ─► the records of ``collector.decoded``.

Our own decoder: protobuf's json_format reads OTLP's hex trace and span ids as
base64 and gets them wrong. It takes int64 values as strings or numbers, enum
values as numbers or names, camelCase or snake_case field names, and ignores
unknown fields. JSON too deep to parse, or an AnyValue nesting more than
``MAX_DEPTH`` levels, makes the export a ``DecodeError``; a field of the wrong
type or out of its range (an int64 past 2^63, a time past 2^64, 1e400 where an
int belongs) rejects its span or log record alone, named in ``Decoded.error``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from collector.decoded import MAX_DEPTH, BadValue, Decoded, DecodeError, Record, brief, too_deep

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
        try:
            return float(raw)
        except OverflowError:  # an integer past the double range: as the JSON 1e400 reads
            return float("inf") if raw > 0 else float("-inf")
    if key in ("arrayValue", "array_value", "kvlistValue", "kvlist_value"):
        if left <= 0:
            raise too_deep()
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


def decode_traces(data: bytes | dict) -> Decoded:
    return _decode(data, ("resourceSpans", "scopeSpans", "spans"), _json_span, "trace")


def _decode(
    data: bytes | dict,
    keys: tuple[str, str, str],
    build: Callable[[dict, dict], Record],
    signal: str,
) -> Decoded:
    """An export's records: resources, their scopes, each scope's items (``keys``); an
    item that fails with BadValue is rejected and named, the rest are kept."""
    doc = data if isinstance(data, dict) else _loads(data)
    outer, middle, inner = keys
    noun = "span" if signal == "trace" else "log record"
    out = Decoded([])
    try:
        for res in _get(doc, outer, []):
            resource = _json_attrs(_get(res.get("resource") or {}, "attributes"))
            for scope in _get(res, middle, []):
                for index, item in enumerate(_get(scope, inner, [])):
                    try:
                        out.records.append(build(item, resource))
                    except BadValue as exc:
                        out.rejected += 1
                        out.error = f"{noun} {_label(item, index)}: {exc}"
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DecodeError(f"not an OTLP JSON {signal} export: {brief(exc)}") from None
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
        signal="span",
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_hex_id(_get(sp, "parentSpanId"), 8) or "",
        name=_str(sp.get("name", ""), "name"),
        kind=_enum(sp.get("kind"), _KINDS, "kind"),
        start_ns=_int(_get(sp, "startTimeUnixNano", 0), _UINT64, "startTimeUnixNano"),
        end_ns=_int(_get(sp, "endTimeUnixNano", 0), _UINT64, "endTimeUnixNano"),
        status_code=_enum(status.get("code"), _STATUS, "status code"),
        status_message=_str(status.get("message", ""), "status message"),
        attributes=_json_attrs(sp.get("attributes")),
        resource=resource,
        events=events,
    )


def decode_logs(data: bytes | dict) -> Decoded:
    return _decode(data, ("resourceLogs", "scopeLogs", "logRecords"), _json_log, "logs")


def _json_log(lr: dict, resource: dict) -> Record:
    ts = _int(_get(lr, "timeUnixNano", 0), _UINT64, "timeUnixNano") or _int(
        _get(lr, "observedTimeUnixNano", 0), _UINT64, "observedTimeUnixNano"
    )
    return Record(
        signal="log",
        trace_id=_hex_id(_get(lr, "traceId", ""), 16) or "",
        span_id=_hex_id(_get(lr, "spanId", ""), 8) or "",
        name=_str(_get(lr, "eventName", ""), "eventName"),
        start_ns=ts,
        end_ns=ts,
        attributes=_json_attrs(lr.get("attributes")),
        resource=resource,
        body=_json_value(lr.get("body")),
    )
