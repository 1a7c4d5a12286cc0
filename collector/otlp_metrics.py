"""OTLP metrics exports (``/v1/metrics``, gRPC MetricsService): counted, and the GenAI
client metrics kept as series.

Traceloop and OpenLIT export metrics to the same endpoint as their spans; answering 404
made them log an export error every interval. A metrics export is decoded (protobuf by
upb, JSON by the standard parser, both bounded in depth as spans are) and its data points
counted: all of them, and those of GenAI metrics (``gen_ai.*``). The histogram points of
GenAI metrics (the semantic conventions' ``gen_ai.client.token.usage`` in ``{token}`` by
``gen_ai.token.type``; ``gen_ai.client.operation.duration``,
``gen_ai.client.operation.time_to_first_chunk`` and ``gen_ai.server.time_to_first_token``
in seconds) become rows of ``metric_points`` (``collector.store.metric_series``): for a
route that sends no spans they are all there is. A point is kept as exported (cumulative
or delta, with its series key and start time); windows take differences at query time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector.decoded import DecodeError, brief

PROTOBUF = "application/x-protobuf"
_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_JSON_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


@dataclass
class Counted:
    """What one metrics export held."""

    metrics: int = 0
    points: int = 0
    genai_points: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # GenAI histogram points

    def add(self, name: Any, points: int) -> None:
        self.metrics += 1
        self.points += points
        if isinstance(name, str) and name.startswith("gen_ai."):
            self.genai_points += points


def count(content_type: str, data: bytes) -> Counted:
    """The metrics and data points of one export, and the rows of its GenAI histogram
    points; ``DecodeError`` if it is none."""
    if content_type == PROTOBUF:
        try:
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(data)
        except Exception as exc:  # protobuf raises DecodeError, sometimes others
            raise DecodeError(f"not an OTLP ExportMetricsServiceRequest: {brief(exc)}") from None
    else:
        request = _from_json(data)
    out = Counted()
    for rm in request.resource_metrics:
        resource = _attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = len(getattr(metric, kind).data_points) if kind in _KINDS else 0
                out.add(metric.name, points)
                if metric.name.startswith("gen_ai.") and kind in _HISTOGRAMS:
                    out.rows.extend(_rows(resource, sm.scope.name, metric, kind))
    return out


_HISTOGRAMS = ("histogram", "exponential_histogram")
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
# row column ─► the attribute names that fill it, first found wins (point, then resource)
_COLUMNS = {
    "route": ("cachediag.route",),
    "replica": ("cachediag.replica",),
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "operation": ("gen_ai.operation.name",),
    "request_model": ("gen_ai.request.model",),
    "response_model": ("gen_ai.response.model",),
    "token_type": ("gen_ai.token.type",),
    "server_address": ("server.address",),
    "error_type": ("error.type",),
}


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind in ("string_value", "int_value", "double_value", "bool_value"):
        return getattr(any_value, kind)
    return None if kind is None else json_format.MessageToJson(any_value, indent=None)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _pick(names: tuple[str, ...], *sources: dict[str, Any]) -> str | None:
    for source in sources:
        for name in names:
            if source.get(name) is not None:
                return str(source[name])
    return None


def _rows(resource: dict[str, Any], scope: str, metric: Any, kind: str) -> list[dict[str, Any]]:
    """One row per data point of a GenAI histogram (explicit or exponential buckets)."""
    data = getattr(metric, kind)
    cumulative = data.aggregation_temporality == _CUMULATIVE
    base = json.dumps([sorted(resource.items(), key=str), scope, metric.name], default=str)
    rows = []
    for point in data.data_points:
        attrs = _attributes(point.attributes)
        key = base + json.dumps(sorted(attrs.items(), key=str), default=str)
        row: dict[str, Any] = {
            col: _pick(names, attrs, resource) for col, names in _COLUMNS.items()
        }
        row.update(
            series=hashlib.blake2b(key.encode(), digest_size=8).hexdigest(),
            name=metric.name,
            unit=metric.unit or None,
            service=_pick(("service.name",), resource),
            start_ns=point.start_time_unix_nano or None,
            end_ns=point.time_unix_nano,
            cumulative=cumulative,
            count=point.count,
            sum=point.sum if point.HasField("sum") else None,
            min=point.min if point.HasField("min") else None,
            max=point.max if point.HasField("max") else None,
            bounds=list(point.explicit_bounds) if kind == "histogram" else None,
            bucket_counts=list(point.bucket_counts) if kind == "histogram" else None,
            attributes=json.dumps(attrs, default=str, sort_keys=True),
        )
        rows.append(row)
    return rows


def _list(node: Any, key: str) -> list:
    found = node.get(key) if isinstance(node, dict) else None
    if found is None:
        return []
    if not isinstance(found, list):
        raise DecodeError(f"not an OTLP JSON metrics export: {key} is not a list")
    return found


def _from_json(data: bytes) -> Any:
    """An OTLP JSON export as the protobuf request: its shape checked first (lists where
    lists belong), then read by protobuf's JSON reader (which takes OTLP's camelCase
    names, int64 as strings and enum numbers)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {brief(exc)}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deep; flatten the export") from None
    if not isinstance(doc, dict):
        raise DecodeError("an OTLP JSON export must be an object")
    for rm in _list(doc, "resourceMetrics"):
        for sm in _list(rm, "scopeMetrics"):
            for metric in _list(sm, "metrics"):
                if not isinstance(metric, dict):
                    raise DecodeError("not an OTLP JSON metrics export: a metric is no object")
                kind = next((k for k in _JSON_KINDS if k in metric), None)
                if kind:
                    _list(metric[kind], "dataPoints")
    try:
        return json_format.ParseDict(
            doc, metrics_service_pb2.ExportMetricsServiceRequest(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"not an OTLP JSON metrics export: {brief(exc)}") from None


def response_body(content_type: str) -> bytes:
    """The ExportMetricsServiceResponse: every data point accepted."""
    if content_type == PROTOBUF:
        return metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
    return b"{}"
