"""What the store's writes touched, for readers that keep answers between writes.

Every write that changes requests or explanations bumps ``version`` and says from which
request time on it changed rows (a late row: its own time; a re-explained stretch: its
first request's time; a delete of rows found by id: everything). A reader that kept an
answer per time bucket at some version asks ``since(version)`` and recomputes only the
buckets from that time on (``collector.service.rollups``).
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime

EVERYTHING = datetime.min  # a write that may have changed rows of any time
KEPT = 1024  # writes remembered; a reader older than all of them recomputes everything


def from_ns(ns: int | None) -> datetime:
    """A request time in epoch nanoseconds as the store's naive-UTC timestamp (``None``,
    unknown: EVERYTHING)."""
    if ns is None:
        return EVERYTHING
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC).replace(tzinfo=None)


class Changes:
    """A write counter and, per write, the earliest request time it changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[tuple[int, datetime]] = deque(maxlen=KEPT)
        self.version = 0

    def touch(self, since: datetime | None) -> None:
        """A write committed that changed rows from ``since`` on (None: of any time)."""
        with self._lock:
            self.version += 1
            self._log.append((self.version, EVERYTHING if since is None else since))

    def since(self, version: int) -> datetime | None:
        """The earliest request time any write after ``version`` changed (EVERYTHING when
        unknown), or None when nothing was written since."""
        with self._lock:
            if version >= self.version:
                return None
            if not self._log or self._log[0][0] > version + 1:
                return EVERYTHING  # older than the writes remembered
            return min(ts for v, ts in self._log if v > version)
