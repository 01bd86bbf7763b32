"""A headless Debian chromium driven by selenium through the system chromedriver (no browser is downloaded).

Needs /usr/bin/chromium and /usr/bin/chromedriver: `scripts/install-chromium`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
VIEWPORT = (1280, 900)

# Every resource the page fetched (scripts, styles, images, XHR/fetch), as absolute URLs.
RESOURCE_URLS_JS = "return performance.getEntriesByType('resource').map(e => e.name);"


def start_chromium() -> webdriver.Chrome:
    """A headless chromium whose viewport is exactly :data:`VIEWPORT`, keeping the console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    # The window size is the outer window; screenshots want exactly this viewport.
    width, height = VIEWPORT
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def console_errors(browser: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console errors since the log was last read."""
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
