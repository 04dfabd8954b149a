"""Browser fixtures: one live gateway and one headless Chromium per module (starting a browser is the slow part)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.console.live import LiveGateway, fresh_profile, missing_browser, start_browser


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    gateway = LiveGateway()
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    reason = missing_browser()
    if reason is not None:
        pytest.skip(f"no browser for the console tests: {reason}")
    with fresh_profile() as profile:
        driver = start_browser(profile)
        try:
            yield driver
        finally:
            driver.quit()
