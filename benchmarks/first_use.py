"""A newcomer's first minute: a fresh server, offline, no MNIST on disk, the app's defaults.

    python benchmarks/first_use.py               # 3 fresh servers
    python benchmarks/first_use.py --servers 5 --no-write

Each round starts `streamlit run app.py` with an empty data folder and the default data source
("auto", which trains on the bundled sample until full MNIST is on disk), waits until the server
answers its health check, then in a new Chromium page measures

- form usable: from opening the page to an enabled Train button (the first script run is over);
- first chart: from pressing Train to the first chart of the run on the page (epoch 0).

Goal (issue 12): each ≤ 3 s. Writes its figures into BENCHMARKS.md (section "first-use") unless
--no-write. Needs Playwright and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalign_app.browser import launch_chromium, streamlit_server  # noqa: E402
from run import BENCHMARKS_MD, verdict, write_section  # noqa: E402

TRAIN_ENABLED = "[data-testid='stBaseButton-primary']:has-text('Train'):not([disabled])"
CHART = ".st-key-live_error [data-testid='stPlotlyChart']"  # the run's error chart
GOAL_S = 3.0
ABOUT = "\n\n".join(__doc__.split("\n\n")[1:3])


async def first_minute(url: str) -> tuple[float, float]:
    """(form usable, first chart) in seconds, in a fresh browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch_chromium(p)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        opened = time.perf_counter()
        await page.goto(url)
        train = page.locator(TRAIN_ENABLED)
        await train.wait_for()
        usable = time.perf_counter() - opened
        pressed = time.perf_counter()
        await train.click()
        await page.locator(CHART).first.wait_for()
        first_chart = time.perf_counter() - pressed
        await browser.close()
    return usable, first_chart


def measure(servers: int) -> list[tuple[float, float]]:
    rounds = []
    for i in range(servers):
        with tempfile.TemporaryDirectory() as folder:
            folder = pathlib.Path(folder)
            environ = {"KALIGN_DATA_DIR": str(folder / "data")}
            with streamlit_server(folder, environ) as (url, _):
                rounds.append(asyncio.run(first_minute(url)))
        print(f"  server {i + 1}: form usable {rounds[-1][0]:.2f} s, first chart {rounds[-1][1]:.2f} s", flush=True)
    return rounds


def report(rounds: list[tuple[float, float]]) -> str:
    lines = [
        f"Machine: {os.cpu_count()} cores; {len(rounds)} fresh servers, one browser each.",
        "",
        f"| figure | median | max | goal ≤ {GOAL_S:.0f} s (max) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in (
        ("form usable (open → Train enabled)", [r[0] for r in rounds]),
        ("first chart (Train → epoch-0 chart)", [r[1] for r in rounds]),
    ):
        lines.append(
            f"| {name} | {statistics.median(values):.2f} s | {max(values):.2f} s | {verdict(max(values) <= GOAL_S)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=3, help="fresh servers, one measurement each")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {BENCHMARKS_MD.name}")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    rounds = measure(args.servers)
    table = report(rounds)
    print(table)
    if not args.no_write:
        write_section("first_use", f"First use: `python benchmarks/first_use.py` ({started})", f"{ABOUT}\n\n{table}")
    return rounds


if __name__ == "__main__":
    main()
