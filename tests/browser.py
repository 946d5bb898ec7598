"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium, and the
`koin demo` app served from a subprocess on a free localhost port.

Outside CI a machine without Chromium skips the browser tests; in CI (`$CI` set, as `.ci/run`
sets it) a missing browser fails them, so they can never pass by not running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("KOIN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KOIN_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
# Flags that run Debian's Chromium headless as root in a container with no network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
)
RESULT_SELECTOR = "#koin-top-k"


def require_chromium() -> None:
    """Skip when Chromium is missing on a developer machine; fail when it is missing in CI."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    if not missing:
        return
    message = (
        f"{' and '.join(missing)} not found: install Debian's `chromium chromium-driver` "
        "(.ci/run does)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"in CI the browser test must run: {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(command: list[str], port: int, env: dict, cwd: Path | None = None) -> Iterator[str]:
    """Run `command` (a server on `port`) until the block ends; yield its URL once it answers."""
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _wait_until_it_answers(process, f"http://127.0.0.1:{port}/", log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_until_it_answers(process: subprocess.Popen, url: str, log, limit: float = 180) -> str:
    deadline = time.monotonic() + limit
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            what = (
                f"exited with {process.returncode}"
                if process.poll() is not None
                else (f"did not answer on {url} in {limit:.0f} s")
            )
            pytest.fail(f"the app {what}:\n{log.read()[-4000:]}")
        time.sleep(0.5)
    return url


def demo_env() -> dict:
    env = dict(os.environ)
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def koin_demo_command(model: Path | str, port: int) -> list[str]:
    return [sys.executable, "-m", "koin_hf.cli", "demo", str(model), "--port", str(port)]


@contextlib.contextmanager
def chromium() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="koin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def upload_and_read(
    driver, url: str, image: Path, screenshot: Path | None = None, timeout: float = 120
) -> list[tuple[str, float]]:
    """Open the app, upload `image`, wait for the result; the (name, score) pairs it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    upload = wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]"))
    )
    upload.send_keys(str(image))
    wait.until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, f"{RESULT_SELECTOR} meter")
            and d.find_element(By.CSS_SELECTOR, f"{RESULT_SELECTOR} h2").text.strip()
        )
    )
    result = driver.find_element(By.CSS_SELECTOR, RESULT_SELECTOR)
    heading = result.find_element(By.CSS_SELECTOR, "h2").text.strip()
    rows = [
        (meter.get_attribute("aria-label"), float(meter.get_attribute("value")))
        for meter in result.find_elements(By.CSS_SELECTOR, "meter")
    ]
    assert rows and rows[0][0] == heading, (heading, rows)  # the big name is the best one
    if screenshot is not None:
        driver.save_screenshot(str(screenshot))
    return rows


def _screenshot(argv: list[str]) -> int:
    """`python tests/browser.py MODEL IMAGE OUT.png`: serve `koin demo MODEL`, upload IMAGE in
    headless Chromium, save the page as OUT.png (how docs/demo_screenshot.png was made)."""
    model, image, out = argv
    port = free_port()
    with served(koin_demo_command(model, port), port, demo_env()) as url, chromium() as driver:
        shown = upload_and_read(driver, url, Path(image).resolve(), screenshot=Path(out))
    print(f"{out}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_screenshot(sys.argv[1:]))
