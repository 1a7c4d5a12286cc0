"""The dashboard in a real headless Chromium: every page loads clean, and an alert leads to
its miss's diff. Screenshots land in test-artifacts/."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from cachediag.demo import start
from tests.cli_run import cachediag
from tests.servers import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="chromium and chromium-driver are installed by `make test` (Debian packages)",
)


@contextlib.contextmanager
def served(db: Path):
    """``db`` served by `cachediag serve` (explained, alerts evaluated) with a real
    `cachediag dashboard` process in front of it; yields the dashboard's URL."""
    server = Server(db, "--workers", "0").start()
    server.api("stats?wait=1")
    assert server.request("POST", "/api/v1/alerts/evaluate")[0] == 200
    port = free_port()
    try:  # a real process: the dashboard execs Streamlit, which serves the browser
        proc = start(
            [sys.executable, "-m", "cachediag", "dashboard", "--server", server.url]
            + ["--port", str(port)],
            "You can now view",
        )
    except BaseException:
        server.stop()
        raise
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.stop()


def _sample_db(directory: Path) -> Path:
    db = directory / "db.duckdb"
    loaded = cachediag("ingest", str(ROOT / "sample_data" / "traffic.jsonl.gz"), "--db", str(db))
    assert loaded.exit_code == 0, loaded.stderr
    return db


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    assert CHROMIUM and DRIVER, "make test installs chromium and chromium-driver"
    with served(_sample_db(tmp_path_factory.mktemp("browser"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait_for(driver, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element("tag name", "body").text)


def _wait_charts(driver, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements("css selector", ".vega-embed canvas, .vega-embed svg")
    )


def _wait_tables(driver, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_elements("css selector", '[data-testid="stDataFrame"] canvas')
    )


def _wait_table_cell(driver, wanted, timeout: float = 60) -> None:
    """Until a cell of an ``st.table`` holds text ``wanted`` accepts (a rerun may replace
    the table while it is read)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    cells = '[data-testid="stTable"] td'
    WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: any(wanted(c.text) for c in d.find_elements("css selector", cells))
    )


def _clean(driver) -> None:
    assert not driver.find_elements("css selector", '[data-testid="stException"]')


MARKERS = {  # what each page draws last
    "Overview": "Insights",
    "Alerts": "incidents in all",
    "Misses": "Segment maps",
    "Prefixes": "Versions",
    "Routing": "What if",
}


@pytest.mark.parametrize(
    "path, heading",
    [
        ("", "Overview"),
        ("alerts", "Alerts"),
        ("misses", "Misses"),
        ("prefixes", "Prefixes"),
        ("routing", "Routing"),
    ],
)
def test_every_page_loads_without_errors(dashboard, browser, path, heading):
    browser.get(f"{dashboard}/{path}")
    _wait_for(browser, heading)
    _wait_for(browser, MARKERS[heading])
    if heading in ("Overview", "Prefixes", "Routing"):  # charts drawn, not placeholders
        _wait_charts(browser)
    if heading in ("Alerts", "Misses", "Prefixes"):  # tables drawn too
        _wait_tables(browser)
    if heading == "Routing":  # the hit ratio as a percentage (the table may come last)
        _wait_table_cell(browser, lambda text: text.endswith("%"))
    _clean(browser)
    nav = browser.find_element("css selector", '[data-testid="stSidebarNav"]').text.split("\n")
    assert nav == ["Overview", "Alerts", "Misses", "Prefixes", "Routing"]  # titles, not files
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{heading.lower()}.png"))


def test_overview_bands_incidents_and_stacks_cost_by_cause(dashboard, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(dashboard)
    _wait_for(browser, "Insights")
    _wait_for(browser, "Shaded:")  # the incidents as bands behind the series
    WebDriverWait(browser, 60).until(
        lambda d: len(d.find_elements("css selector", ".vega-embed")) >= 4
    )
    charts = browser.find_elements("css selector", ".vega-embed")
    heading = browser.find_element("xpath", "//h3[contains(., 'Missed $ per hour, by cause')]")
    assert heading.location["y"] < charts[3].location["y"]  # the stacked chart follows it
    _clean(browser)


def _incidents(driver) -> list:
    """The Alerts page's incident picker opened: its options (one per incident). The picker
    may be drawn after the text around it and redrawn by a rerun: it is found and opened
    again until its options show."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    combobox, option = '[data-testid="stSelectbox"] [role="combobox"]', '[role="option"]'

    def opened(d) -> list:
        if not d.find_elements("css selector", option):
            for box in d.find_elements("css selector", combobox)[:1]:
                box.click()
        return d.find_elements("css selector", option)

    return WebDriverWait(driver, 60, ignored_exceptions=[WebDriverException]).until(opened)


def test_alerts_are_one_row_per_incident(dashboard, browser):
    browser.get(f"{dashboard}/alerts")
    _wait_for(browser, "incidents in all")
    _wait_for(browser, "Top causes")  # the first incident's details, drawn below the table
    labels = [option.text for option in _incidents(browser)]
    assert labels and len(labels) == len(set(labels))  # one group and onset, one row
    assert any("/support" in label for label in labels)
    assert browser.find_elements("css selector", '[data-testid="stDataFrame"]')
    _clean(browser)


def test_from_an_incident_to_the_side_by_side_diff(dashboard, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{dashboard}/alerts")
    _wait_for(browser, "Show its misses")
    # The deploy's incident: the support route, a timestamp in the system prompt.
    options = _incidents(browser)
    pick = next(o for o in options if "/support" in o.text and "dynamic_value" in o.text)
    where, since = pick.text.split(" · ")[:2]  # "🔴 route=/support", "2026-01-01 10:00"
    state = "firing" if where.startswith("🔴") else "resolved"
    pick.click()
    _wait_for(browser, f"{where.split(' ', 1)[1]} · {state} since {since}")  # its details
    button = next(
        b for b in browser.find_elements("tag name", "button") if "Show its misses" in b.text
    )
    button.click()
    _wait_for(browser, "Segment maps")
    _wait_for(browser, "First differing token")
    WebDriverWait(browser, 60).until(  # the pictures may come after the text
        lambda d: len(d.find_elements("css selector", ".cd-bar")) == 2
    )
    sides = browser.find_elements("css selector", ".cd-pair .cd-side")
    assert len(sides) == 2  # the shared prefix collapsed to a count on both
    assert len(browser.find_elements("css selector", ".cd-side .cd-shared")) == 2
    assert browser.find_elements("css selector", ".cd-side .cd-a")
    assert browser.find_elements("css selector", ".cd-side .cd-b")
    assert len(browser.find_elements("css selector", ".cd-bar")) == 2
    assert browser.find_elements("css selector", ".cd-mark")
    _clean(browser)
    browser.save_screenshot(str(ARTIFACTS / "diff.png"))


def test_misses_shows_misses_when_the_newest_requests_are_healthy(browser, tmp_path):
    import duckdb

    db = _sample_db(tmp_path)
    assert cachediag("explain", "--db", str(db)).exit_code == 0
    con = duckdb.connect(str(db))  # 1,000 newer requests, every one cached in full
    con.execute(
        "INSERT INTO requests (id, ts, signal, route, replica, request_model, prompt_tokens, "
        "cached_tokens) SELECT 'healthy-' || i, (SELECT max(ts) FROM requests) "
        "+ to_seconds(i + 1), 'span', '/chat', 'chat-0', 'gpt-4o', 2048, 2048 FROM range(1000) t(i)"
    )
    con.execute(
        "INSERT INTO explanations (id, cause, missed_tokens, missed_cost_usd) "
        "SELECT 'healthy-' || i, 'no_miss', 0, 0 FROM range(1000) t(i)"
    )
    con.close()
    with served(db) as url:
        browser.get(f"{url}/misses")
        _wait_for(browser, "Segment maps")
        body = browser.find_element("tag name", "body").text
        assert "No explained misses" not in body and "misses in all" in body
        _clean(browser)
