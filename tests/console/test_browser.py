"""The console in a real headless Chromium against a live gateway holding a broken demo run and a pending DLQ item.

Every wait is an explicit ``WebDriverWait`` on something the page shows; each test signs in on its own, so they
pass in any order.
"""

from __future__ import annotations

import json

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import PATIENCE, TOKEN
from tests.console.live import ESCALATED_RUN, MARKUP, MARKUP_RUN, LiveGateway


def wait(browser: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    """Live updates redraw parts of the page: an element found a moment ago may be replaced, so look again."""
    return WebDriverWait(browser, PATIENCE, ignored_exceptions=[StaleElementReferenceException])


def find(browser: webdriver.Chrome, css: str) -> WebElement:
    return wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(browser: webdriver.Chrome, live: LiveGateway, token: str = TOKEN, hash_: str = "") -> None:
    """Open the console with a fresh session and submit ``token`` on the login form."""
    browser.get(f"{live.admin_url}/console/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{live.admin_url}/console/{hash_}")
    find(browser, "#token").send_keys(token)
    browser.find_element(By.ID, "login-button").click()


def test_a_wrong_token_is_refused_on_the_login_form(browser: webdriver.Chrome, live: LiveGateway) -> None:
    sign_in(browser, live, token="not-the-token")
    assert "refused" in find(browser, "#login-error").text
    assert not browser.find_element(By.ID, "app").is_displayed()
    assert browser.execute_script("return sessionStorage.length") == 0


def test_a_broken_run_shows_its_entry_point_and_violations(browser: webdriver.Chrome, live: LiveGateway) -> None:
    sign_in(browser, live, hash_="#/runs/demo-2")
    entry = find(browser, "svg.sequence g.arrow.entry")
    assert entry.get_attribute("data-verdict") == "response_invalid"
    assert "researcher" in browser.find_element(By.CSS_SELECTOR, ".entry-summary").text
    detail = find(browser, f"section.handoff[data-handoff-id='{entry.get_attribute('data-handoff-id')}']")
    assert [li.get_attribute("data-pointer") for li in detail.find_elements(By.CSS_SELECTOR, ".violations li")] == [
        "/steps/0",
        "/steps/1",
    ]
    highlighted = detail.find_elements(By.CSS_SELECTOR, ".payload.response .hit")
    assert {node.get_attribute("data-pointer") for node in highlighted} == {"/steps/0", "/steps/1"}
    assert (detail.find_element(By.CSS_SELECTOR, "a.trace").get_attribute("href") or "").startswith(
        "http://traces.example/"
    )

    browser.find_element(By.CSS_SELECTOR, "a[data-run-id='demo-6']").click()
    consumed = find(browser, "svg.sequence g.arrow.downstream")
    assert consumed.get_attribute("data-verdict") == "request_invalid"
    assert find(browser, "svg.sequence g.arrow.entry").get_attribute("data-verdict") == "response_invalid"


def _arrows(browser: webdriver.Chrome) -> list[dict[str, str]]:
    """The diagram's arrows, read in one go (a redraw between two reads cannot mix two diagrams)."""
    script = """return [...document.querySelectorAll('svg.sequence g.arrow')]
                  .map(g => ({text: g.textContent, verdict: g.dataset.verdict}))"""
    arrows: list[dict[str, str]] = browser.execute_script(script)
    return arrows


def _item_status(browser: webdriver.Chrome, item_id: str) -> str:
    return find(browser, f"[data-item-status='{item_id}']").text


def test_resolving_a_dlq_item_resumes_the_run_live(browser: webdriver.Chrome, live: LiveGateway) -> None:
    item = live.escalation_id
    sign_in(browser, live, hash_="#/health")
    find(browser, f"button[data-item-id='{item}']").click()
    editor = find(browser, "textarea.answer")
    assert json.loads(editor.get_attribute("value") or "")["score"] == 17  # pre-filled with the agent's answer

    find(browser, "button.do-resolve").click()  # still invalid: refused in the page, nothing sent
    wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".outcome"), "nothing was sent"))
    assert _item_status(browser, item) == "pending"

    editor.clear()
    editor.send_keys(json.dumps({"verdict": "approve", "score": 0.85, "comments": ["rescaled"]}))
    find(browser, "button.do-resolve").click()
    wait(browser).until(lambda b: _item_status(b, item) == "resolved")
    outcome = (By.CSS_SELECTOR, f"section.dlq-item[data-item-id='{item}'] .resolution")
    wait(browser).until(ec.text_to_be_present_in_element(outcome, "Outcome: resolved"))
    assert "0.85" in find(browser, f"section.dlq-item[data-item-id='{item}'] .resolution pre").text

    browser.get(f"{live.admin_url}/console/#/runs/{ESCALATED_RUN}")
    wait(browser).until(lambda b: len(_arrows(b)) == 4)
    browser.execute_script("window.notReloaded = true")
    assert live.resume() == (200, "checkpoint hit")
    resumed = wait(browser).until(lambda b: _arrows(b)[4:])  # the fifth arrow: drawn without a reload
    assert "checkpoint hit" in resumed[0]["text"]
    assert resumed[0]["verdict"] == "valid"
    assert "checkpoint hit" in find(browser, "#live-list li").text
    assert browser.execute_script("return window.notReloaded") is True


def test_a_contract_diff_dry_run_and_roll_back(browser: webdriver.Chrome, live: LiveGateway) -> None:
    sign_in(browser, live, hash_="#/contracts/writer.draft")
    changed = find(browser, ".diff-panel pre.diff").text.splitlines()
    assert '+   "mode": "shadow"' in changed  # what v2 added (the rest: a comma on the line before)
    assert changed[0].strip() == "…"  # the long unchanged start is elided

    editor = find(browser, ".try textarea")
    editor.clear()
    editor.send_keys(json.dumps({"topic": "t", "steps": "not a list"}))
    browser.find_element(By.CSS_SELECTOR, ".try button").click()
    verdict = find(browser, ".validate-out p")
    assert verdict.get_attribute("data-valid") == "false"
    assert find(browser, ".validate-out .hit").get_attribute("data-pointer") == "/steps"

    find(browser, "button[data-activate='2']").click()  # v2 is the shadow-mode version the demo rolled back from
    find(browser, "button[data-activate='1']").click()  # and back again: "Roll back to v1"
    wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "button[data-activate='2']"))
    assert live.run(live.active_version("writer.draft")) == 1


def test_markup_in_names_and_payloads_is_shown_as_text(browser: webdriver.Chrome, live: LiveGateway) -> None:
    sign_in(browser, live, hash_=f"#/runs/{MARKUP_RUN}")
    find(browser, "svg.sequence g.arrow").click()
    request = find(browser, ".payload.request pre")
    assert MARKUP in request.text
    assert MARKUP in find(browser, "svg.sequence .lane-name").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#view img")
    assert browser.execute_script("return window.pwned === undefined") is True
