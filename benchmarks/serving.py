"""A class pressing Train at once: time to result per browser, and the server's own CPU.

    python benchmarks/serving.py                  # 1 session five times, then 8, then 16, at the app's defaults
    python benchmarks/serving.py --sessions 4 16 --no-write
    python benchmarks/serving.py --sessions 1 1 1 --browsers nice --no-write

Starts `streamlit run app.py` (headless, the bundled sample), opens one Chromium context per
session, each on `/?seed=i` (its own run, so the results cache never answers), presses Train in all
at once and waits for each page's final metrics. A first session (seed 1000) warms the server
up: its time includes starting the training worker processes. Per round it reports

- time to result: from the click to the final metrics on that page;
- the app's run time (the page's caption) against the same run alone through the library at the
  same torch thread count, in this process before the server starts (and, to tell the worker
  processes' share from the browsers', through a pool of the app's workers with no server or
  browser);
- correct: the four final metrics match that session's seed run alone (to the digits shown);
- CPU seconds of the server process itself and of its worker processes (training) over the round,
  read from /proc/PID/stat; the server's share is its cost of queueing, relaying and drawing; and
  of the browsers, which here share the server's cores (`--browsers`, default "idle": the idle
  scheduling policy and nice 19, so that they stand for students' own machines rather than compete
  with the training; "nice" is nice 19 alone, "normal" as the server);
- the load average, since other work on the machine slows everything.

Writes its figures into BENCHMARKS.md (section "serving") unless --no-write. Needs Playwright and
Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KALIGN_DEFAULT_SOURCE", "sample")  # the server's, and the configs computed here
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in the app's workers (see workers.py), before torch loads

from kalign_app import environment, jobs, params  # noqa: E402
from kalign_app.browser import IDLE, launch_chromium, streamlit_server  # noqa: E402
from kalign_app.workers import WorkerPool  # noqa: E402
from kalign_core import run_experiment  # noqa: E402
from kalign_core.devices import torch_threads  # noqa: E402
from kalign_core.results import MODEL_NAMES  # noqa: E402
from run import BENCHMARKS_MD, verdict, write_section  # noqa: E402

METRIC_VALUES = "[data-testid='stMetricValue']"
WARM_UP_SEED = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ABOUT = "\n\n".join(__doc__.split("\n\n")[2:4])  # what a round measures, for BENCHMARKS.md


@dataclass(frozen=True)
class Alone:
    """One seed's run through the library: its final metrics and times."""

    metrics: list[float]  # slow error, regular error, slow ρ, regular ρ (the Train page's order)
    run_seconds: float  # result.seconds: the training loop, as the page's caption shows it
    wall_seconds: float  # run_experiment as a whole (data, set-up, training)


@dataclass(frozen=True)
class Session:
    seed: int
    to_result: float
    app_seconds: float | None  # the caption's run time
    correct: bool


@dataclass(frozen=True)
class Round:
    sessions: list[Session]
    wall: float
    server_cpu: float
    workers_cpu: float
    browsers_cpu: float
    load_before: str
    load_after: str

    @property
    def latest(self) -> float:
        return max(s.to_result for s in self.sessions)


def config_for(seed: int):
    """The config a session opening /?seed=SEED trains, from the app's own defaults."""
    defaults, _ = params.default_settings()
    settings, warnings = params.settings_from_params({"seed": str(seed)}, defaults)
    assert not warnings, warnings
    return params.config_from_settings(settings)


def run_alone(seed: int, threads: int) -> Alone:
    with torch_threads(threads):
        started = time.perf_counter()
        result = run_experiment(config_for(seed))
        wall = time.perf_counter() - started
    last = {name: result.history[name][-1] for name in MODEL_NAMES}
    # In the page's order: each model's test error, then its alignment.
    metrics = [value for n in MODEL_NAMES for value in (last[n].test_error, last[n].alignment)]
    return Alone(metrics, result.seconds, wall)


def through_workers(seeds: list[int], threads: int) -> list[float]:
    """Each seed's run time (result.seconds) through a pool of the app's training workers at
    `threads`, as the server uses them, with no server and no browser; after a warm-up run, as the
    server's first run warms its worker."""
    pool = WorkerPool(1, threads)
    try:
        runs = [pool.train(config_for(seed), lambda info: None, lambda result: None, lambda: False) for seed in seeds]
        return [result.seconds for result in runs]
    finally:
        pool.close()


def matches(shown: list[str], expected: list[float]) -> bool:
    """Each metric as shown equals the expected value to the digits shown."""
    if len(shown) != len(expected):
        return False
    for text, value in zip(shown, expected):
        number = re.search(r"-?\d+(?:\.(\d+))?", text)
        if number is None or value is None:
            return False
        decimals = len(number.group(1) or "")
        if abs(float(number.group(0)) - value) > 0.5 * 10**-decimals + 1e-9:
            return False
    return True


# -- the server ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def children(pid: int) -> list[int]:
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # it may have just ended
            total += cpu_seconds(pid)
    return total


def cpu_split(server: int) -> tuple[float, float, float]:
    """CPU seconds so far of the server process, of its children (the workers), and of this
    process's other descendants (the browsers)."""
    browsers = [pid for child in children(os.getpid()) if child != server for pid in [child, *descendants(child)]]
    return cpu_seconds(server), tree_cpu_seconds(descendants(server)), tree_cpu_seconds(browsers)


BROWSER_PRIORITIES = ("idle", "nice", "normal")


def lower_browsers(server: int, priority: str) -> None:
    """Lower the browsers' CPU priority so that they stand for students' own machines rather than
    compete with the training on the server's cores: "nice" sets nice 19, "idle" also the idle
    scheduling policy (they run only on a core nothing else wants), "normal" leaves them as they are.

    Linux keeps nice and policy per thread, and a thread created later inherits its creator's, so
    every thread of every browser process is set. Playwright starts the browser in a session of its
    own, which autogroup scheduling puts in a group of its own, ranked against the server's group as
    a whole whatever its threads' nice; so the browsers' groups are lowered too (where the kernel has
    autogroups and lets this process write them), but not the server's group, which Playwright's
    driver shares. Measured here (five one-session rounds each): at nice 19, in a group of nice 19,
    the app's run took 1.10–1.21× its time alone (the browser runs as the run's threads sleep between
    operations, and the run then waits for it to yield); at the idle policy 1.00–1.13×."""
    if priority == "normal":
        return
    server_group = autogroup(server)
    for child in children(os.getpid()):
        if child == server:
            continue
        # The browsers Playwright's driver started, not the driver itself: it clicks and waits.
        for pid in descendants(child):
            for thread in pathlib.Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError):  # it may have just ended
                    os.setpriority(os.PRIO_PROCESS, int(thread.name), 19)
                    if priority == "idle":
                        os.sched_setscheduler(int(thread.name), os.SCHED_IDLE, os.sched_param(0))
            if autogroup(pid) not in (None, server_group):
                with contextlib.suppress(OSError):
                    pathlib.Path(f"/proc/{pid}/autogroup").write_text("19")


def autogroup(pid: int) -> str | None:
    """The name of the process's autogroup (e.g. /autogroup-12), or None."""
    try:
        return pathlib.Path(f"/proc/{pid}/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return None


def load_average() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


# -- the browsers ----------------------------------------------------------------------------------


async def open_session(browser, url: str, seed: int, timeout_s: float):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    await page.goto(f"{url}/?seed={seed}")
    await page.wait_for_selector(IDLE)
    return context, page


async def train(page, seed: int, alone: Alone) -> Session:
    started = time.perf_counter()
    await page.get_by_role("button", name="Train").click()
    values = page.locator(METRIC_VALUES)
    await values.nth(3).wait_for()
    to_result = time.perf_counter() - started
    shown = await values.all_inner_texts()
    caption = re.search(r"· (\d+(?:\.\d+)?) s ·", await page.inner_text("body"))
    return Session(seed, to_result, float(caption.group(1)) if caption else None, matches(shown, alone.metrics))


async def press_together(
    browser, url: str, server: int, seeds: list[int], alone: dict[int, Alone], timeout_s: float, priority: str
) -> Round:
    opened = await asyncio.gather(*(open_session(browser, url, seed, timeout_s) for seed in seeds))
    lower_browsers(server, priority)
    load_before = load_average()
    cpu_before, started = cpu_split(server), time.perf_counter()
    sessions = await asyncio.gather(*(train(page, seed, alone[seed]) for (_, page), seed in zip(opened, seeds)))
    wall = time.perf_counter() - started
    cpu_after = cpu_split(server)
    for context, _ in opened:
        await context.close()
    return Round(
        list(sessions),
        wall,
        *(after - before for after, before in zip(cpu_after, cpu_before)),
        load_before,
        load_average(),
    )


async def measure(
    url: str, server: int, rounds: list[list[int]], alone, timeout_s: float, priority: str
) -> list[Round]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch_chromium(p)
        results = []
        for seeds in rounds:
            results.append(await press_together(browser, url, server, seeds, alone, timeout_s, priority))
            print(f"  {len(seeds)} session(s): last result after {results[-1].latest:.1f} s", flush=True)
        await browser.close()
    return results


# -- report ----------------------------------------------------------------------------------------


def report(
    rounds: list[Round], alone: dict[int, Alone], pooled: list[float], threads: int, limit: int, priority: str
) -> str:
    run_s = statistics.median(a.run_seconds for a in alone.values())
    pooled_s = statistics.median(pooled)
    wall_s = statistics.median(a.wall_seconds for a in alone.values())
    warm_up, measured = rounds[0], rounds[1:]
    lines = [
        f"Machine: {jobs.cpu_count()} cores; server: `KALIGN_MAX_JOBS` {limit} (so {threads} torch thread(s) "
        f"per run), defaults (8 vs 9, width 2000, 10 epochs, sample). One run alone through the library at "
        f"{threads} thread(s): **{run_s:.2f} s** training (median of {len(alone)} seeds), {wall_s:.2f} s in all; "
        f"through a pool of the app's workers with no server or browser {pooled_s:.2f} s "
        f"({pooled_s / run_s:.2f}×, {min(pooled) / run_s:.2f}–{max(pooled) / run_s:.2f}× over the same seeds). "
        f"Browsers' priority: {priority} (`--browsers`); `OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}`.",
        "",
        f"Warm-up: the server's first run took {warm_up.latest:.1f} s to its result, starting the worker process(es).",
        "",
        "| sessions | time to result p50 / max | the last within 2 × N × alone + 10 s | app run time "
        "(caption) median / vs alone (goal ≤ 1.2×) | correct | server CPU (share of one core, goal ≤ 10 %) "
        "| workers CPU | browsers CPU | load average before → after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in measured:
        n = len(r.sessions)
        times = [s.to_result for s in r.sessions]
        app = [s.app_seconds for s in r.sessions if s.app_seconds is not None]
        app_median = statistics.median(app) if app else float("nan")
        goal = 2 * n * wall_s + 10
        server_share = r.server_cpu / r.wall
        lines.append(
            f"| {n} | {statistics.median(times):.1f} s / {r.latest:.1f} s | "
            f"{goal:.1f} s: {verdict(r.latest <= goal)} | "
            f"{app_median:.2f} s / {app_median / run_s:.2f}×: {verdict(app_median <= 1.2 * run_s)} | "
            f"{sum(s.correct for s in r.sessions)}/{n} | {r.server_cpu:.1f} s over {r.wall:.1f} s "
            f"({100 * server_share:.0f} %): {verdict(server_share <= 0.10)} | {r.workers_cpu:.1f} s | "
            f"{r.browsers_cpu:.1f} s | "
            f"{r.load_before} → {r.load_after} |"
        )
    singles = [
        r.sessions[0].app_seconds / run_s for r in measured if len(r.sessions) == 1 and r.sessions[0].app_seconds
    ]
    if singles:
        over = sum(ratio > 1.2 for ratio in singles)
        lines += [
            "",
            f"One session, {len(singles)} rounds: the app's run time is **{statistics.median(singles):.2f}×** its "
            f"time alone (median; {min(singles):.2f}–{max(singles):.2f}×), goal ≤ 1.2×: "
            f"{verdict(statistics.median(singles) <= 1.2)} on the median, over it in {over} of {len(singles)} rounds.",
        ]
    return "\n".join(lines)


def main(argv=None) -> list[Round]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 1, 1, 1, 1, 8, 16], help="one round per number")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a page may wait for its result")
    parser.add_argument(
        "--browsers", choices=BROWSER_PRIORITIES, default="idle", help="the browsers' CPU priority (see lower_browsers)"
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {BENCHMARKS_MD.name}")
    args = parser.parse_args(argv)
    limit = environment.job_limit()
    threads = jobs.threads_per_job(limit)
    rounds, first = [[WARM_UP_SEED]], 0
    for n in args.sessions:
        rounds.append(list(range(first, first + n)))
        first += n
    print(f"library alone at {threads} thread(s), seeds 0..{first - 1}", flush=True)
    alone = {seed: run_alone(seed, threads) for seed in range(first)}
    alone[WARM_UP_SEED] = run_alone(WARM_UP_SEED, threads)
    pooled = through_workers([WARM_UP_SEED, *range(first)], threads)[1:]
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as folder, streamlit_server(pathlib.Path(folder)) as (url, server):
        print(f"server {url} (pid {server}); rounds of {', '.join(str(len(r)) for r in rounds)} session(s)")
        measured = asyncio.run(measure(url, server, rounds, alone, args.timeout, args.browsers))
    alone = {s: a for s, a in alone.items() if s != WARM_UP_SEED}
    table = report(measured, alone, pooled, threads, limit, args.browsers)
    print(table)
    if not args.no_write:
        write_section("serving", f"Serving a class: `python benchmarks/serving.py` ({started})", f"{ABOUT}\n\n{table}")
    return measured


if __name__ == "__main__":
    main()
