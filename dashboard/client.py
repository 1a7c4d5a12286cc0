"""The dashboard's only way to data: the cachediag query API (it never opens DuckDB)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import polars as pl

SERVER_ENV = "CACHEDIAG_SERVER"  # the server the dashboard reads
DEFAULT_SERVER = "http://127.0.0.1:4318"


class ServerError(RuntimeError):
    """The server cannot be reached or refused the query; the message says which."""


class Client:
    """GETs JSON from /api/v1."""

    def __init__(self, base: str | None = None, timeout: float = 30.0) -> None:
        self.base = (base or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> dict:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
        url = f"{self.base}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise ServerError(f"{self.base} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(
                f"cannot reach the cachediag server at {self.base} ({reason}); "
                "start it with `cachediag serve`"
            ) from None

    def frame(self, path: str, **params: Any) -> pl.DataFrame:
        """An endpoint's rows as a frame (time columns parsed)."""
        data = self.get(path, **params).get("data", [])
        frame = pl.DataFrame(data, infer_schema_length=None) if data else pl.DataFrame()
        for name in ("window", "ts", "started_at", "resolved_at"):
            if name in frame.columns and frame[name].dtype == pl.String:
                frame = frame.with_columns(
                    pl.col(name).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False)
                )
        return frame
