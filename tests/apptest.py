"""Helpers the app tests share: the app's paths, a tiny run's settings, and AppTest sessions that open
the app, press Train, wait for the job and read what the page shows. The app served for real (a free
port, `streamlit_server`, Chromium) is kalign_app/browser.py, which the benchmarks share.

`run_every` never fires in AppTest, so a test waits for the session's job and reruns: the Train page
draws a finished job's results on any ordinary rerun.
"""

import dataclasses
import json
import pathlib
import re
import threading

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from kalign_app import jobs
from kalign_core import ExperimentConfig, run_experiment
from kalign_core.devices import torch_threads
from kalign_core.results import MODEL_NAMES

ROOT = pathlib.Path(__file__).parents[1]
APP = str(ROOT / "app.py")
# The URL of a tiny run on the bundled sample, and the config it trains.
TINY = {"width": "32", "epochs": "2", "batch_size": "100", "probe_size": "40", "source": "sample"}
TINY_CONFIG = ExperimentConfig(width=32, epochs=2, batch_size=100, probe_size=40, source="sample")
MB = 2**20
# A finished run on the Train page: errors, alignment, how far each model moved, kernel machines.
TRAIN_CHARTS = 4


def open_app(earlier=None, **query) -> AppTest:
    """A new session on the Train page, opened with `query` in the URL and `earlier` as its run."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    if earlier is not None:
        at.session_state["result"] = earlier
    return at.run()


def session_job(at: AppTest):
    """The session's running or waiting training job, if any."""
    return at.session_state["job"] if "job" in at.session_state else None


def finish(at: AppTest) -> AppTest:
    """Wait for this session's job (if the page has not already collected it: a tiny run may end
    while the run that pressed Train is still drawing), then rerun as the progress fragment would."""
    job = session_job(at)
    assert job is None or job.wait(120)
    return at.run()


def press_train(at: AppTest, wait: bool = False) -> AppTest:
    """Press Train; with `wait`, also wait for the job it started, if any, and rerun."""
    at = at.button(key="train").click().run()
    return finish(at) if wait and session_job(at) is not None else at


def texts(elements) -> str:
    """The values of these page elements, one per line."""
    return "\n".join(str(e.value) for e in elements)


def charts(at: AppTest, parse=json.loads) -> dict[str, dict]:
    """The page's Plotly specs, read with `parse`, by chart title (a two-line title's lines joined by a
    space, its markup left out)."""
    specs = [parse(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {re.sub("</?sup>", "", spec["layout"]["title"]["text"].replace("<br>", " ")): spec for spec in specs}


def wait_until(read, ready=bool, timeout=60.0):
    """Poll `read()` until `ready(value)`; the value."""
    for _ in range(int(timeout / 0.02)):
        value = read()
        if ready(value):
            return value
        threading.Event().wait(0.02)
    raise AssertionError(f"not ready after {timeout} s: {value}")


def assert_same_training(result, alone, epochs: int | None = None) -> None:
    """The first `epochs` (default: all) epochs of `result` equal `alone`'s bit for bit: every
    number in the histories but the wall-clock seconds, every kernel, and the final weights."""
    for name in MODEL_NAMES:
        got, want = result.history[name], alone.history[name]
        epochs_compared = len(want) if epochs is None else epochs + 1
        assert len(got) == epochs_compared
        assert [dataclasses.replace(r, seconds=0.0) for r in got] == [
            dataclasses.replace(r, seconds=0.0) for r in want[:epochs_compared]
        ], name
        for ours, theirs in zip(result.kernels[name], alone.kernels[name]):
            np.testing.assert_array_equal(ours, theirs)
        if epochs is None:
            for (key, ours), theirs in zip(
                result.models[name].state_dict().items(), alone.models[name].state_dict().values()
            ):
                assert torch.equal(ours, theirs), (name, key)
    np.testing.assert_array_equal(result.target_kernel, alone.target_kernel)


def alone(config: ExperimentConfig, slots: jobs.JobSlots):
    """`config` trained in this thread at the thread count of the slots' jobs."""
    with torch_threads(slots.threads_per_job):
        return run_experiment(config)
