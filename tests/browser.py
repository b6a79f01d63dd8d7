"""Headless Chromium for the tests that use a real browser: Debian's chromium and
chromium-driver (.ci/apt-packages.txt), driven by selenium (the test extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NEEDS_CHROMIUM = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists())
    or importlib.util.find_spec("selenium") is None,
    reason="needs Debian's chromium and chromium-driver (.ci/apt-packages.txt) and "
    "selenium (the test extra)",
)


def headless_chromium(*arguments: str) -> Any:
    """A selenium driver of headless Chromium with `arguments` besides the usual ones
    (the caller quits it); skips the test when selenium is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
