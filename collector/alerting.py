"""The server's alert loop: evaluate the rules every interval, store them, post new ones."""

from __future__ import annotations

import logging
import threading

from analysis import alerts
from collector.notify import post
from collector.store import Store, save_alerts

log = logging.getLogger(__name__)


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
        self._thread = threading.Thread(target=self._run, name="cachediag-alerts", daemon=True)
        self._thread.start()

    def evaluate(self) -> list[alerts.Alert]:
        """One evaluation: store every alert, post the newly firing ones."""
        cur = self.store.cursor()
        try:
            found = alerts.evaluate(cur, self.rules)
        finally:
            cur.close()
        save_alerts(self.store, [a.row() for a in found])
        self.evaluations += 1
        for alert in found:
            new = alert.state == "firing" and alert.id not in self._posted
            if (
                new
                and self.webhook
                and post(self.webhook, alerts.slack_text(alert), alert.to_dict())
            ):
                self._posted.add(alert.id)
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.evaluate()
            except Exception:  # logged; the next interval tries again
                log.exception("evaluating alert rules failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
