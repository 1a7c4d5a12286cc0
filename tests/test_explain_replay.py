"""The same traffic replayed twice into two real servers gives the same explanations,
however its exports interleave and commit (explanations never race the commit of the
request they compare with)."""

from __future__ import annotations

import threading
from collections import Counter

from analysis.traffic import TrafficGenerator
from collector.replay import Services, emit
from tests.servers import Server

PODS = 4  # exporters, as a service's replicas each have their own


def _send(pod: Services, records: list[dict]) -> None:
    for record in records:
        emit(pod(record["service"]), record)
    ok, dropped = pod.finish()
    assert ok and dropped == 0


def _explanations(srv: Server, count: int) -> Counter:
    """Each request's cause and its predecessor's, by what identifies a request across
    servers (its row id is its random span id): its time, session, route and usage."""
    stats = srv.api("stats?wait=1")
    assert stats["explained_rows"] == stats["committed_rows"] == count
    rows = {r["id"]: r for r in srv.api(f"requests?limit={count}")["data"]}
    found = srv.api(f"explanations?limit={count}")["data"]
    assert len(rows) == len(found) == count

    def who(rid: str | None) -> tuple | None:
        r = rows.get(rid) if rid else None
        return r and (r["ts"], r["session_key"], r["route"], r["prompt_tokens"])

    return Counter((who(e["id"]), e["cause"], who(e["predecessor_id"])) for e in found)


def test_the_same_replay_twice_gives_the_same_explanations(tmp_path):
    records = list(TrafficGenerator(seed=8, hours=1, sessions_per_hour=300).records())
    assert len({r["time"] for r in records}) == len(records)  # a time order without ties
    pods = [records[k::PODS] for k in range(PODS)]  # a session's turns spread over pods
    explained = []
    for run in ("concurrent", "newest pod first"):
        srv = Server(tmp_path / f"{run}.duckdb", "--workers", "0").start()
        try:
            if run == "concurrent":  # every pod at once: exports interleave
                senders = [
                    threading.Thread(target=_send, args=(Services(srv.url), part)) for part in pods
                ]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join(120)
            else:  # one pod after another, each explained before the next one arrives
                for part in reversed(pods):
                    _send(Services(srv.url), part)
                    srv.api("stats?wait=1")
                # each pod after the first holds rows older than the ones explained
                assert srv.api("stats")["explain_rewinds"] >= PODS - 1
            explained.append(_explanations(srv, len(records)))
        finally:
            srv.stop()
    assert explained[0] == explained[1]
    causes = Counter(cause for _, cause, _ in explained[0].elements())
    assert causes["cold_start"] < len(records) / 4 and causes["no_miss"] > 0
