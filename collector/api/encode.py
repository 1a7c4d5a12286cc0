"""Answers as bytes: frames as JSON pages or Arrow IPC streams, dicts as JSON; times
in ISO 8601 (UTC), and null for NaN and infinities (JSON has neither)."""

from __future__ import annotations

import io
import json
import math
from datetime import date, datetime
from typing import Any

import polars as pl
from starlette.responses import Response

JSON_TYPE = "application/json"
ARROW_TYPE = "application/vnd.apache.arrow.stream"
PAGE = {
    "type": "object",
    "properties": {
        "data": {"type": "array", "items": {"type": "object"}},
        "count": {"type": "integer"},
    },
    "required": ["data", "count"],
}
PAGE_DOC = {200: {"description": "a JSON page", "content": {JSON_TYPE: {"schema": PAGE}}}}
COUNTERS_DOC = {
    200: {
        "description": "counters by name",
        "content": {
            JSON_TYPE: {"schema": {"type": "object", "additionalProperties": {"type": "integer"}}}
        },
    }
}
ARROW_DOC = {
    200: {
        "description": "rows as a JSON page, or as an Arrow IPC stream",
        "content": {JSON_TYPE: {"schema": PAGE}, ARROW_TYPE: {}},
    }
}


def frame(data: pl.DataFrame, arrow: bool, **meta: Any) -> Response:
    """A frame as an Arrow IPC stream, or as JSON: {"data": rows, "count": n, **meta}."""
    if arrow:
        buf = io.BytesIO()
        data.write_ipc_stream(buf)
        return Response(buf.getvalue(), media_type=ARROW_TYPE)
    iso = data.with_columns(
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        pl.when(pl.col(pl.Float64).is_finite()).then(pl.col(pl.Float64)).name.keep(),
    )
    return document({"data": iso.to_dicts(), "count": len(data), **meta})


def document(body: Any, status: int = 200) -> Response:
    """Any JSON-able value (dicts, lists, times, floats) as a JSON answer."""
    return Response(
        json.dumps(_clean(body), allow_nan=False, default=str), status, media_type=JSON_TYPE
    )


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # stored times are naive UTC
    if isinstance(value, date):
        return value.isoformat()
    return value
