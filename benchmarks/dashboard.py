"""Dashboard responsiveness, server side, through Streamlit's AppTest (the data already on disk):
pressing Train until the epoch-0 charts are drawn, a rerun of the Train page showing a finished run,
a rerun of the Kernels page when its epoch slider moves, and the heatmap payload per figure."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import time
from unittest import mock

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
TARGETS = {"rerun": 0.3, "payload": 1.5e6, "first_charts": 2.0}


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def measure_dashboard(settings: dict[str, str] | None = None, repeats: int = 5) -> list[tuple[str, str, str, str]]:
    """Table rows for section 5; `settings` are URL query parameters (none: the defaults)."""
    try:
        import streamlit as st
        from streamlit.testing.v1 import AppTest

        from kalign_app import navigation
    except ImportError:
        return [("5. Dashboard responsiveness", "not measured: streamlit is not installed here", "", "")]
    if not APP.exists():
        return [("5. Dashboard responsiveness", "not measured: app.py does not exist yet", "", "")]
    from kalign_core import load_digits

    load_digits((8, 9), "sample")  # the data on disk and in memory, as on a server already in use
    with contextlib.ExitStack() as stack:
        runs = stack.enter_context(tempfile.TemporaryDirectory())
        stack.enter_context(mock.patch.dict(os.environ, {"KALIGN_DEFAULT_SOURCE": "sample", "KALIGN_RUNS_DIR": runs}))
        st.cache_resource.clear()  # no cached result for an identical config
        stack.callback(st.cache_resource.clear)
        at = AppTest.from_file(str(APP), default_timeout=600)
        at.query_params.update(settings or {})
        at.run()

        # Press Train, then rerun as the progress fragment would until the epoch-0 charts are drawn.
        start = time.perf_counter()
        at.button(key="train").click().run()
        while not at.exception and len(at.get("plotly_chart")) < 2 and time.perf_counter() - start < 60:
            at.run()
        first_charts = time.perf_counter() - start
        job = at.session_state["job"]  # None when a short run has already ended and been collected
        finished = job is None or job.wait(600)
        at.run()
        if at.exception or not finished or "result" not in at.session_state:
            return [("5. Dashboard responsiveness", f"not measured: training failed ({at.exception})", "", "")]
        epochs = len(at.session_state["result"].history["slow"]) - 1

        train_rerun = min(_timed(at.run) for _ in range(repeats))
        at.switch_page(navigation.KERNELS).run()
        slider_times = []
        for i in range(repeats):
            epoch = (i * 3 + 1) % (epochs + 1)  # a different epoch each time
            slider_times.append(_timed(lambda epoch=epoch: at.slider(key="kernel_epoch").set_value(epoch).run()))
        payloads = [len(chart.proto.spec.encode()) for chart in at.get("plotly_chart")]
        failed = at.exception
    if failed:
        return [("5. Dashboard responsiveness", f"not measured: the Kernels page failed ({failed})", "", "")]
    largest = max(payloads)
    return [
        (
            "5. Press Train → epoch-0 charts drawn (server side; the page's progress fragment then polls each second)",
            f"{first_charts:.2f} s",
            f"≤ {TARGETS['first_charts']:.0f} s",
            _verdict(first_charts <= TARGETS["first_charts"]),
        ),
        (
            "5. Train page rerun, no training (a finished run drawn)",
            f"{train_rerun * 1e3:.0f} ms",
            f"≤ {TARGETS['rerun'] * 1e3:.0f} ms",
            _verdict(train_rerun <= TARGETS["rerun"]),
        ),
        (
            "5. Kernels page rerun when the epoch slider moves",
            f"{min(slider_times) * 1e3:.0f} ms best, "
            f"{sorted(slider_times)[len(slider_times) // 2] * 1e3:.0f} ms median",
            f"≤ {TARGETS['rerun'] * 1e3:.0f} ms",
            _verdict(min(slider_times) <= TARGETS["rerun"]),
        ),
        (
            f"5. Heatmap payload per figure ({len(payloads)} figures on the Kernels page)",
            f"{largest / 1e6:.2f} MB largest",
            f"≤ {TARGETS['payload'] / 1e6} MB",
            _verdict(largest <= TARGETS["payload"]),
        ),
    ]
