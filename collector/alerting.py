"""The server's alert loop: every interval it evaluates the rules through the service
layer (which stores the alerts) and posts the newly firing ones."""

from __future__ import annotations

import contextlib
import logging
import threading

import duckdb

from analysis import alerts
from collector.notify import post
from collector.service import alerts as service
from collector.store.database import Store

log = logging.getLogger(__name__)

STOP_S = 3.0  # how long close() waits for the loop to leave the database


class AlertLoop:
    """Re-evaluates every rule over the store on its own thread; posts alerts that start
    firing to the webhook, once each."""

    def __init__(
        self,
        store: Store,
        rules: alerts.Rules,
        interval_s: float = 60.0,
        webhook: str | None = None,
    ) -> None:
        self.store, self.rules, self.interval_s, self.webhook = store, rules, interval_s, webhook
        self.evaluations = 0
        self._posted: set[str] = set()
        self._stop = threading.Event()
        self._cursor = store.reader()  # the loop's reads; close() interrupts them
        self._storing = threading.Lock()  # held while the loop reads or writes the store
        self._thread = threading.Thread(target=self._run, name="cachediag-alerts", daemon=True)
        self._thread.start()

    def evaluate(self) -> list[alerts.Alert]:
        """One evaluation: store every alert, post the newly firing ones."""
        cur = self.store.reader()
        try:
            found = self._store_evaluation(cur)
        finally:
            cur.close()
        self._post(found)
        return found

    def _store_evaluation(self, cur: duckdb.DuckDBPyConnection) -> list[alerts.Alert]:
        found = service.evaluate(self.store, self.rules, cur)
        self.evaluations += 1
        return found

    def _post(self, found: list[alerts.Alert]) -> None:
        for alert in found:
            if self._stop.is_set():  # stopping: what is left is posted after the next start
                return
            new = alert.state == "firing" and alert.id not in self._posted
            if (
                new
                and self.webhook
                and post(self.webhook, alerts.slack_text(alert), alert.to_dict())
            ):
                self._posted.add(alert.id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._storing:
                if self._stop.is_set():
                    return
                try:
                    found = self._store_evaluation(self._cursor)
                except Exception:  # logged; the next interval tries again
                    if not self._stop.is_set():  # else interrupted by close()
                        log.exception("evaluating alert rules failed")
                    continue
            self._post(found)  # outside the store: a slow webhook holds up no stop

    def stop(self) -> None:
        """Ask the loop to stop: its evaluation is interrupted, no more alerts posted."""
        self._stop.set()
        with contextlib.suppress(duckdb.Error):
            self._cursor.interrupt()

    def close(self, timeout: float = STOP_S) -> bool:
        """Stop the loop; True once it will not touch the store again (it may still be
        posting to the webhook, which ends on its own)."""
        self.stop()
        if not self._storing.acquire(timeout=timeout):
            return False
        try:
            self._cursor.close()
        finally:
            self._storing.release()
        return True
