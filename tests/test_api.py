"""The query API as a real server: bad parameters get a 400 naming them, and rows
holding extreme values (old databases stored input_tokens = -2^63) never break a query."""

from __future__ import annotations

import json
import time

import pytest

from collector.store.database import Store
from tests.servers import Server

EXTREMES = [(-(2**63), 2**63 - 1), (2**63 - 1, -(2**63)), (2**63 - 1, 2**63 - 1), (5, None)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "db.duckdb"
    store = Store(str(db))  # written before the server holds the file, as an old version did
    now = time.time_ns()
    rows = [
        {
            "id": f"extreme-{i}",
            "start_ns": now - i * 10**9,
            "service": "svc",
            "route": "/extreme",
            "replica": f"r{i % 2}",
            "provider": "openai",
            "request_model": "gpt-4o",
            "session_key": "s1",
            "prefix_hash": "p1",
            "tools_count": 2**31 - 1,
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "output_tokens": prompt,
            "total_tokens": prompt,
            "ttft_ms": 1e308,
        }
        for i, (prompt, cached) in enumerate(EXTREMES)
    ]
    store.insert(Store.frame(rows), [])
    store.close()
    srv = Server(db, "--workers", "0", "--alert-every", "0").start()
    yield srv
    err = srv.stop()
    # (the background explainer may still log its own overflow on these rows: not ours)
    assert "collector/api/" not in err and "collector/store/queries.py" not in err


@pytest.mark.parametrize(
    "path",
    [
        "timeseries",
        "timeseries?window=1d&group=route",
        "timeseries?group=model&since=2000-01-01&until=9999-12-31T23:59:59",
        "requests",
        "requests/extreme-0",
        "requests/extreme-0/diff",
        "explanations",
        "prefixes?window=3660d",
        "routing",
        "whatif?ttl=1h&replicas=3",
        "alerts",
        "stats",
        "requests?route=&since=&group=",  # an empty value is the parameter left out
    ],
)
def test_extreme_stored_values_do_not_break_a_query(server, path):
    body = server.api(path)  # asserts 200; the body is JSON (no NaN or Infinity)
    json.dumps(body, allow_nan=False)


def test_an_empty_filter_is_no_filter(server):
    assert server.api("requests?route=&service=")["count"] == len(EXTREMES)


def test_series_sums_are_clamped_not_wrapped(server):
    (row,) = server.api("timeseries?window=1d&route=/extreme")["data"]
    assert row["requests"] == len(EXTREMES)
    assert row["prompt_tokens"] == 2**63 - 1  # 2^63 - 1 + 5 clamps; it does not wrap


@pytest.mark.parametrize(
    "query, name",
    [
        ("requests?limit=%C2%B2", "limit"),  # '²': str.isdigit() says yes, int() says no
        ("requests?limit=-1", "limit"),
        ("requests?limit=10001", "limit"),
        ("requests?offset=-5", "offset"),
        ("requests?offset=" + "9" * 5000, "offset"),
        ("requests?since=99999999999999999999", "since"),
        ("requests?since=1e400", "since"),
        ("requests?since=-1", "since"),
        ("requests?until=10000-01-01", "until"),
        ("timeseries?window=99999999999999999999d", "window"),
        ("timeseries?window=3661d", "window"),
        ("timeseries?window=-5", "window"),
        ("timeseries?window=0", "window"),
        ("prefixes?window=" + "9" * 5000, "window"),
        ("whatif?ttl=9999999999d", "ttl"),
        ("whatif?replicas=%C2%B2", "replicas"),
        ("explanations?limit=1.5", "limit"),
    ],
)
def test_unusable_parameters_get_a_400_naming_them(server, query, name):
    status, _, body = server.request("GET", "/api/v1/" + query)
    assert status == 400, body
    message = json.loads(body)["error"]
    assert message.startswith(f"{name}=") and "\n" not in message and len(message) < 200


def test_an_unexpected_api_error_is_answered_500_and_logged(tmp_path, monkeypatch, caplog):
    import http.client
    import threading

    from collector.receiver.intake import Config
    from collector.receiver.server import make_server
    from collector.service import reads

    def boom(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(reads, "requests", boom)
    before = set(threading.enumerate())
    httpd = make_server(
        Config(db=str(tmp_path / "db.duckdb"), port=0, explain=False, alert_every_s=0)
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=30)
        conn.request("GET", "/api/v1/requests")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 500 and b"a bug" not in body and b"\n" not in body.strip()
        assert httpd.collector.stats.server_errors == 1
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=30)
        conn.request("GET", "/api/v1/routing")  # the app still answers after a crash
        assert conn.getresponse().status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        httpd.collector.close()
        thread.join(30)
    assert "RuntimeError: a bug" in caplog.text  # the traceback went to the log
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]  # loop stopped


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """40 requests a minute apart, newest first: the newest 10 healthy (no_miss), then
    misses alternating routing (/a, replica r0) and ttl_expired (/b, r1), a cold start
    among them."""
    import duckdb

    db = tmp_path_factory.mktemp("misses") / "db.duckdb"
    Store(str(db)).close()
    con = duckdb.connect(str(db))
    con.execute(
        "INSERT INTO requests (id, ts, signal, route, replica, request_model, prompt_tokens, "
        "cached_tokens, block_hashes) SELECT 'q' || i, TIMESTAMP '2026-01-01 12:00' "
        "- to_minutes(i), 'span', CASE WHEN i % 2 = 0 THEN '/a' ELSE '/b' END, 'r' || (i % 2), "
        "'gpt-4o', 4096, 0, ''::BLOB FROM range(40) t(i)"
    )
    con.execute(
        "INSERT INTO explanations (id, cause, missed_tokens, missed_cost_usd) "
        "SELECT 'q' || i, CASE WHEN i < 10 THEN 'no_miss' WHEN i = 25 THEN 'cold_start' "
        "WHEN i % 2 = 0 THEN 'routing' ELSE 'ttl_expired' END, 4096, 0.01 FROM range(40) t(i)"
    )
    con.close()
    srv = Server(db, "--workers", "0", "--alert-every", "0").start()
    yield srv
    srv.stop()


def test_misses_are_filtered_and_paged_in_the_server(explained):
    page = explained.api("explanations?misses=1&limit=5")
    assert page["total"] == 29 and page["count"] == 5  # 40 - 10 healthy - 1 cold start
    assert [r["id"] for r in page["data"]] == ["q10", "q11", "q12", "q13", "q14"]
    later = explained.api("explanations?misses=1&limit=5&offset=10")
    assert [r["id"] for r in later["data"]] == ["q20", "q21", "q22", "q23", "q24"]
    every = explained.api("explanations?limit=100")
    assert every["total"] == 40 and {r["cause"] for r in every["data"]} >= {"no_miss"}
    routed = explained.api("explanations?misses=1&cause=routing&route=/a&replica=r0&limit=3")
    assert routed["total"] == 15 and all(r["cause"] == "routing" for r in routed["data"])
    recent = explained.api("explanations?misses=1&since=2026-01-01T11:45:00")
    assert recent["total"] == 6  # q10..q15: 10 to 15 minutes before noon (since inclusive)
    assert explained.api("explanations?misses=1&route=/none")["total"] == 0


def test_missed_dollars_per_window_and_cause(explained):
    rows = explained.api("causes?window=1h")["data"]
    assert {r["cause"] for r in rows} == {"routing", "ttl_expired"}
    assert sum(r["misses"] for r in rows) == 29
    assert sum(r["missed_cost_usd"] for r in rows) == pytest.approx(0.29)


def test_whatif_runs_on_its_worker_over_a_sample_and_reports_its_job(explained):
    answer = explained.api("whatif?router=sticky&sample=8")
    assert answer["sampled"] == 8 and answer["stored"] == 40
    assert sum(r["requests"] for r in answer["data"]) == 8
    status, _, body = explained.request("POST", "/api/v1/whatif/jobs?router=sticky&sample=8")
    job = json.loads(body)  # the same question: the same job, answered already
    assert status == 200 and job["state"] == "done" and job["done"] == job["total"] == 8
    assert job["data"] == answer["data"]
    assert explained.api(f"whatif/jobs?id={job['id']}")["state"] == "done"
    assert job["id"] in {j["id"] for j in explained.api("whatif/jobs")["data"]}
    assert explained.request("GET", "/api/v1/whatif/jobs?id=nope")[0] == 404
    assert explained.api("whatif?sample=0")["sampled"] is None  # 0: every request
