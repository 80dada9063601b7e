"""Screenshots of `catmner serve` and of an `evaluate --html` page for docs/figures (headless Chromium).

    uv run python docs/scripts/screenshots.py MODEL_DIR --data-dir ../shared/data

Starts `catmner serve MODEL_DIR --port 0` on 127.0.0.1, types a tweet, uploads a shared tweet image with its
BLIP-2 caption, selects an entity and saves docs/figures/serve.png; then runs `catmner evaluate MODEL_DIR
--html` on the first tweets of the Twitter-2015 test split and saves docs/figures/evaluate-html.png. Uses
Debian's chromium + chromium-driver through Selenium (offline: nothing is downloaded).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TWEET = "NASA issues an ominous warning for the Larsen C ice shelf in Antarctica , says @EricHolthaus"
IMAGE = "twitter2015_images/278.jpg"
CAPTION = "an iceberg floating in the ocean with a bird flying above it"  # its BLIP-2 caption (captions/)


def chromium(width: int):
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--window-size={width},900",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)  # fmt: skip
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def shot(driver, png: Path, width: int, max_height: int) -> None:
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the viewport itself, exactly
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics["height"] = min(height, max_height)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(png))
    print(png)


def serve_page(model: Path, data_dir: Path, out: Path, entity: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    exe = Path(sys.executable).parent / "catmner"
    proc = subprocess.Popen([str(exe), "serve", str(model), "--port", "0"], stdout=subprocess.PIPE, text=True)
    port = re.search(r":(\d+)/", proc.stdout.readline()).group(1)
    driver = chromium(1100)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 120).until(lambda d: "variant" in d.find_element(By.ID, "model-info").text)
        driver.find_element(By.ID, "text").send_keys(TWEET)
        driver.find_element(By.ID, "caption").send_keys(CAPTION)
        driver.find_element(By.ID, "image").send_keys(str(data_dir / "tweet_images" / IMAGE))
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 120).until(EC.visibility_of_element_located((By.ID, "output")))
        marks = driver.find_elements(By.CSS_SELECTOR, "#tweet mark.ent")
        if marks:
            marks[min(entity, len(marks) - 1)].click()
        shot(driver, out / "serve.png", 1100, 2000)
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def report_page(model: Path, data_dir: Path, out: Path, max_tweets: int) -> None:
    exe = Path(sys.executable).parent / "catmner"
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        subprocess.run([str(exe), "evaluate", str(model), "--dataset", "twitter2015", "--split", "test",
                        "--data-dir", str(data_dir), "--max-tweets", str(max_tweets), "--html", str(html),
                        "--quiet"], check=True)  # fmt: skip
        driver = chromium(1200)
        try:
            driver.get(html.as_uri())
            shot(driver, out / "evaluate-html.png", 1200, 1700)
        finally:
            driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--entity", type=int, default=0, help="which predicted entity the serve shot selects")
    ap.add_argument("--max-tweets", type=int, default=300)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    serve_page(args.model, args.data_dir, args.out, args.entity)
    report_page(args.model, args.data_dir, args.out, args.max_tweets)


if __name__ == "__main__":
    main()
