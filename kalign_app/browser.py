"""The app served for real and driven in Chromium: `streamlit run app.py` on a free port, and Debian's
Chromium launched through Playwright. For the real-browser tests, the benchmarks (`first_use.py`,
`serving.py`) and `scripts/screenshots.py`; the app itself never imports it.

Playwright's own browsers are not used (`playwright install` needs the internet): Chromium is the
one at CHROMIUM (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The page once Streamlit has finished running its script (the stApp element's state).
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHART = "[data-testid='stPlotlyChart']"


def browser_missing() -> list[str]:
    """What is missing to drive Chromium, in words (empty when nothing is)."""
    missing = [] if os.path.exists(CHROMIUM) else [f"{CHROMIUM} is missing (apt-get install -y chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is missing (pip install playwright)")
    return missing


def launch_chromium(playwright):
    """Chromium at CHROMIUM through `playwright` (sync or async: with the async API, await it)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(folder: pathlib.Path, environ: dict | None = None):
    """(url, pid) of `streamlit run app.py` on a free port, with `environ` added to this process's
    environment, its runs in folder/runs and its sweeps in folder/sweeps; its log goes to
    folder/server.log. The server is stopped on leaving, whatever happened inside."""
    port = free_port()
    env = {
        **os.environ,
        "KALIGN_RUNS_DIR": str(folder / "runs"),
        "KALIGN_SWEEPS_DIR": str(folder / "sweeps"),
        **(environ or {}),
    }
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        for _ in range(240):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited: {(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        else:
            raise RuntimeError("streamlit did not become healthy within 2 min")
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
