"""The dashboard's only way to data: the cachediag query API (it never opens DuckDB)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import polars as pl

from collector.settings import DEFAULT_SERVER, SERVER_ENV, TOKEN_ENV


class ServerError(RuntimeError):
    """The server cannot be reached or refused the query; the message says which
    (``status``: the HTTP status it answered, 0 when it could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header a cachediag server started with a token requires."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Client:
    """Reads JSON from /api/v1, sending the server's bearer token when there is one
    (``token``, else the server's own CACHEDIAG_TOKEN variable)."""

    def __init__(
        self, base: str | None = None, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.base = (base or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
        self.timeout = timeout
        if token is None:
            token = os.environ.get(TOKEN_ENV)
        self.headers = bearer(token)

    def get(self, path: str, **params: Any) -> dict:
        """GET an endpoint with these query parameters (None and "" left out)."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
        url = f"{self.base}/api/v1/{path}" + (f"?{query}" if query else "")
        return self._send(urllib.request.Request(url, headers=self.headers))

    def post(self, path: str, **params: Any) -> dict:
        """POST to an endpoint that acts (alerts/evaluate, whatif/jobs), with an empty
        body and these query parameters."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
        url = f"{self.base}/api/v1/{path}" + (f"?{query}" if query else "")
        return self._send(urllib.request.Request(url, b"", self.headers, method="POST"))

    def _send(self, request: urllib.request.Request) -> dict:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            hint = (
                "; pass the server's token (cachediag dashboard --token, or CACHEDIAG_TOKEN)"
                if exc.code == 401
                else ""
            )
            raise ServerError(
                f"{self.base} answered {exc.code}: {detail}{hint}", exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(
                f"cannot reach the cachediag server at {self.base} ({reason}); "
                "start it with `cachediag serve`"
            ) from None

    def frame(self, path: str, **params: Any) -> pl.DataFrame:
        """An endpoint's rows as a frame (time columns parsed)."""
        return rows_frame(self.get(path, **params).get("data", []))


def rows_frame(data: list[dict]) -> pl.DataFrame:
    """JSON rows as a frame, ISO time columns parsed."""
    frame = pl.DataFrame(data, infer_schema_length=None) if data else pl.DataFrame()
    for name in ("window", "ts", "started_at", "resolved_at"):
        if name in frame.columns and frame[name].dtype == pl.String:
            frame = frame.with_columns(
                pl.col(name).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False)
            )
    return frame
