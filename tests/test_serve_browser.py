"""The playground in a real headless browser: Debian's chromium driven by Playwright.

Skips (with the reason) where /usr/bin/chromium is absent; `scripts/setup.sh --dev` installs it
where it can. Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_serve_helpers import RunningServer, build_app, save_tiny_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = os.environ.get("LANTERN_SCREENSHOT_DIR")  # keep the screenshots here if set

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (scripts/setup.sh --dev installs Debian's chromium)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = save_tiny_checkpoint(tmp_path_factory.mktemp("browser") / "tiny")
    with RunningServer(build_app({"tiny": run, "twin": run})) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(server.url + "/")
    return page


def shot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_chat_streams_an_answer_into_the_page(page, tmp_path):
    page.wait_for_function("document.querySelectorAll('#model option').length == 2")
    page.fill("#seed", "3")
    page.fill("#max_tokens", "40")
    page.fill("#prompt", "Hello there")
    page.click("#send")
    page.wait_for_function("document.querySelector('#stats').textContent.includes('tokens/s')")
    answer = page.inner_text("#output")
    assert answer.strip()
    assert "Hello there" in page.inner_text("#transcript")
    assert page.input_value("#prompt") == ""
    path = shot_path(tmp_path, "playground_chat.png")
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def test_completion_mode_with_adaptive_shading(page, tmp_path):
    page.click("#mode-completion")
    page.check("#adaptive")
    page.fill("#tau_low", "0.5")
    page.fill("#tau_mid", "1")
    page.fill("#max_tokens", "24")
    page.fill("#prompt", "Once upon a time")
    page.click("#send")
    page.wait_for_function("document.querySelector('#stats').textContent.includes('tokens/s')")
    tokens = page.locator("#output .tok")
    assert tokens.count() >= 1
    assert "depth" in tokens.first.get_attribute("title")
    assert "rgba" in tokens.first.get_attribute("style")
    assert page.inner_text(".prompt-text") == "Once upon a time"
    page.screenshot(path=str(shot_path(tmp_path, "playground_adaptive.png")), full_page=True)


def test_an_error_shows_in_the_page_and_the_next_request_works(page):
    page.uncheck("#adaptive")
    page.fill("#max_tokens", "999999")
    page.click("#send")
    page.wait_for_function("document.querySelector('#error').textContent.includes('max_tokens')")
    page.fill("#max_tokens", "8")
    page.click("#send")
    page.wait_for_function("document.querySelector('#stats').textContent.includes('tokens/s')"
                           " && document.querySelector('#error').textContent === ''")


def test_the_page_asks_for_the_api_key_when_the_server_needs_one(browser, tmp_path):
    run = save_tiny_checkpoint(tmp_path / "tiny")
    with RunningServer(build_app({"tiny": run}, api_key="pw-123")) as running:
        page = browser.new_page()
        page.goto(running.url + "/")  # the page itself is public
        page.wait_for_function("document.querySelector('#error').textContent.includes('API key')")
        page.fill("#api-key", "pw-123")
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.querySelectorAll('#model option').length == 1")
        page.fill("#max_tokens", "6")
        page.fill("#prompt", "Hello")
        page.click("#send")
        page.wait_for_function("document.querySelector('#stats').textContent.includes('tokens/s')")
        assert page.inner_text("#error") == ""
        page.close()
