"""Regenerate the README's screenshots from the current app: docs/train.png, docs/kernels.png and
docs/lessons.png.

    python scripts/screenshots.py

Starts `streamlit run app.py` headless on a free port, offline (the bundled MNIST sample, empty
data, runs and sweeps folders of its own), drives it in Chromium (/usr/bin/chromium) through
Playwright at a fixed viewport, and takes

- train.png: the Train page after a run at the defaults has finished (final metrics and charts);
- kernels.png: the Kernels page for that run;
- lessons.png: the lesson "Blocks appear" (/lessons?lesson=blocks-appear) after its run, its checks
  and charts drawn.

Every wait is for something on the page, never a fixed time. The server is stopped at the end,
also on an error or Ctrl-C. Exits non-zero, saying why, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import pathlib
import signal
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kalign_app.browser import CHART, IDLE, browser_missing, launch_chromium, streamlit_server  # noqa: E402

DOCS = ROOT / "docs"
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 300_000  # training on 2 busy cores may take a while; a wait longer than this is a failure
# A finished run on the Train page: its four metrics and its charts, by their keys in pages/train.py
# ("live_…" while it trains).
FINAL_CHARTS = ("final_error", "final_alignment", "final_movement", "final_machines")
KERNEL_HEATMAPS = 6  # three kernels and their class-block means
LESSON = "blocks-appear"
LESSON_CHARTS, LESSON_HEATMAPS = 5, 3  # error, alignment; target and both kernels' K_T − K_0
DRAWN = ".js-plotly-plot .main-svg"  # Plotly has drawn the chart
HEATMAP = f"{CHART} .heatmaplayer image"


def server_environment(folder: pathlib.Path) -> dict[str, str]:
    """Offline: the forms start on the bundled sample, so the server never downloads MNIST; data
    in `folder` (streamlit_server puts the runs and sweeps there)."""
    return {
        "KALIGN_DEFAULT_SOURCE": "sample",
        "KALIGN_DATA_DIR": str(folder / "data"),
    }


def settle(page) -> None:
    """The script run over, web fonts loaded, and the mouse off the charts (no Plotly toolbar)."""
    page.wait_for_selector(IDLE)
    page.evaluate("document.fonts.ready")
    page.mouse.move(VIEWPORT["width"] - 1, 0)


def picture(page, path: pathlib.Path, element=None) -> None:
    """The whole page, or `element` whole. Streamlit scrolls its main area, not the document, and
    Chromium draws only what is in the viewport, so the viewport is made as tall as that area's
    content for the picture."""
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    page.wait_for_selector(IDLE)
    (element or page).screenshot(path=path)
    page.set_viewport_size(VIEWPORT)


def train_and_kernels(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.wait_for_selector(IDLE)
    train = page.get_by_role("button", name="Train")
    expect(train).to_be_enabled()
    train.click()
    for key in FINAL_CHARTS:
        page.locator(f".st-key-{key} {DRAWN}").first.wait_for()
    expect(page.locator("[data-testid='stMetric']")).to_have_count(4)
    expect(page.locator("[data-testid='stProgress']")).to_have_count(0)
    settle(page)
    picture(page, DOCS / "train.png")

    page.get_by_role("link", name="Kernels").click()
    expect(page.locator("h1").first).to_have_text("Kernels")
    expect(page.locator(HEATMAP)).to_have_count(KERNEL_HEATMAPS)
    settle(page)
    picture(page, DOCS / "kernels.png")


def lesson(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/lessons?lesson={LESSON}")
    page.wait_for_selector(IDLE)
    container = page.locator(f".st-key-lesson_{LESSON}")
    container.get_by_role("button", name="Run this lesson").click()
    expect(container.get_by_text("expectations hold)")).to_be_visible()
    expect(container.locator(CHART)).to_have_count(LESSON_CHARTS)
    expect(container.locator(f"{CHART} {DRAWN}").first).to_be_visible()
    expect(container.locator(HEATMAP)).to_have_count(LESSON_HEATMAPS)
    expect(container.get_by_text("of training")).to_be_visible()  # the last line drawn
    settle(page)
    picture(page, DOCS / "lessons.png", container)


def console_error(message) -> None:
    """Print the browser's console errors, but for Streamlit's probes of a page's own path for its
    server (/lessons/_stcore/health: 404, then it finds the server at /), which every deep link makes."""
    where = message.location.get("url", "")
    if message.type == "error" and "/_stcore/" not in where:
        print(f"browser console: {message.text} ({where})", file=sys.stderr)


def take(url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.on("pageerror", lambda error: print(f"the page raised: {error}", file=sys.stderr))
            page.on("console", console_error)
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            train_and_kernels(page, url)
            lesson(page, url)
        finally:
            browser.close()


def main() -> int:
    missing = browser_missing()
    if missing:
        print(f"screenshots: cannot drive Chromium: {'; '.join(missing)}", file=sys.stderr)
        return 2
    # A plain `kill` ends this script through its `finally`s too, so that the server stops with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        try:
            with streamlit_server(folder, server_environment(folder)) as (url, _):
                print(f"server {url}; taking the screenshots", flush=True)
                take(url)
        except Exception:
            log = folder / "server.log"
            if log.exists():
                print(f"--- the server's log ---\n{log.read_text()}", file=sys.stderr)
            raise
    for name in ("train", "kernels", "lessons"):
        path = DOCS / f"{name}.png"
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e3:.0f} kB)")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
