"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium through Playwright.

Skips when Chromium or Playwright is missing, except under CI=true, where it must run.
"""

import os
import re

import pytest

from kalign_app.browser import CHART, IDLE, browser_missing, launch_chromium, streamlit_server

pytestmark = pytest.mark.browser


def require_browser():
    missing = browser_missing()
    if missing and os.environ.get("CI") == "true":
        pytest.fail("; ".join(missing))
    if missing:
        pytest.skip("; ".join(missing))


@pytest.fixture
def server(tmp_path):
    """The app on a free local port, serving the bundled sample; its log goes to tmp_path."""
    require_browser()
    try:
        with streamlit_server(tmp_path, {"KALIGN_DEFAULT_SOURCE": "sample"}) as (url, _):
            yield url
    except RuntimeError as failed:  # it exited, or never became healthy
        pytest.fail(str(failed))


def wide_page(p):
    """Chromium and a wide page in it, waiting up to 90 s for anything (training included)."""
    from playwright.sync_api import expect

    browser = launch_chromium(p)
    page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()  # the context can open tabs
    page.set_default_timeout(90_000)
    expect.set_options(timeout=90_000)
    return browser, page


def test_train_live_then_kernels_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/?width=1024&epochs=500&probe_size=60")  # a minute of training: Stop comes first
        page.wait_for_selector(IDLE)

        page.get_by_role("combobox", name="Digits").click()  # add 3 to the default 8 and 9
        page.get_by_role("option", name="3", exact=True).click()
        page.locator("h1").first.click()  # close the list so the next click reaches the button
        page.get_by_role("button", name="Train").click()

        page.wait_for_selector("[data-testid='stProgress']")
        # live: error, alignment (feature and tangent), how far each model moved, kernel machines
        expect(page.locator(CHART)).to_have_count(4)
        expect(page.get_by_text("Epoch ", exact=False).first).to_be_visible()
        assert "digits=3%2C8%2C9" in page.url and "width=1024" in page.url
        page.screenshot(path=tmp_path / "live.png")

        page.get_by_role("button", name="Stop").click()
        expect(page.locator("[data-testid='stMetric']")).to_have_count(4)
        expect(page.get_by_text("the epochs done are kept")).to_be_visible()
        expect(page.locator(CHART)).to_have_count(4)
        expect(page.get_by_text("hidden weights moved", exact=False)).to_be_visible()
        page.screenshot(path=tmp_path / "train.png")

        page.get_by_role("link", name="Kernels").click()
        expect(page.locator(CHART)).to_have_count(6)  # three kernels and their class-block means
        expect(page.locator(f"{CHART} .heatmaplayer image")).to_have_count(6)
        expect(page.get_by_text("target YYᵀ").first).to_be_visible()
        page.screenshot(path=tmp_path / "kernels.png")

        page.get_by_role("link", name="Runs").click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
            files=[{"name": "broken.json", "mimeType": "application/json", "buffer": b'{"format": "kalign-run",'}]
        )
        page.get_by_role("button", name="View the uploaded run").click()
        expect(page.get_by_text("Upload: run file is not valid JSON")).to_be_visible()
        browser.close()
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("live", "train", "kernels"))


def test_a_reload_during_a_run_shows_that_run_again_in_chromium(server, tmp_path):
    """Train, reload mid-run: the same run is back with its Stop button and its epochs; a second tab
    of the same browser cannot start another run and is told where this one is; Stop ends it."""
    from playwright.sync_api import expect, sync_playwright

    epoch = re.compile(r"Epoch ([1-9]\d*)/500")
    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/?width=2000&epochs=500&probe_size=40&batch_size=100")  # minutes: the test stops it
        page.wait_for_selector(IDLE)
        page.get_by_role("button", name="Train").click()
        expect(page.get_by_text(epoch)).to_be_visible()
        assert "run=" in page.url and "width=2000" in page.url
        before = int(epoch.search(page.get_by_text(epoch).inner_text()).group(1))

        page.reload()
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        expect(page.get_by_text(epoch)).to_be_visible()
        after = int(epoch.search(page.get_by_text(epoch).inner_text()).group(1))
        assert after >= before
        expect(page.get_by_role("spinbutton", name="Hidden width")).to_have_value("2000")
        expect(page.get_by_role("button", name="Train")).to_be_disabled()
        expect(page.locator(CHART)).to_have_count(4)  # its live charts, epochs so far
        page.screenshot(path=tmp_path / "reloaded.png")

        second = page.context.new_page()  # another tab of the same browser
        second.goto(f"{server}/?width=64&epochs=3&seed=5")
        second.wait_for_selector(IDLE)
        expect(second.get_by_text("You have a run training or waiting for a slot already")).to_be_visible()
        second.get_by_role("button", name="Train").click()
        second.wait_for_selector(IDLE)
        expect(second.get_by_text("You have a run training or waiting for a slot already")).to_be_visible()
        expect(second.get_by_role("button", name="Stop")).to_have_count(0)  # nothing started here
        expect(second.get_by_role("link", name="Open it")).to_have_attribute("href", re.compile(r"train\?run="))
        second.close()

        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text("the epochs done are kept")).to_be_visible()
        expect(page).not_to_have_url(re.compile("run="))
        browser.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_link_straight_to_a_page_on_a_fresh_server_gets_the_whole_app(server):
    """Streamlit runs a page file alone when a fresh server's first request is a deep link; the app
    must still come up with its navigation, settings from the URL, and no exception."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        for path, title in (("sweeps?width=64", "Sweeps"), ("train?width=64", "Train two networks side by side")):
            page.goto(f"{server}/{path}")
            page.wait_for_selector(IDLE)
            expect(page.locator("h1").first).to_have_text(title)
            expect(page.locator("[data-testid='stSidebarNavLink']")).to_have_count(7)
            expect(page.locator("[data-testid='stException']")).to_have_count(0)
            assert "width=64" in page.url
        browser.close()


def test_settings_that_clash_are_named_in_words_on_every_page(server):
    """A link whose settings are valid alone but not together, and a width typed as 2.5: warnings and
    messages in words, Train disabled, and no page ever shows an exception."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/?probe_size=1000&epochs=500&width=64")
        page.wait_for_selector(IDLE)
        expect(page.get_by_text("Ignored URL parameter(s) epochs='500', probe_size='1000'")).to_be_visible()
        assert "width=64" in page.url and "epochs=10" in page.url  # the rest of the link is kept

        width = page.get_by_role("spinbutton", name="Hidden width")
        width.fill("2.5")
        width.press("Enter")
        expect(page.get_by_text("Hidden width must be a whole number from 1 to 32,768 (got 2.5)")).to_be_visible()
        page.wait_for_selector(IDLE)  # the rerun's stale elements are gone
        expect(page.get_by_role("button", name="Train")).to_be_disabled()

        for link in page.locator("[data-testid='stSidebarNavLink']").all():
            link.click()
            page.wait_for_selector(IDLE)
            expect(page.locator("[data-testid='stException']")).to_have_count(0)
            expect(page.get_by_text("Sorry, something went wrong")).to_have_count(0)
        browser.close()


def test_a_lesson_runs_from_its_page_and_checks_its_claims_in_chromium(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/lessons")
        page.wait_for_selector(IDLE)
        lesson = page.locator(".st-key-lesson_blocks-appear")
        lesson.get_by_role("button", name="Run this lesson").click()
        expect(page.get_by_text("(3 of 3 expectations hold)")).to_be_visible()
        expect(lesson.locator(CHART)).to_have_count(5)  # error, alignment; target and both kernels' K_T − K_0
        expect(lesson.locator(f"{CHART} .heatmaplayer image")).to_have_count(3)
        assert "lesson=blocks-appear" in page.url
        page.screenshot(path=tmp_path / "lesson.png", full_page=True)

        lesson.get_by_role("button", name="3, 8, 9, width 256 on Kernels").click()
        expect(page.locator("h1").first).to_have_text("Kernels")
        expect(page.get_by_text("target YYᵀ").first).to_be_visible()
        assert "slow_lr=0.0" in page.url and "digits=3%2C8%2C9" in page.url
        browser.close()
    assert (tmp_path / "lesson.png").stat().st_size > 10_000


def test_a_lesson_link_opens_on_that_lesson_in_chromium(server, tmp_path):
    """A visitor from a link to the last lesson sees it on screen at once, not lesson 1; the server's
    log holds no traceback."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/lessons?lesson=more-than-its-kernel")
        page.wait_for_selector(IDLE)
        linked = page.locator(".st-key-lesson_more-than-its-kernel")
        expect(linked).to_be_in_viewport()
        expect(linked.get_by_role("button", name="Run this lesson")).to_be_in_viewport()
        browser.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_the_width_lab_trains_its_sweep_and_draws_slopes_in_chromium(server, tmp_path):
    """One press: a sweep over both parametrizations and the default widths trains in the workers,
    then the log-log chart with each line's fitted slope beside the theory's, and the coordinate
    check; the sweep lands in the server's sweeps folder and the log holds no traceback."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/width_lab")
        page.wait_for_selector(IDLE)
        expect(page.locator("h1").first).to_have_text("Width lab")
        page.get_by_role("button", name="Run").click()
        expect(page.get_by_text("theory −½").first).to_be_visible()
        page.wait_for_selector(IDLE)
        expect(page.locator(CHART)).to_have_count(3)  # the measure against width, then the coordinate check
        assert "fitted slope" in page.inner_text("body")
        browser.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    (sweep,) = (tmp_path / "sweeps").iterdir()
    assert (sweep / "summary.csv").is_file() and sweep.name.startswith("lab-ntk-mup-")


def test_with_a_ray_address_the_train_page_trains_on_ray_with_the_library_s_numbers(tmp_path):
    """KALIGN_RAY_ADDRESS=local: the server starts Ray and its Train run trains in a Ray actor; the
    run, saved from the Runs page, equals the library's run of its config at the actor's threads."""
    import torch
    from playwright.sync_api import expect, sync_playwright

    from kalign_core import load_run, run_experiment
    from kalign_core.devices import torch_threads

    require_browser()
    pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    environ = {"KALIGN_DEFAULT_SOURCE": "sample", "KALIGN_RAY_ADDRESS": "local", "KALIGN_MAX_JOBS": "1"}
    with streamlit_server(tmp_path, environ) as (url, pid), sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{url}/?seed=5&width=64&epochs=3")
        page.wait_for_selector(IDLE)
        page.get_by_role("button", name="Train").click()
        expect(page.locator("[data-testid='stMetric']")).to_have_count(4)
        assert any("raylet" in command for command in descendant_commands(pid))  # Ray runs under this server
        page.get_by_role("link", name="Runs").click()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Saved as", exact=False).first).to_be_visible()
        browser.close()
    [folder] = [f for f in (tmp_path / "runs").iterdir() if f.is_dir()]
    saved = load_run(folder)
    assert saved.config.width == 64 and saved.config.seed == 5 and saved.config.epochs == 3
    with torch_threads(2):  # the actor's threads: min(2, this machine's CPUs per node)
        alone = run_experiment(saved.config)
    for name in ("slow", "regular"):
        assert saved.curve(name, "alignment") == alone.curve(name, "alignment")
        assert saved.curve(name, "test_error") == alone.curve(name, "test_error")
        for ours, theirs in zip(saved.models[name].parameters(), alone.models[name].parameters()):
            assert torch.equal(ours, theirs)


def descendant_commands(pid: int) -> list[str]:
    """The command lines of `pid`'s descendants, from /proc."""
    commands, parents = [], {pid}
    for _ in range(6):  # a few generations: Ray's processes start one another
        children = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                    command = open(f"/proc/{entry}/cmdline").read().replace("\0", " ")
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) in parents:
                    children.add(int(entry))
                    commands.append(command)
        parents = children
    return commands


def test_a_width_lab_preset_link_fills_the_form_and_stays_in_the_address_in_chromium(server, tmp_path):
    """A teacher's link opens the lab with its preset filled in and keeps it in the address; a link
    to a preset that does not exist says so in words."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/width_lab?preset=coordinate-check")
        page.wait_for_selector(IDLE)
        expect(page.get_by_text("flat lines pass the check").first).to_be_visible()
        assert "preset=coordinate-check" in page.url and "width=2000" in page.url
        page.goto(f"{server}/width_lab?preset=nope")
        page.wait_for_selector(IDLE)
        expect(page.get_by_text("Unknown preset 'nope' in the link").first).to_be_visible()
        browser.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_the_infinite_width_reference_the_linearized_twin_and_their_lessons_in_chromium(server, tmp_path):
    """An NTK run with its linearized twins shows Θ∞ on the alignment chart, the twins' chart and both
    in its reading; the two lessons on them run from their links and hold; the About page explains them."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = wide_page(p)
        page.goto(f"{server}/?parametrization=ntk&linearized_twin=on&width=256&epochs=3")
        page.wait_for_selector(IDLE)
        page.get_by_role("button", name="Train").click()
        expect(page.locator("[data-testid='stMetric']")).to_have_count(4)
        expect(page.get_by_text("Θ∞ (width → ∞, both models' start)").first).to_be_visible()  # the reference line
        expect(page.get_by_text("gap ‖g − g_lin‖ / ‖g_lin − g₀‖ (log)").first).to_be_visible()  # the twins' chart
        expect(page.get_by_text("from its infinite-width limit Θ∞", exact=False).first).to_be_visible()
        expect(page.get_by_text("from its twin and tests at", exact=False).first).to_be_visible()
        page.screenshot(path=tmp_path / "twin.png", full_page=True)

        for lesson_id in ("infinite-width", "linearization"):
            page.goto(f"{server}/lessons?lesson={lesson_id}")
            page.wait_for_selector(IDLE)
            lesson = page.locator(f".st-key-lesson_{lesson_id}")
            lesson.get_by_role("button", name="Run this lesson").click()
            expect(lesson.get_by_text("(3 of 3 expectations hold)")).to_be_visible()

        page.goto(f"{server}/about")
        page.wait_for_selector(IDLE)
        expect(page.get_by_role("heading", name="Infinite width: Θ∞")).to_be_visible()
        expect(page.get_by_text("linearized twin", exact=False).first).to_be_visible()
        browser.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
