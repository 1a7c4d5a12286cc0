"""The read-only query API under /api/v1: typed endpoints, JSON or Arrow IPC.

Every endpoint reads through ``collector.store.queries`` on a cursor of the
server's own connection; nothing here writes. ``?format=arrow`` (or
``Accept: application/vnd.apache.arrow.stream``) returns an Arrow IPC stream.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from collector.store import queries

JSON_TYPE = "application/json"
ARROW_TYPE = "application/vnd.apache.arrow.stream"
MAX_LIMIT = 10_000


class BadRequest(ValueError):
    """A query parameter the API cannot use."""


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,9})?", value):
            return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError, OSError):
        raise BadRequest(
            f"{name}={value[:40]!r}: expected ISO 8601 or epoch seconds (years 1 to 9999)"
        ) from None


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,15}", value) or not low <= int(value) <= high:
        raise BadRequest(f"{name}={value[:40]!r}: expected a whole number from {low} to {high}")
    return int(value)


def _window(value: str | None, name: str = "window") -> int:
    try:
        return queries.seconds(value or "300")
    except ValueError as exc:
        raise BadRequest(f"{name}={exc}") from None


def _filters(q: dict[str, str]) -> queries.Filters:
    return queries.Filters(
        since=_time(q.get("since"), "since"),
        until=_time(q.get("until"), "until"),
        route=q.get("route"),
        model=q.get("model"),
        replica=q.get("replica"),
        service=q.get("service"),
    )


def _page(q: dict[str, str]) -> tuple[int, int]:
    return (
        _int(q.get("limit"), "limit", 100, 1, MAX_LIMIT),
        _int(q.get("offset"), "offset", 0, 0, 10**12),
    )


def _encode(frame: pl.DataFrame, arrow: bool, **meta: Any) -> tuple[bytes, str]:
    if arrow:
        buf = io.BytesIO()
        frame.write_ipc_stream(buf)
        return buf.getvalue(), ARROW_TYPE
    iso = frame.with_columns(
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        # JSON has no NaN or Infinity: a stored extreme becomes null, not invalid JSON
        pl.when(pl.col(pl.Float64).is_finite()).then(pl.col(pl.Float64)).name.keep(),
    )
    body = {"data": iso.to_dicts(), "count": len(frame), **meta}
    return json.dumps(body, default=str).encode(), JSON_TYPE


def _stats(collector: Any, q: dict[str, str]) -> dict:
    """Ingest counters; ``?wait=1`` first waits (up to a minute) until every committed
    row is explained, so a script can read explanations without polling."""
    explain = collector.explain
    if explain and q.get("wait") == "1":
        explain.flush(60)
        if collector.alerts:  # and the alerts see what was just explained
            collector.alerts.evaluate()
    return dict(
        collector.stats.as_dict(),
        committed_rows=collector.writer.committed_rows,
        pending_rows=collector.writer.pending_rows,
        explained_rows=explain.explained if explain else 0,
        inflight_bytes=collector.inflight,
        db_memory_bytes=_db_memory(collector),
    )


def _db_memory(collector: Any) -> int:
    """Bytes DuckDB holds now (buffer pool, indexes, uncheckpointed rows)."""
    cur = collector.store.cursor()
    try:
        return int(cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0])
    finally:
        cur.close()


def _group(q: dict[str, str]) -> str | None:
    group = q.get("group")
    if group is not None and group not in queries.GROUPS:
        raise BadRequest(f"group={group!r}: expected one of {', '.join(queries.GROUPS)}")
    return group


def _frame_endpoint(name: str, cur: Any, q: dict[str, str]) -> tuple[pl.DataFrame, dict]:
    filters = _filters(q)
    if name == "requests":
        limit, offset = _page(q)
        return queries.requests(cur, filters, limit, offset), {"limit": limit, "offset": offset}
    if name == "timeseries":
        window = _window(q.get("window"))
        return queries.timeseries(cur, filters, window, _group(q)), {"window_s": window}
    if name == "explanations":
        limit, offset = _page(q)
        return queries.explanations(cur, filters, q.get("cause"), limit, offset), {
            "limit": limit,
            "offset": offset,
        }
    if name == "prefixes":
        window = _window(q.get("window") or "1h")
        return queries.prefixes(cur, filters, window), {"window_s": window}
    if name == "routing":
        return queries.routing(cur, filters), {}
    if name == "whatif":
        return _whatif(cur, q), {}
    return queries.alerts(cur, q.get("state")), {}


def _diff(cur: Any, request_id: str) -> dict | None:
    """A request beside its predecessor: the token diff when both were captured, and the
    two segment maps with which segments kept their hash."""
    from analysis.compare import compare_prompts
    from analysis.segmaps import captured_prompt, segment_map
    from analysis.tokens import resolve

    later = queries.request_detail(cur, request_id)
    if later is None:
        return None
    explanation = json.loads(later["explanation"]) if later.get("explanation") else {}
    pred_id = explanation.get("predecessor_id")
    earlier = queries.request_detail(cur, pred_id) if pred_id else None
    out: dict[str, Any] = {
        "id": request_id,
        "predecessor_id": pred_id,
        "explanation": explanation,
        "comparison": None,
    }
    maps = [segment_map(r["segments"]) if r else [] for r in (earlier, later)]
    kept = {s[4] for s in maps[0]}
    out["segments_a"] = [
        dict(zip(("path", "kind", "start", "end", "hash"), s, strict=True)) for s in maps[0]
    ]
    out["segments_b"] = [
        dict(zip(("path", "kind", "start", "end", "hash"), s, strict=True), kept=s[4] in kept)
        for s in maps[1]
    ]
    if earlier is not None:
        a = captured_prompt(earlier.get("content"), earlier["segments"], earlier["request_model"])
        b = captured_prompt(later.get("content"), later["segments"], later["request_model"])
        if a is not None and b is not None:
            tok = resolve(later["request_model"], later.get("encoding"))
            out["comparison"] = compare_prompts(a, b, tok).to_dict()
    return out


def _whatif(cur: Any, q: dict[str, str]) -> pl.DataFrame:
    """Observed vs simulated per route, for ?router=&ttl=&replicas=&warmup=1."""
    from analysis.simulate import ROUTERS, ProviderModel
    from analysis.whatif import compare

    router = q.get("router", "sticky")
    if router not in ROUTERS:
        raise BadRequest(f"router={router!r}: expected one of {', '.join(ROUTERS)}")
    replicas = _int(q.get("replicas"), "replicas", 2, 1, 1024)
    model = ProviderModel(
        replicas=replicas, router=router, ttl_s=_window(q.get("ttl") or "10m", "ttl")
    )
    rows = queries.traffic(cur)
    out = compare(rows, model, q.get("warmup") == "1")
    return pl.DataFrame(
        [
            {
                "route": route,
                "requests": seen.requests,
                "observed_hit_ratio": seen.hit_ratio,
                "simulated_hit_ratio": sim.hit_ratio,
                "observed_p95_ttft_ms": seen.p95_ttft_ms,
                "simulated_p95_ttft_ms": sim.p95_ttft_ms,
                "observed_missed_usd": seen.missed_cost_usd,
                "simulated_missed_usd": sim.missed_cost_usd,
            }
            for route, (seen, sim) in out.items()
        ]
    )


def handle(collector: Any, target: str, accept: str = "") -> tuple[int, bytes, str]:
    """Answer one GET: (status, body, content type)."""
    parts = urlsplit(target)
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    arrow = q.get("format") == "arrow" or ARROW_TYPE in accept
    path = parts.path.rstrip("/")
    try:
        if path == "/api/v1/openapi.json":
            return HTTPStatus.OK, json.dumps(OPENAPI).encode(), JSON_TYPE
        if path == "/api/v1/stats":
            return HTTPStatus.OK, json.dumps(_stats(collector, q)).encode(), JSON_TYPE
        name = path.removeprefix("/api/v1/")
        cur = collector.store.cursor()
        try:
            if name.startswith("requests/") and name.endswith("/diff"):
                found = _diff(cur, name.split("/")[1])
                if found is None:
                    return HTTPStatus.NOT_FOUND, _error("no request with that id"), JSON_TYPE
                return HTTPStatus.OK, json.dumps(found, default=str).encode(), JSON_TYPE
            if name.startswith("requests/"):
                found = queries.request_detail(cur, name.split("/", 1)[1])
                if found is None:
                    return HTTPStatus.NOT_FOUND, _error("no request with that id"), JSON_TYPE
                return HTTPStatus.OK, json.dumps(found, default=str).encode(), JSON_TYPE
            if name not in (
                "requests",
                "timeseries",
                "explanations",
                "alerts",
                "prefixes",
                "routing",
                "whatif",
            ):
                return (
                    HTTPStatus.NOT_FOUND,
                    _error(f"no endpoint {path}; see /api/v1/openapi.json"),
                    JSON_TYPE,
                )
            frame, meta = _frame_endpoint(name, cur, q)
        finally:
            cur.close()
        body, ctype = _encode(frame, arrow, **meta)
        return HTTPStatus.OK, body, ctype
    except BadRequest as exc:
        return HTTPStatus.BAD_REQUEST, _error(str(exc)), JSON_TYPE


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _param(name: str, kind: str, doc: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": doc,
    }


_FILTERS = [
    _param("since", "string", "start, ISO 8601 or epoch seconds (inclusive)"),
    _param("until", "string", "end, ISO 8601 or epoch seconds (exclusive)"),
    _param("route", "string", "only this route"),
    _param("model", "string", "only this request model"),
    _param("replica", "string", "only this replica"),
    _param("service", "string", "only this service"),
    _param("format", "string", "json (default) or arrow (Arrow IPC stream)"),
]
_PAGE = [
    _param("limit", "integer", f"rows per page, 1 to {MAX_LIMIT} (default 100)"),
    _param("offset", "integer", "rows to skip"),
]


def _op(summary: str, params: list[dict]) -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {JSON_TYPE: {}, ARROW_TYPE: {}}},
                "400": {"description": "a parameter cannot be used"},
            },
        }
    }


OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "cachediag query API", "version": "1"},
    "paths": {
        "/api/v1/requests": _op("Requests, newest first", _FILTERS + _PAGE),
        "/api/v1/requests/{id}": {
            "get": {
                "summary": "One request with its content and explanation",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}, "404": {"description": "unknown id"}},
            }
        },
        "/api/v1/timeseries": _op(
            "Per window and group: requests, token-weighted hit ratio, cached tokens, "
            "p50/p95/p99 TTFT, missed tokens and cost",
            [
                *_FILTERS,
                _param("window", "string", "60, 5m, 1h, 1d (default 300 s)"),
                _param("group", "string", "one of " + ", ".join(queries.GROUPS)),
            ],
        ),
        "/api/v1/explanations": _op(
            "Explained misses", [*_FILTERS, *_PAGE, _param("cause", "string", "one cause")]
        ),
        "/api/v1/alerts": _op(
            "Alerts, firing first", [_param("state", "string", "firing or resolved")]
        ),
        "/api/v1/requests/{id}/diff": {
            "get": {
                "summary": "A request beside its predecessor: token diff (when captured) and "
                "segment maps",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}, "404": {"description": "unknown id"}},
            }
        },
        "/api/v1/prefixes": _op(
            "Per window and route: distinct and new prefix hashes, tools count, schema and "
            "prompt versions",
            [*_FILTERS, _param("window", "string", "60, 5m, 1h, 1d (default 1 h)")],
        ),
        "/api/v1/routing": _op(
            "Per route: replicas, session stickiness, requests without a session key", _FILTERS
        ),
        "/api/v1/whatif": _op(
            "Observed vs simulated hit ratio, p95 TTFT and missed cost per route",
            [
                _param("router", "string", "round_robin, random, sticky, prefix_affinity"),
                _param("ttl", "string", "cache TTL: 300, 10m, 1h (default 10m)"),
                _param("replicas", "integer", "replicas per route (default 2)"),
                _param("warmup", "integer", "1: warm every replica with each new prefix"),
            ],
        ),
        "/api/v1/stats": _op(
            "Ingest and explain counters",
            [_param("wait", "integer", "1: wait until committed rows are explained")],
        ),
    },
}
