"""Typed query parameters: what each accepts, checked before an endpoint runs. A value
that does not fit fails validation, which the app answers 400 naming the parameter."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Header, Query
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from analysis.simulate import ROUTERS
from collector.api.encode import ARROW_TYPE
from collector.service.whatif import SAMPLE
from collector.store import queries

MAX_LIMIT = 10_000
_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_UNIT = r"^[0-9]{1,12}[smhd]?$"


def _time(value: str | None) -> datetime | None:
    """ISO 8601 or epoch seconds, as naive UTC."""
    if value is None:
        return None
    try:
        if _EPOCH.fullmatch(value):
            return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, OverflowError, OSError):
        raise ValueError("expected ISO 8601 or epoch seconds (years 1 to 9999)") from None


def _duration(value: object) -> object:
    """60, 5m, 1h or 1d in seconds; other values are left to the integer check."""
    if not isinstance(value, str):
        return value
    try:
        return queries.seconds(value)
    except ValueError as exc:  # its message starts with the value, which the 400 names
        raise ValueError(str(exc).partition(": ")[2]) from None


def _blank(value: object) -> object:
    """An empty value (``?route=``) is the parameter left out, as it always was."""
    return None if value == "" else value


Text = Annotated[str | None, BeforeValidator(_blank)]
Time = Annotated[
    str | None,
    BeforeValidator(_blank),
    AfterValidator(_time),
    Query(description="ISO 8601 or epoch seconds (UTC)"),
]
Duration = Annotated[
    int,
    BeforeValidator(_duration),
    WithJsonSchema(  # seconds, or a number with a unit
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": _UNIT}]}
    ),
]
Group = Annotated[
    Literal[tuple(queries.GROUPS)] | None,  # type: ignore[valid-type]
    BeforeValidator(_blank),
]
State = Annotated[Literal["firing", "resolved"] | None, BeforeValidator(_blank)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10**12, description="rows to skip")]


def filters(
    since: Time = None,
    until: Time = None,
    route: Text = None,
    model: Text = None,
    replica: Text = None,
    service: Text = None,
) -> queries.Filters:
    """The row filters every list and series endpoint takes (since inclusive, until
    exclusive)."""
    return queries.Filters(since, until, route, model, replica, service)  # type: ignore[arg-type]


def whatif(
    router: Literal[ROUTERS] = "sticky",  # type: ignore[valid-type]
    ttl: Annotated[Duration, Query(description="cache TTL: 300, 10m, 1h")] = 600,
    replicas: Annotated[
        int | None, Query(ge=1, le=1024, description="default: as many as the traffic used")
    ] = None,
    warmup: bool = False,
    sample: Annotated[
        int, Query(ge=0, le=10**9, description="replay the newest this many requests; 0: all")
    ] = SAMPLE,
) -> tuple:
    """A what-if's parameters: (router, ttl_s, replicas, warmup, sample or None)."""
    return router, ttl, replicas, warmup, sample or None


def arrow(
    format: Literal["json", "arrow"] = "json",  # noqa: A002 (the parameter's public name)
    accept: Annotated[str, Header(include_in_schema=False)] = "",
) -> bool:
    """Whether to answer with an Arrow IPC stream: ?format=arrow or Accept asks for it."""
    return format == "arrow" or ARROW_TYPE in accept
