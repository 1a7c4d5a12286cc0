"""The dashboard in a real headless Chromium: every page loads clean, and an alert leads to
its miss's diff. Screenshots land in test-artifacts/."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_run import cachediag
from tests.servers import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="chromium and chromium-driver are installed by `make test` (Debian packages)",
)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    assert CHROMIUM and DRIVER, "make test installs chromium and chromium-driver"
    db = tmp_path_factory.mktemp("browser") / "db.duckdb"
    loaded = cachediag("ingest", str(ROOT / "sample_data" / "traffic.jsonl.gz"), "--db", str(db))
    assert loaded.exit_code == 0, loaded.stderr
    server = Server(db, "--workers", "0").start()
    server.api("stats?wait=1")
    assert server.request("POST", "/api/v1/alerts/evaluate")[0] == 200
    port = free_port()
    proc = subprocess.Popen(
        [  # a real process: the dashboard execs Streamlit, which serves the browser
            sys.executable,
            "-m",
            "cachediag",
            "dashboard",
            "--server",
            server.url,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
        line = proc.stdout.readline()
        assert line, "the dashboard exited before it was ready"
        if "You can now view" in line:
            break
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    server.stop()


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


def _clean(driver) -> None:
    assert not driver.find_elements("css selector", '[data-testid="stException"]')


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
    _wait_for(
        browser,
        {
            "Overview": "Hit ratio",
            "Alerts": "Show its misses",
            "Misses": "Open a miss",
            "Prefixes": "Versions",
            "Routing": "What if",
        }[heading],
    )
    if heading in ("Overview", "Prefixes", "Routing"):  # charts drawn, not placeholders
        _wait_charts(browser)
    _clean(browser)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{heading.lower()}.png"))


def test_from_an_alert_to_the_token_diff(dashboard, browser):
    browser.get(f"{dashboard}/alerts")
    _wait_for(browser, "Show its misses")
    buttons = [
        b for b in browser.find_elements("tag name", "button") if b.text == "Show its misses"
    ]
    # The deploy's alert: the support route, a timestamp in the system prompt.
    cards = browser.find_elements("css selector", '[data-testid="stVerticalBlockBorderWrapper"]')
    target = next((i for i, card in enumerate(cards) if "/support" in card.text), 0)
    buttons[min(target, len(buttons) - 1)].click()
    _wait_for(browser, "Open a miss")
    _wait_for(browser, "First differing token")
    _clean(browser)
    browser.save_screenshot(str(ARTIFACTS / "diff.png"))
