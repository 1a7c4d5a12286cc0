"""What both OTLP fronts (HTTP and gRPC) share: an answer other than success, raised
from anywhere in the ingest path, and the bearer-token check."""

from __future__ import annotations

import hmac
from http import HTTPStatus


class Reply(Exception):
    """An HTTP answer other than success, raised from anywhere in the ingest path."""

    def __init__(self, status: HTTPStatus, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.retry = status, message, retry


def authorized(token: str | None, header: str | None) -> bool:
    """Whether an Authorization value carries ``token``: scheme case-insensitive
    (RFC 7235), compared in constant time."""
    if not token:
        return True
    scheme, _, given = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
    )
