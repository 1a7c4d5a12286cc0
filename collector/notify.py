"""Alert delivery: a webhook POST (JSON with a Slack-compatible ``text``), retried."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

TRIES = 4
BACKOFF_S = 0.5  # doubled after every failed try


def post(url: str, text: str, alert: dict, timeout: float = 10.0) -> bool:
    """POST one alert as {"text", "alert"}; True once the endpoint answered 2xx, False
    after the last try."""
    body = json.dumps({"text": text, "alert": alert}, default=str).encode()
    delay = BACKOFF_S
    for attempt in range(1, TRIES + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True
        except (urllib.error.URLError, OSError) as exc:
            log.info("webhook try %d/%d failed: %s", attempt, TRIES, exc)
        if attempt < TRIES:
            time.sleep(delay)  # back off before the next try
            delay *= 2
    return False
