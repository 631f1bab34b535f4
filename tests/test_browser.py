"""The MLflow UI served from a finished smoke search, looked at in headless Chromium (Debian's)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tune_codec.tracking import resolve_tracking_uri

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(smoke_search, tmp_path_factory):
    """`mlflow server` on the smoke search's store, on a free port of 127.0.0.1; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow_ui") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", resolve_tracking_uri(str(smoke_search.db))],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the server takes 10-30 s to start here
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        server.wait(timeout=30)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def close_assistant(driver) -> None:
    """MLflow 3.17 opens an assistant panel beside every page; close it for the screenshots."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


def test_the_mlflow_ui_shows_the_search_its_trials_and_their_listening_pages(
    mlflow_ui, smoke_search, browser, tmp_path
):
    s = smoke_search
    experiment, parent = s.parent.info.experiment_id, s.parent.info.run_id
    wait = WebDriverWait(browser, 60)

    # the experiment's runs table: the search's run, and its three trials nested under it
    browser.get(f"{mlflow_ui}/#/experiments/{experiment}/runs")
    row = "div[role='row'][row-id='{}']"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row.format(parent)))
    assert not browser.find_elements(By.CSS_SELECTOR, row.format(s.children[0].info.run_id))  # folded
    close_assistant(browser)
    browser.find_element(By.CSS_SELECTOR, f"{row.format(parent)} div[col-id*='Run Name'] button").click()
    for child in s.children:
        shown = wait.until(lambda d, c=child: d.find_elements(By.CSS_SELECTOR, row.format(c.info.run_id)))
        assert child.info.run_name in shown[0].text
    browser.save_screenshot(str(tmp_path / "runs.png"))

    # the search's run page names its child runs
    browser.get(f"{mlflow_ui}/#/experiments/{experiment}/runs/{parent}")
    expected = ["Child runs", *(child.info.run_name for child in s.children)]
    wait.until(lambda d: all(text in body_text(d) for text in expected))  # times out if one is missing
    page = body_text(browser)
    assert "price_per_gpu_hour" in page and "cost/device_hours" in page
    browser.save_screenshot(str(tmp_path / "search.png"))

    # a trial's listening page, as MLflow's artifact view shows it: players that load, figures that draw
    child = s.children[0]
    browser.get(
        f"{mlflow_ui}/#/experiments/{experiment}/runs/{child.info.run_id}/artifacts/samples/index.html"
    )
    frame = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe.mlflow-html-iframe"))[0]
    close_assistant(browser)
    browser.switch_to.frame(frame)
    durations = wait.until(
        lambda d: d.execute_script(
            "const a = [...document.querySelectorAll('audio')];"
            "return a.length && a.every(x => x.readyState >= 1) ? a.map(x => x.duration) : null;"
        )
    )
    assert durations == pytest.approx([256 / 8000] * 6)  # 3 inputs and 3 outputs, one 256-sample segment each
    drawn = browser.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth > 0);")
    assert drawn == [True, True]  # waveform and spectrogram
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h3")]
    assert headings[0].startswith("Waveforms") and headings[1].startswith("Spectrograms")
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "listening.png"))
    for shot in ("runs.png", "search.png", "listening.png"):
        assert (tmp_path / shot).stat().st_size > 10_000, shot
