"""The endpoints: each parses its typed parameters, calls one ``collector.service``
function on a cursor of the server's connection, and encodes what it returns. Every
GET only reads; ``POST /api/v1/alerts/evaluate`` is the one write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import duckdb
import polars as pl
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.responses import Response

from collector.api import encode, params
from collector.service import alerts, explaining, insights, reads, rollups, whatif
from collector.service.kept_insights import FIRST_WAIT_S, KeptInsights
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


def _changes(store: Any) -> Any:
    """The store's write log, or None when it reads a lake others write (its changes
    are not all known here, so nothing is kept)."""
    return getattr(store, "changes", None) if getattr(store, "lake", None) is None else None


def _rollups(request: Request) -> rollups.Rollups:
    """The server's kept series."""
    state = request.app.state
    if getattr(state, "rollups", None) is None:
        state.rollups = rollups.Rollups(_changes(state.collector.store))
    return state.rollups


def _cursor(request: Request) -> Iterator[duckdb.DuckDBPyConnection]:
    cur = request.app.state.collector.store.reader()
    try:
        yield cur
    finally:
        cur.close()


Cursor = Annotated[duckdb.DuckDBPyConnection, Depends(_cursor)]
Rows = Annotated[Filters, Depends(params.filters)]
Kept = Annotated[rollups.Rollups, Depends(_rollups)]
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
    kept: Kept,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 300,
    group: params.Group = None,
) -> Response:
    """Per window and group: requests, token-weighted hit ratio, cached tokens,
    p50/p95/p99 TTFT, missed tokens and cost."""
    return encode.frame(kept.series(cur, rows, window, group), arrow, window_s=window)


@router.get("/explanations", responses=encode.ARROW_DOC)
def explanations(
    cur: Cursor,
    kept: Kept,
    rows: Rows,
    arrow: Arrow,
    cause: params.Text = None,
    misses: Annotated[
        bool, Query(description="only misses: leave out no_miss and cold_start")
    ] = False,
    limit: params.Limit = 100,
    offset: params.Offset = 0,
) -> Response:
    """Explained requests, newest first, one page; ``total``: how many match."""
    page = kept.page(cur, rows, cause, limit, offset, misses)
    total = kept.count(cur, rows, cause, misses)
    return encode.frame(page, arrow, limit=limit, offset=offset, total=total)


@router.get("/causes", responses=encode.ARROW_DOC)
def causes(
    cur: Cursor,
    kept: Kept,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 3600,
) -> Response:
    """Per window and miss cause (no_miss and cold_start left out): misses, missed
    tokens and missed dollars."""
    return encode.frame(kept.causes(cur, rows, window), arrow, window_s=window)


@router.get("/prefixes", responses=encode.ARROW_DOC)
def prefixes(
    cur: Cursor,
    kept: Kept,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 3600,
) -> Response:
    """Per window and route: distinct and new prefix hashes, tools count, schema and
    prompt versions."""
    return encode.frame(kept.prefixes(cur, rows, window), arrow, window_s=window)


@router.get("/routing", responses=encode.ARROW_DOC)
def routing(cur: Cursor, kept: Kept, rows: Rows, arrow: Arrow) -> Response:
    """Per route: replicas, session stickiness, requests without a session key."""
    return encode.frame(kept.routing(cur, rows), arrow)


@router.get("/metrics", responses=encode.ARROW_DOC)
def metrics(
    cur: Cursor,
    rows: Rows,
    arrow: Arrow,
    window: Annotated[params.Duration, Query(description="60, 5m, 1h, 1d")] = 3600,
    name: Annotated[params.Text, Query(description="gen_ai.client.token.usage, ...")] = None,
    token_type: Annotated[params.Text, Query(description="input, output")] = None,
) -> Response:
    """GenAI client metrics exported over OTLP (token usage, operation duration, time to
    first token), per window, metric, service, route, model and token type: points
    recorded in the window, their sum (tokens or seconds) and mean. For routes that send
    metrics and no spans."""
    found = reads.metrics(cur, rows, window, name, token_type)
    return encode.frame(found, arrow, window_s=window)


@router.get("/stats", responses=encode.COUNTERS_DOC)
def stats(collector: Annotated[Any, Depends(_collector)], wait: bool = False) -> Response:
    """Ingest and explain counters; ``wait=1`` first waits (up to a minute) until every
    committed row is explained. Evaluates and writes nothing."""
    return encode.document(reads.stats(collector, wait))


@router.get("/whatif", responses=encode.ARROW_DOC)
def whatif_(
    request: Request, arrow: Arrow, asked: Annotated[tuple, Depends(params.whatif)]
) -> Response:
    """Observed vs simulated hit ratio, p95 TTFT and missed cost per route, over the
    newest ``sample`` requests (0: all), on the what-if worker; waits for the answer
    (``POST /whatif/jobs`` starts one and reports progress instead)."""
    job = _whatif_job(request, asked)
    job.future.result()
    if job.result is None:
        raise HTTPException(500, job.error or "the what-if failed")
    return encode.frame(pl.DataFrame(job.result.rows()), arrow, **whatif.meta(job.result))


@router.post("/whatif/jobs", responses=encode.PAGE_DOC)
def whatif_start(request: Request, asked: Annotated[tuple, Depends(params.whatif)]) -> Response:
    """Start a what-if on its worker (or find the same one running); answers its id and
    progress at once: read it again at ``GET /whatif/jobs?id=``."""
    return encode.document(_whatif_job(request, asked).status())


@router.get("/whatif/jobs", responses=encode.PAGE_DOC)
def whatif_jobs(request: Request, id: params.Text = None) -> Response:  # noqa: A002
    """The what-if job with this ``id``: queued, running (rows replayed of all), done
    (with its rows) or failed (with its error); without an id, every job remembered."""
    runner = _runner(request)
    if id is None:
        data = [j.status() | {"data": None} for j in runner.jobs()]
        return encode.document({"data": data, "count": len(data)})
    job = runner.job(id)
    if job is None:
        raise HTTPException(404, "no what-if job with that id")
    return encode.document(job.status())


def _runner(request: Request) -> whatif.Runner:
    state = request.app.state
    if getattr(state, "whatif", None) is None:
        state.whatif = whatif.Runner(state.collector.store.cursor)
    return state.whatif


def _whatif_job(request: Request, asked: tuple) -> whatif.Job:
    try:
        return _runner(request).submit(*asked)
    except whatif.Busy as exc:
        raise HTTPException(429, str(exc)) from None


@router.get("/alerts", responses=encode.ARROW_DOC)
def alerts_(
    cur: Cursor,
    arrow: Arrow,
    state: params.State = None,
    since: params.Time = None,
    until: params.Time = None,
    limit: params.Limit = 50,
    offset: params.Offset = 0,
) -> Response:
    """Incidents (one row each: its cause, signals, top causes, cost, sparkline), firing
    first then newest first, each with its one-line text; ``since``/``until`` bound
    their start. The number matching in all is ``total`` and the X-Total-Count header."""
    page, total = alerts.page(cur, state, since, until, limit, offset)
    response = encode.frame(page, arrow, total=total, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(total)
    return response


@router.get("/insights", responses=encode.ARROW_DOC)
def insights_(
    request: Request,
    arrow: Arrow,
    collector: Annotated[Any, Depends(_collector)],
    wait: Annotated[bool, Query(description="wait for insights being computed")] = False,
) -> Response:
    """Recurring costs that are a route's normal, not regressions: per group and cause,
    its cost per day, the fix and what the what-if simulator says it would save.
    Computed in the background and kept: while the first are being computed the answer
    is empty with ``computing`` true (``wait=1`` waits for them)."""
    rules = alerts.server_rules(collector)
    rows, computing = _insights(request).get(rules, None if wait else FIRST_WAIT_S)
    return encode.frame(insights.frame(rows or []), arrow, computing=computing)


def _insights(request: Request) -> KeptInsights:
    state = request.app.state
    if getattr(state, "insights", None) is None:
        store = state.collector.store
        state.insights = KeptInsights(store.reader, _changes(store))
    return state.insights


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
