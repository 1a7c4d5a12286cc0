"""Every dashboard page, through Streamlit's AppTest, against a server holding sample data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.cli_run import cachediag
from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
PAGES = ROOT / "dashboard" / "views"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("dash") / "db.duckdb"
    sample = ROOT / "sample_data" / "traffic.jsonl.gz"
    loaded = cachediag("ingest", str(sample), "--db", str(db))
    assert loaded.exit_code == 0, loaded.stderr
    srv = Server(db, "--workers", "0").start()
    srv.api("stats?wait=1")  # explained
    assert srv.request("POST", "/api/v1/alerts/evaluate")[0] == 200  # and alerted
    yield srv
    srv.stop()


def _app(server, monkeypatch) -> AppTest:
    monkeypatch.setenv("CACHEDIAG_SERVER", server.url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_overview_shows_kpis_charts_cost_by_cause_and_insights(server, monkeypatch):
    at = _app(server, monkeypatch)
    assert at.title[0].value == "Overview"
    labels = {m.label: m.value for m in at.metric}
    assert {"Hit ratio", "Cached tokens", "Cost of misses"} <= set(labels)
    assert labels["Hit ratio"].endswith("%")
    titles = [s.value for s in at.subheader]
    assert titles[:2] == ["Token-weighted hit ratio", "Cached tokens"]
    assert "Missed $ per hour, by cause" in titles and "Insights" in titles
    assert any("incidents" in c.value for c in at.caption)  # bands drawn from the alerts
    at.selectbox[1].select("route").run()
    assert not at.exception


def test_alerts_page_shows_one_row_per_incident_and_links_to_misses(server, monkeypatch):
    at = _app(server, monkeypatch).switch_page(str(PAGES / "alerts.py")).run()
    assert not at.exception and at.title[0].value == "Alerts"
    heads = at.selectbox[0].options  # every incident on the page, to pick
    assert any("route=/agent" in h and "cached_drop" in h for h in heads), heads
    assert any("prefix_break" in h and "reasoning_dropped" in h for h in heads), heads
    stored = server.api("alerts")["data"]
    assert len(heads) == len(stored)  # one row per incident, as the server answers
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "state",
        "where",
        "since",
        "cause",
        "cost / h",
        "trend",
        "signals",
    ]
    assert len(table) == len(heads)
    picked = next(i for i, h in enumerate(heads) if "reasoning_dropped" in h and i > 0)
    at.selectbox[0].select_index(picked).run()
    assert any("Top causes: reasoning_dropped (" in m.value for m in at.markdown)  # its details
    at.button[0].click().run()  # "Show its misses" switches to the Misses page
    assert not at.exception
    assert at.title[0].value == "Misses"


def test_incident_rows_become_plain_values():
    from datetime import datetime

    from dashboard.incidents import incidents

    t = datetime(2026, 1, 1, 10, 0, 12)
    new = [
        {
            "id": "i1",
            "group_key": '{"route": "/r"}',
            "state": "resolved",
            "started_at": t,
            "signals": '[{"rule": "prefix_break", "value": 5, "baseline": 0}]',
            "cause": "dynamic_value",
            "top_causes": "[]",
            "cost_per_hour": 1.5,
            "attribution": "{}",
            "sparkline": "[1, 2, 5]",
        }
    ]
    (inc,) = incidents(new)
    assert inc["cause"] == "dynamic_value" and inc["sparkline"] == [1, 2, 5]
    assert inc["group"] == {"route": "/r"} and inc["label"] == "route=/r"
    assert inc["signals"] == [{"rule": "prefix_break", "value": 5, "baseline": 0}]


def test_signals_are_told_in_their_own_unit():
    from dashboard.incidents import signals_text

    drop = {"rule": "cached_drop", "value": 0.5, "baseline": 0.9}
    misses = {"rule": "cached_drop", "value": 5, "baseline": 0.6, "unit": "misses"}
    assert signals_text([drop]) == "cached_drop 50.0% (was 90.0%)"
    assert signals_text([misses]) == "cached_drop 5.0 missed (was 0.6 missed)"


def test_misses_page_pages_in_the_server_and_draws_the_diff(server, monkeypatch):
    at = _app(server, monkeypatch).switch_page(str(PAGES / "misses.py")).run()
    assert not at.exception and at.title[0].value == "Misses"
    assert any("misses in all" in c.value for c in at.caption)
    at.selectbox[0].select("dynamic_value").run()
    assert not at.exception
    assert "First differing token" in " ".join(m.value for m in at.markdown)
    drawn = " ".join(h.proto.body for h in at.get("html"))
    assert "cd-shared" in drawn and "cd-a" in drawn and "cd-b" in drawn
    assert "first differing block" in drawn and drawn.count('class="cd-bar"') == 2


@pytest.mark.parametrize("page, title", [("prefixes.py", "Prefixes"), ("routing.py", "Routing")])
def test_prefixes_and_routing_pages(server, monkeypatch, page, title):
    at = _app(server, monkeypatch).switch_page(str(PAGES / page)).run()
    assert not at.exception and at.title[0].value == title
    assert len(at.dataframe if page == "prefixes.py" else at.table) >= 1
    if page == "routing.py":
        sticky = at.table[0].value  # one row per route
        assert {"route", "replicas", "hit_ratio"} <= set(sticky.columns)
        shown = len(at.dataframe)
        at.button[0].click().run()  # the what-if runs on demand
        assert not at.exception and len(at.dataframe) == shown + 1


def test_unreachable_server_is_a_message_not_a_traceback(monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("CACHEDIAG_SERVER", f"http://127.0.0.1:{free_port()}")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert "cannot reach the cachediag server" in at.error[0].value


def test_diff_endpoint(server):
    data = server.api("explanations?cause=dynamic_value&limit=1")["data"]
    detail = json.loads(server.request("GET", f"/api/v1/requests/{data[0]['id']}/diff")[2])
    assert detail["comparison"]["cause"] == "dynamic_value"
    assert detail["segments_b"] and "kept" in detail["segments_b"][0]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A server that requires a bearer token."""
    srv = Server(tmp_path_factory.mktemp("tok") / "db.duckdb", "--workers", "0", "--token", "s3")
    srv.start()
    yield srv
    srv.stop()


def test_client_sends_the_token_from_its_argument_or_the_environment(locked, monkeypatch):
    from dashboard.client import Client, ServerError

    monkeypatch.delenv("CACHEDIAG_TOKEN", raising=False)
    assert Client(locked.url, token="s3").get("stats")["records"] == 0
    with pytest.raises(ServerError, match="answered 401.*--token"):
        Client(locked.url).get("stats")
    with pytest.raises(ServerError, match="answered 401"):
        Client(locked.url, token="wrong").get("stats")
    monkeypatch.setenv("CACHEDIAG_TOKEN", "s3")
    assert Client(locked.url).get("stats")["records"] == 0


@pytest.mark.parametrize("token, refused", [("s3", False), (None, True)])
def test_every_page_sends_the_token(locked, monkeypatch, token, refused):
    monkeypatch.setenv("CACHEDIAG_SERVER", locked.url)
    if token:
        monkeypatch.setenv("CACHEDIAG_TOKEN", token)
    else:
        monkeypatch.delenv("CACHEDIAG_TOKEN", raising=False)
    for page in ("overview", "alerts", "misses", "prefixes", "routing"):
        at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=60)
        at.run()
        assert not at.exception, (page, at.exception)
        errors = [e.value for e in at.error]
        assert bool(errors) == refused and all("401" in e for e in errors), (page, errors)


def test_dashboard_command_hands_the_token_to_the_app(monkeypatch):
    from click.testing import CliRunner

    from cachediag.cli import main

    seen = {}
    monkeypatch.setattr("os.execve", lambda path, argv, env: seen.update(env))
    monkeypatch.delenv("CACHEDIAG_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["dashboard", "--server", "http://h:1", "--token", "t1"])
    assert result.exit_code == 0, result.output
    assert seen["CACHEDIAG_TOKEN"] == "t1" and seen["CACHEDIAG_SERVER"] == "http://h:1"
    assert "--token" in CliRunner().invoke(main, ["dashboard", "--help"]).output
