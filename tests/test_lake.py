"""Scale-out for real: a private PostgreSQL holds a DuckLake catalog, four `cachediag serve
--lake` processes write it through a router that routes by the routing attribute, a reader
queries during the writes, and the lake ends up with what one embedded server stores and
explains from the same traffic; a collector killed mid-load loses nothing it acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from collector.store import lake as lake_mod
from collector.store import maintenance
from tests.lake_router import Router
from tests.postgres import Cluster, binaries
from tests.servers import ROOT, Server

pytestmark = pytest.mark.skipif(  # never skipped in CI, where make test installs both
    not os.environ.get("CI") and (binaries() is None or lake_mod._wheel_file("ducklake") is None),
    reason="needs PostgreSQL and cachediag[lake] (make test installs both)",
)
COLLECTORS = 4
QUIET = ("--workers", "0", "--no-grpc", "--alert-every", "0")


@pytest.fixture(scope="module")
def postgres():
    with Cluster() as cluster:
        yield cluster


def _lake(postgres, tmp_path, name: str) -> lake_mod.LakeConfig:
    postgres.create_database(name)
    (tmp_path / name).mkdir()
    return lake_mod.LakeConfig(f"postgres:{postgres.dsn_of(name)}", str(tmp_path / name))


def _flags(config: lake_mod.LakeConfig) -> tuple[str, ...]:
    return ("--lake", config.catalog, "--data-path", config.data_path)


def _traffic(tmp_path, hours: float, seed: int = 8):
    from analysis.traffic import TrafficGenerator

    records = list(TrafficGenerator(seed=seed, hours=hours, sessions_per_hour=120).records())
    path = tmp_path / f"traffic-{seed}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


def _replay(path, url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cachediag", "replay", str(path), "--endpoint", url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class Reader(threading.Thread):
    """Counts the lake's rows over and over while collectors write."""

    def __init__(self, config: lake_mod.LakeConfig) -> None:
        super().__init__(daemon=True)
        self.config, self.counts, self.errors = config, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        con = lake_mod.connect(self.config, read_only=True)
        while not self.stop.is_set():
            try:
                con.execute("BEGIN TRANSACTION")
                self.counts.append(con.execute("SELECT count(*) FROM requests").fetchone()[0])
                con.execute("COMMIT")
            except Exception as exc:  # reported by the test
                self.errors.append(exc)
                break
        con.close()


def _explanations(con) -> list:
    """Each request's explanation, known by what the traffic says of it (two replays of one
    traffic give its requests different span ids)."""
    return con.execute(
        "SELECT r.ts, r.route, r.session_key, r.total_tokens, e.cause, e.missed_tokens, "
        "p.ts AS predecessor_ts FROM requests r JOIN explanations e USING (id) "
        "LEFT JOIN requests p ON p.id = e.predecessor_id ORDER BY ALL"
    ).fetchall()


def _cli(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cachediag", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in ok, done.stderr
    return done.stdout


def _alerts(*args: str) -> list[str]:
    found = _cli("alerts", *args, "--format", "json", ok=(0, 1))  # 1: an alert fires
    return sorted(a["text"] for a in json.loads(found))


def test_four_collectors_store_and_explain_what_one_server_does(postgres, tmp_path):
    import duckdb

    config = _lake(postgres, tmp_path, "shared")
    path, records = _traffic(tmp_path, hours=0.5)
    collectors = [
        Server(tmp_path / f"c{i}.duckdb", *QUIET, *_flags(config)) for i in range(COLLECTORS)
    ]
    single = Server(tmp_path / "single.duckdb", *QUIET)
    router = None
    try:
        for server in [*collectors, single]:
            server.start()
        router = Router([c.port for c in collectors])
        reader = Reader(config)
        reader.start()
        replays = [_replay(path, router.url), _replay(path, single.url)]
        for replay in replays:
            _, err = replay.communicate(timeout=240)
            assert replay.returncode == 0, err
        for server in [*collectors, single]:
            server.api("stats?wait=1")  # every committed row explained
        # Any collector's query API answers for the whole lake, not its partition.
        answered = collectors[-1].api("explanations?limit=10000")["data"]
        assert len(answered) == len(records)
        assert json.loads(_cli("series", *_flags(config), "--format", "json"))
        reader.stop.set()
        reader.join(30)
    finally:
        if router is not None:
            router.close()
        for server in [*collectors, single]:
            server.stop()
    assert not reader.errors and reader.counts and reader.counts[-1] <= len(records)
    assert sum(len(ids) for ids in router.acked.values()) == len(records)
    assert sum(1 for ids in router.acked.values() if ids) > 1  # the routing spread the load

    shared = lake_mod.connect(config, read_only=True)
    one = duckdb.connect(str(tmp_path / "single.duckdb"), read_only=True)
    (count, distinct) = shared.execute(
        "SELECT count(*), count(DISTINCT id) FROM requests"
    ).fetchone()
    assert count == distinct == len(records)
    # The gateway keeps a route on one collector (cachediag.routing_key), so each
    # collector's index holds every predecessor a request can have: the same verdicts.
    assert _explanations(shared) == _explanations(one)
    some, cause = shared.execute("SELECT id, cause FROM explanations LIMIT 1").fetchone()
    shown = _cli("explain", *_flags(config), "--request", some, "--format", "json")
    assert json.loads(shown)["cause"] == cause
    shared.close()
    one.close()
    assert _alerts(*_flags(config)) == _alerts("--db", str(tmp_path / "single.duckdb"))


def test_a_killed_collector_loses_nothing_it_acknowledged(postgres, tmp_path):
    config = _lake(postgres, tmp_path, "killed")
    path, records = _traffic(tmp_path, hours=1.0, seed=3)
    collector = Server(tmp_path / "c.duckdb", *QUIET, *_flags(config)).start()
    router = Router([collector.port])
    replay = _replay(path, router.url)
    try:
        router.wait_acked(0, len(records) // 4, timeout_s=120)  # kill once a quarter is in
        collector.proc.send_signal(signal.SIGKILL)
        collector.proc.wait(30)
        acked = set(router.acked[0])
    finally:
        replay.kill()
        replay.wait(30)
        router.close()
        collector.stop()
    assert acked
    con = lake_mod.connect(config)
    stored = {i for (i,) in con.execute("SELECT id FROM requests").fetchall()}
    assert acked <= stored
    assert maintenance.dedupe(con, "requests") == 0
    con.close()


def test_maintenance_merges_and_dedupes_while_the_lake_holds_copies(postgres, tmp_path):
    config = _lake(postgres, tmp_path, "maint")
    con = lake_mod.connect(config)
    for i in range(3):  # three commits, one id twice: what two collectors could leave
        con.execute(
            "INSERT INTO requests (id, ts) VALUES (?, now()::TIMESTAMP), (?, now()::TIMESTAMP)",
            [f"a{i}", "dup"],
        )
    done = maintenance.maintain(con, "0 seconds")
    assert done["duplicates_requests"] == 2
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone() == (4, 4)
    con.close()
    assert json.loads(_cli("lake", "maintain", *_flags(config)))["duplicates_requests"] == 0
