"""OTLP metrics exports (``/v1/metrics``, gRPC MetricsService): accepted and counted.

Traceloop and OpenLIT export metrics to the same endpoint as their spans; answering 404
made them log an export error every interval. A metrics export is decoded (protobuf by
upb, JSON by the standard parser, both bounded in depth as spans are) and its data points
counted: all of them, and those of GenAI metrics (``gen_ai.*``, such as
``gen_ai.client.token.usage`` and ``gen_ai.server.time_to_first_token``). Nothing of it
is stored: the calls themselves come as spans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

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

    def add(self, name: Any, points: int) -> None:
        self.metrics += 1
        self.points += points
        if isinstance(name, str) and name.startswith("gen_ai."):
            self.genai_points += points


def count(content_type: str, data: bytes) -> Counted:
    """The metrics and data points of one export; ``DecodeError`` if it is none."""
    return _count_protobuf(data) if content_type == PROTOBUF else _count_json(data)


def _count_protobuf(data: bytes) -> Counted:
    try:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(data)
    except Exception as exc:  # protobuf raises DecodeError, sometimes others
        raise DecodeError(f"not an OTLP ExportMetricsServiceRequest: {brief(exc)}") from None
    out = Counted()
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = len(getattr(metric, kind).data_points) if kind in _KINDS else 0
                out.add(metric.name, points)
    return out


def _list(node: Any, key: str) -> list:
    found = node.get(key) if isinstance(node, dict) else None
    if found is None:
        return []
    if not isinstance(found, list):
        raise DecodeError(f"not an OTLP JSON metrics export: {key} is not a list")
    return found


def _count_json(data: bytes) -> Counted:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {brief(exc)}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deep; flatten the export") from None
    if not isinstance(doc, dict):
        raise DecodeError("an OTLP JSON export must be an object")
    out = Counted()
    for rm in _list(doc, "resourceMetrics"):
        for sm in _list(rm, "scopeMetrics"):
            for metric in _list(sm, "metrics"):
                if not isinstance(metric, dict):
                    raise DecodeError("not an OTLP JSON metrics export: a metric is no object")
                kind = next((k for k in _JSON_KINDS if k in metric), None)
                points = len(_list(metric[kind], "dataPoints")) if kind else 0
                out.add(metric.get("name"), points)
    return out


def response_body(content_type: str) -> bytes:
    """The ExportMetricsServiceResponse: every data point accepted."""
    if content_type == PROTOBUF:
        return metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
    return b"{}"
