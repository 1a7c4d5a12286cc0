"""The endpoints: each parses its typed parameters, calls one ``collector.service``
function on a cursor of the server's connection, and encodes what it returns. Every
GET only reads; ``POST /api/v1/alerts/evaluate`` is the one write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import duckdb
import polars as pl
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.responses import Response

from analysis.simulate import ROUTERS
from collector.api import encode, params
from collector.service import alerts, explaining, reads, whatif
from collector.store.queries import Filters

PREFIX = "/api/v1"
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
NOT_FOUND = {
    404: {
        "description": "no request with that id",
        "content": {"application/json": {"schema": ERROR}},
    }
}
BAD_REQUEST = {
    "description": "a parameter cannot be used; the error names it",
    "content": {"application/json": {"schema": ERROR}},
}


def _collector(request: Request) -> Any:
    return request.app.state.collector


def _cursor(request: Request) -> Iterator[duckdb.DuckDBPyConnection]:
    cur = request.app.state.collector.store.reader()
    try:
        yield cur
    finally:
        cur.close()


Cursor = Annotated[duckdb.DuckDBPyConnection, Depends(_cursor)]
Rows = Annotated[Filters, Depends(params.filters)]
Arrow = Annotated[bool, Depends(params.arrow)]
router = APIRouter(prefix=PREFIX)


def create_app(collector: Any) -> FastAPI:
    """The query API of one server; ``collector`` gives it the store and the counters."""
    app = FastAPI(
        title="cachediag query API",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # the interactive pages load their assets from a CDN: off
        redoc_url=None,
    )
    app.state.collector = collector
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's generated document, saying 400 (our one-line error) where it says 422."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for operation in (op for path in doc["paths"].values() for op in path.values()):
            if operation["responses"].pop("422", None) is not None:
                operation["responses"]["400"] = BAD_REQUEST
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema


async def _invalid(request: Request, exc: Exception) -> Response:
    """400, one line naming the first parameter that failed (not FastAPI's 422)."""
    error = exc.errors()[0]  # type: ignore[attr-defined]
    name = error["loc"][-1] if error.get("loc") else "request"
    given = str(error.get("input", ""))[:40]
    message = " ".join(str(error.get("msg", "invalid")).removeprefix("Value error, ").split())
    return encode.document({"error": f"{name}={given!r}: {message}"}, 400)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "")
    if status == 404 and detail == "Not Found":
        detail = f"no endpoint {request.url.path}; see {PREFIX}/openapi.json"
    return encode.document({"error": str(detail)}, status)


@router.get("/requests", responses=encode.ARROW_DOC)
def requests(
    cur: Cursor, rows: Rows, arrow: Arrow, limit: params.Limit = 100, offset: params.Offset = 0
) -> Response:
    """Requests, newest first."""
    page = reads.requests(cur, rows, limit, offset)
    return encode.frame(page, arrow, limit=limit, offset=offset)


@router.get("/requests/{request_id}", responses=NOT_FOUND)
def request(cur: Cursor, request_id: Annotated[str, Path()]) -> Response:
    """One request with its content and explanation."""
    return encode.document(_found(reads.request(cur, request_id)))


@router.get("/requests/{request_id}/diff", responses=NOT_FOUND)
def diff(cur: Cursor, request_id: Annotated[str, Path()]) -> Response:
    """A request beside its predecessor: its explanation, the token diff (when both
    were captured) and both segment maps."""
    return encode.document(_found(explaining.diff(cur, request_id)))


@router.get("/timeseries", responses=encode.ARROW_DOC)
def timeseries(
    cur: Cursor,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 300,
    group: params.Group = None,
) -> Response:
    """Per window and group: requests, token-weighted hit ratio, cached tokens,
    p50/p95/p99 TTFT, missed tokens and cost."""
    return encode.frame(reads.series(cur, rows, window, group), arrow, window_s=window)


@router.get("/explanations", responses=encode.ARROW_DOC)
def explanations(
    cur: Cursor,
    rows: Rows,
    arrow: Arrow,
    cause: params.Text = None,
    limit: params.Limit = 100,
    offset: params.Offset = 0,
) -> Response:
    """Explained requests, newest first."""
    page = reads.explanations(cur, rows, cause, limit, offset)
    return encode.frame(page, arrow, limit=limit, offset=offset)


@router.get("/prefixes", responses=encode.ARROW_DOC)
def prefixes(
    cur: Cursor,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 3600,
) -> Response:
    """Per window and route: distinct and new prefix hashes, tools count, schema and
    prompt versions."""
    return encode.frame(reads.prefixes(cur, rows, window), arrow, window_s=window)


@router.get("/routing", responses=encode.ARROW_DOC)
def routing(cur: Cursor, rows: Rows, arrow: Arrow) -> Response:
    """Per route: replicas, session stickiness, requests without a session key."""
    return encode.frame(reads.routing(cur, rows), arrow)


@router.get("/stats", responses=encode.COUNTERS_DOC)
def stats(collector: Annotated[Any, Depends(_collector)], wait: bool = False) -> Response:
    """Ingest and explain counters; ``wait=1`` first waits (up to a minute) until every
    committed row is explained. Evaluates and writes nothing."""
    return encode.document(reads.stats(collector, wait))


@router.get("/whatif", responses=encode.ARROW_DOC)
def whatif_(
    cur: Cursor,
    arrow: Arrow,
    router: Literal[ROUTERS] = "sticky",  # type: ignore[valid-type]
    ttl: Annotated[params.Duration, Query(description="cache TTL: 300, 10m, 1h")] = 600,
    replicas: Annotated[
        int | None, Query(ge=1, le=1024, description="default: as many as the traffic used")
    ] = None,
    warmup: bool = False,
) -> Response:
    """Observed vs simulated hit ratio, p95 TTFT and missed cost per route."""
    found = whatif.whatif(cur, router, ttl, replicas, warmup)
    model = found.model
    meta = dict(router=model.router, replicas=model.replicas, ttl_s=model.ttl_s)
    meta.update(warmup=warmup, days=found.days)
    return encode.frame(pl.DataFrame(found.rows()), arrow, **meta)


@router.get("/alerts", responses=encode.ARROW_DOC)
def alerts_(cur: Cursor, arrow: Arrow, state: params.State = None) -> Response:
    """Alerts, firing first, each with its one-line text."""
    return encode.frame(alerts.listed(cur, state), arrow)


@router.post("/alerts/evaluate", responses=encode.PAGE_DOC)
def evaluate(collector: Annotated[Any, Depends(_collector)]) -> Response:
    """Evaluate the alert rules now: store the alerts (and post newly firing ones to
    the server's webhook); answers the alerts."""
    found = alerts.evaluate_server(collector)
    data = [alerts.record(a) for a in found]
    return encode.document({"data": data, "count": len(data)})


def _found(value: dict | None) -> dict:
    if value is None:
        raise HTTPException(404, "no request with that id")
    return value
