"""`salova app` in a real headless browser: Debian's chromium driven by Playwright, against the app on 127.0.0.1."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import real_video

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# Set to a PNG path to keep the screenshot (the README's comes from here).
SCREENSHOT_VARIABLE = "SALOVA_APP_SCREENSHOT"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def app_url(tiny_checkpoint, tmp_path):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path / "app.log", "w")
    command = [
        sys.executable,
        "-m",
        "salova.cli",
        "app",
        "--model",
        str(tiny_checkpoint),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--index-dir",
        str(tmp_path / "indexes"),
    ]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"salova app exited with {server.returncode}:\n{(tmp_path / 'app.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"salova app did not answer on {url}:\n{(tmp_path / 'app.log').read_text()}")
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_app_answers_a_real_clip_in_chromium(app_url, tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(
            f"The browser test needs Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
            "(bash scripts/setup.sh installs it when run as root)."
        )
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1150})
        page.goto(app_url)
        page.locator("#video input[type=file]").set_input_files(str(real_video("bikes.mp4")))
        expect(page.locator("#video video")).to_be_visible(timeout=60_000)

        page.locator("#question textarea").fill("what is the man riding?")
        page.locator("#ask").click()
        times = page.locator("#times")
        expect(times).to_contain_text("built", timeout=180_000)
        assert page.locator("#answer textarea").input_value().strip()
        timeline = page.locator("#timeline img")
        expect(timeline).to_be_visible()
        assert timeline.evaluate("image => image.naturalWidth") == 1100
        thumbnails = page.locator("#thumbnails img")
        expect(thumbnails).to_have_count(5)  # bikes.mp4 has 5 scenes, all within the tiny model's K = 5
        assert all(image.evaluate("image => image.naturalWidth > 0") for image in thumbnails.all())
        expect(page.locator("#thumbnails")).to_contain_text("00:00:01.200-00:00:03.040")

        page.locator("#question textarea").fill("where does he stop?")
        page.locator("#ask").click()
        expect(times).to_contain_text("reused", timeout=180_000)
        expect(times.locator("tr")).to_have_count(3)  # header and both questions with their times
        screenshot = tmp_path / "app.png"
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    if os.environ.get(SCREENSHOT_VARIABLE):
        shutil.copy(screenshot, os.environ[SCREENSHOT_VARIABLE])
