"""Regenerate the README's screenshot of a broken run: ``python -m tests.console.screenshot docs/console-run.png``.

The same live gateway and browser as the console tests: run ``demo-6``, whose invalid draft entered at the
writer and was consumed by the critic, with the entry point chosen so its violation shows in the payload.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PATIENCE, TOKEN
from tests.console.live import LiveGateway, fresh_profile, start_browser


def main(target: Path) -> None:
    live = LiveGateway()
    try:
        with fresh_profile() as profile:
            browser = start_browser(profile)
            try:
                browser.set_window_size(1500, 1500)
                browser.get(f"{live.admin_url}/console/#/runs/demo-6")
                browser.find_element(By.ID, "token").send_keys(TOKEN)
                browser.find_element(By.ID, "login-button").click()
                located = (By.CSS_SELECTOR, "section.handoff .payload.response .hit")
                WebDriverWait(browser, PATIENCE).until(ec.visibility_of_element_located(located))
                target.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(target))
            finally:
                browser.quit()
    finally:
        live.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console-run.png"))
