"""The password gate in a real browser: a server started with KALIGN_PASSWORD shows each browser
session only the prompt, on any page and whatever the link, until it gives the password; a wrong
one is refused; the right one opens the page the link named, with its query string, and the
browser's later reloads and tabs; another browser, even with a forged cookie, sees the prompt."""

import pytest
from test_e2e_browser import require_browser

from kalign_app import password
from kalign_app.browser import IDLE, launch_chromium, streamlit_server
from kalign_app.navigation import APP_TITLE
from kalign_core.lessons import LESSONS

pytestmark = pytest.mark.browser

PASSWORD = "pässwörd for the class"


@pytest.fixture
def server(tmp_path):
    require_browser()
    environ = {"KALIGN_DEFAULT_SOURCE": "sample", "KALIGN_PASSWORD": PASSWORD}
    try:
        with streamlit_server(tmp_path, environ) as (url, _):
            yield url
    except RuntimeError as failed:
        pytest.fail(str(failed))
    assert PASSWORD not in (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")


def open_page(page, url):
    page.goto(url)
    page.wait_for_selector(IDLE)


def expect_only_the_prompt(page):
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_have_text([APP_TITLE])
    expect(page.locator("input[type='password']")).to_have_count(1)
    for nothing_else in (
        "[data-testid='stSidebarNavLink']",
        "[data-testid='stButton']",
        "[data-testid='stNumberInput']",
    ):
        expect(page.locator(nothing_else)).to_have_count(0)
    expect(page.locator("[data-testid='stException']")).to_have_count(0)


def give(page, typed):
    field = page.get_by_label("Password", exact=True)
    field.fill(typed)
    field.press("Enter")


def test_each_browser_sees_only_the_prompt_until_it_gives_the_password(server):
    from playwright.sync_api import expect, sync_playwright

    number, lesson = len(LESSONS), LESSONS[-1]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        first = browser.new_context().new_page()
        first.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        open_page(first, f"{server}/lessons?lesson={lesson.id}")  # the fresh server's first request
        expect_only_the_prompt(first)
        give(first, PASSWORD.upper())
        expect(first.get_by_text("Wrong password.")).to_be_visible()
        expect(first.get_by_label("Password", exact=True)).to_have_value("")  # emptied for the next try
        expect_only_the_prompt(first)
        give(first, PASSWORD)
        expect(first.locator("h1").first).to_have_text("Lessons")
        expect(first.locator("h3").first).to_have_text(f"{number}. {lesson.title}")
        assert "/lessons" in first.url and f"lesson={lesson.id}" in first.url
        first.get_by_role("link", name="Kernels").click()  # the session stays open on every page
        expect(first.locator("h1").first).to_have_text("Kernels")
        open_page(first, f"{server}/kernels")  # a reload: the browser's pass cookie lets it in
        expect(first.locator("h1").first).to_have_text("Kernels")
        expect(first.locator("input[type='password']")).to_have_count(0)
        tab = first.context.new_page()  # another tab of that browser
        open_page(tab, f"{server}/lessons?lesson={lesson.id}")
        expect(tab.locator("h1").first).to_have_text("Lessons")
        [kept] = [c for c in first.context.cookies() if c["name"] == password.COOKIE]
        assert PASSWORD not in kept["value"] and kept["expires"] == -1  # for the browser's session only

        other = browser.new_context().new_page()  # another browser, without the password
        other.set_default_timeout(60_000)
        forged = {**kept, "value": kept["value"][::-1]}
        other.context.add_cookies([{k: forged[k] for k in ("name", "value", "domain", "path")}])
        for path in ("kernels", "runs?width=64", f"lessons?lesson={lesson.id}", "?width=64"):
            open_page(other, f"{server}/{path}")
            expect_only_the_prompt(other)
        give(other, PASSWORD)
        expect(other.get_by_role("button", name="Train")).to_be_visible()
        expect(other.get_by_role("spinbutton", name="Hidden width")).to_have_value("64")
        browser.close()
