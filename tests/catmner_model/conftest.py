"""Fixtures of the catmner_model tests: ``chromium``, a real headless Chromium for the page tests (Debian's
`chromium` + `chromium-driver`, driven by Selenium; nothing downloaded: Selenium Manager is told to stay
offline and is given both paths), and ``screenshot``, which saves a whole page as PNG."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CATMNER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CATMNER_CHROMEDRIVER", "/usr/bin/chromedriver")


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) or shutil.which(path)):
            return f"{path} not installed (apt-get install chromium chromium-driver; .ci/setup does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (uv sync: it is a dev dependency)"
    return None


def start_chromium(width: int = 1200, height: int = 900):
    """A headless Chromium WebDriver (skips the test with the reason when none is installed)."""
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)  # fmt: skip
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


@pytest.fixture
def chromium():
    driver = start_chromium()
    yield driver
    driver.quit()


def full_page_png(driver, path, width: int = 1200) -> Path:
    """Screenshot of the whole page (the window resized to the page's height). With CATMNER_SCREENSHOTS=DIR
    (docs/scripts/screenshots.sh: docs/figures) a copy is kept there under the same name."""
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the viewport itself, exactly
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics["height"] = min(height, 4000)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(path))
    keep = os.environ.get("CATMNER_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / Path(path).name).write_bytes(Path(path).read_bytes())
    return Path(path)


@pytest.fixture
def screenshot():
    return full_page_png
