"""The Sweeps page through AppTest: a tiny sweep (two pairs, widths 16 and 32, one epoch, the bundled
sample) from the axes to the heatmaps, the trend chart, the table and a trial opened on the Kernels
page; bad axes are refused with the field named.

`run_every` never fires in AppTest, so the test waits for the session's sweep job and reruns.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import ROOT, charts, open_app, texts
from kalign_app import params
from kalign_core.runs import load_run
from kalign_core.sweep.spec import SUMMARY_CSV, SWEEP_JSON, read_summary_csv

PAGE = "pages/sweeps.py"
SWEEP = "2pairs-w16-32-r0.1-s1-e1"

pytestmark = pytest.mark.usefixtures("fresh_server")


def open_sweeps() -> AppTest:
    """A new session on the Sweeps page."""
    return open_app().switch_page(PAGE).run()


def choose_tiny_sweep(at: AppTest) -> AppTest:
    at.multiselect(key="sweep_digits").set_value([3, 5, 8]).run()
    at.multiselect(key="sweep_pairs").set_value([(3, 5), (5, 8)])
    at.multiselect(key="sweep_widths").set_value([16, 32])
    at.number_input(key="sweep_epochs").set_value(1)
    at.number_input(key="sweep_workers").set_value(2)
    return at.run()


@pytest.mark.slow
def test_tiny_sweep_from_axes_to_results_and_a_trial_on_the_kernels_page(tmp_path):
    at = choose_tiny_sweep(open_sweeps())
    assert not at.exception and not at.error
    plan = texts(at.info)
    assert f"**4 trials** (2 pairs × 2 widths × 1 ratio × 1 seed) into **{SWEEP}**: about" in plan

    at.button(key="run_sweep").click().run()
    assert not at.exception
    job = at.session_state["sweep_job"]
    assert job is not None and job.wait(120)
    at.run()
    assert not at.exception and not at.error
    assert f"All 4 trials (2 pairs × 2 widths × 1 ratio × 1 seed) are in **{SWEEP}**" in texts(at.success)
    assert not [b for b in at.button if b.key == "run_sweep"]  # nothing left to run

    summaries = read_summary_csv((tmp_path / "sweeps" / SWEEP / SUMMARY_CSV).read_text())
    # The blocks' thread count is recorded, so that a resumed sweep keeps it.
    recorded = json.loads((tmp_path / "sweeps" / SWEEP / SWEEP_JSON).read_text())["threads_per_trial"]
    trained = {load_run(tmp_path / "sweeps" / SWEEP / s.trial_id).provenance["torch_threads"] for s in summaries}
    assert trained == {recorded}
    assert sorted(s.trial_id for s in summaries) == sorted(
        f"{a}v{b}-w{w}-r0.1-s0" for a, b in ((3, 5), (5, 8)) for w in (16, 32)
    )
    shown = charts(at)
    gain = np.array(shown["Alignment gain per digit pair"]["data"][0]["z"], dtype=float)
    error = np.array(shown["Final test error % (regular model)"]["data"][0]["z"], dtype=float)
    for a, b in ((3, 5), (5, 8)):
        trials = [s for s in summaries if (s.digit_a, s.digit_b) == (a, b)]
        assert gain[a, b] == gain[b, a] == pytest.approx(np.mean([s.alignment_gain for s in trials]))
        assert error[a, b] == pytest.approx(np.mean([s.test_error_regular for s in trials]))
    assert np.isnan(gain[3, 8]) and np.isnan(gain[0, 1])  # pairs not in the sweep stay blank
    trend = shown["Alignment gain vs width (mean ± spread over seeds)"]
    assert trend["layout"]["xaxis"]["type"] == "log"
    assert trend["data"][0]["x"] == [16, 32]
    assert trend["data"][0]["y"] == pytest.approx(
        [np.mean([s.alignment_gain for s in summaries if s.width == w]) for w in (16, 32)]
    )
    assert "Sweep more than one lr ratio" in texts(at.caption)
    assert len(at.dataframe[0].value) == 4
    assert [d.proto.label for d in at.get("download_button")] == [
        "Summary (.csv)",
        "Final values of every measure (.csv)",
    ]

    at.selectbox(key="sweep_trial").set_value("5v8-w32-r0.1-s0")
    at.button(key="open_trial").click().run()
    assert not at.exception
    result = at.session_state["result"]
    assert (result.config.digits, result.config.width, result.epochs_done) == ((5, 8), 32, 1)
    assert [json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")] == [
        "heatmap"
    ] * 6  # kernels and class-block means

    at.switch_page(PAGE).run()  # the axes survive the trip to another page
    assert at.multiselect(key="sweep_widths").value == [16, 32]
    assert "All 4 trials" in texts(at.success)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sweep_widths", [], "Hidden widths: choose at least one"),
        ("sweep_ratios", [], "Learning rate ratios: choose at least one"),
        ("sweep_digits", [4], "Digits: choose at least two"),
    ],
)
def test_bad_axes_are_refused_and_nothing_can_run(field, value, message):
    at = open_sweeps()
    at.multiselect(key=field).set_value(value).run()
    assert not at.exception
    assert message in texts(at.error)
    assert not [b for b in at.button if b.key == "run_sweep"]


def test_a_sweep_name_that_leaves_the_sweeps_folder_is_refused():
    at = open_sweeps()
    at.text_input(key="sweep_name").set_value("../..").run()
    assert not at.exception
    assert "Sweep name: run name must contain letters or digits" in texts(at.error)
    assert not [b for b in at.button if b.key == "run_sweep"]


@pytest.mark.slow
@pytest.mark.parametrize("record", ['{"keep": "lean", "threads_per_trial": 0}', "{not json"])
def test_a_damaged_sweep_record_is_named_before_running(tmp_path, record):
    at = choose_tiny_sweep(open_sweeps())
    folder = tmp_path / "sweeps" / SWEEP
    folder.mkdir(parents=True)
    (folder / SWEEP_JSON).write_text(record)
    at.run()
    assert not at.exception
    assert f"Sweep {SWEEP}: " in texts(at.error) and f"{SWEEP}/{SWEEP_JSON}" in texts(at.error)
    assert not [b for b in at.button if b.key == "run_sweep"]


def test_settings_the_sample_cannot_hold_are_explained_before_running():
    at = open_sweeps()
    at.session_state["settings"] = {**at.session_state["settings"], "batch_size": 5000}
    at.run()
    assert not at.exception
    assert "Batch size must be from 1 to 800" in texts(at.error)
    assert not [b for b in at.button if b.key == "run_sweep"]


def test_sweep_epochs_that_clash_with_the_train_pages_probe_are_named_before_running():
    """Valid alone (probe 300 on the Train page, 500 sweep epochs), too many kernels together."""
    at = open_sweeps()
    at.session_state["settings"] = {**at.session_state["settings"], "digits": [3, 5, 8], "probe_size": 300}
    at.number_input(key="sweep_epochs").set_value(500).run()
    assert not at.exception
    assert (
        "Epochs 500 × Probe size (Train page) 300 keep 344 MB of kernels (they grow with the probe size squared); "
        "the limit is 256 MB: lower either"
    ) in texts(at.error)
    assert not [b for b in at.button if b.key == "run_sweep"]


def test_the_estimate_names_the_workers_start_up():
    """A sweep's trials come back a block at a time, so the page does not time the start-up from
    the first trial: it says what it is."""
    at = choose_tiny_sweep(open_sweeps())
    assert "plus the workers' start-up (each starts Python and imports torch: seconds)" in texts(at.info)
    assert not at.exception


@pytest.mark.slow
def test_a_lean_trial_opens_on_the_kernels_page_with_the_epochs_it_kept(tmp_path):
    """A sweep run by the CLI into the server's sweeps folder (lean, the default), 3 epochs: the
    Kernels page offers epochs 0 and 3 only, and says so. (In its own process: training in this one
    first leaves the AppTest script thread hanging.)"""
    args = ["sweep", "--digits", "3", "5", "--widths", "16", "--epochs", "3", "--probe-size", "40"]
    args += ["--batch-size", "100", "--source", "sample", "--workers", "1", "--out", str(tmp_path / "sweeps" / "lean")]
    ran = subprocess.run([sys.executable, "-m", "kalign_core", *args], cwd=ROOT, capture_output=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    at = open_sweeps()
    at.button(key="open_trial").click().run()
    assert not at.exception
    assert at.session_state["result"].kernel_epochs == {"slow": [0, 3], "regular": [0, 3]}
    [slider] = at.select_slider
    assert slider.options == ["0", "3"] and slider.value == 3
    assert "This sweep kept the kernels of epochs 0 and 3 only" in texts(at.caption)
    assert len(at.get("plotly_chart")) == 6
    at.switch_page("pages/kernels.py").run()  # AppTest reruns the page it was switched to by name only
    at.select_slider[0].set_value(0).run()
    assert not at.exception
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    kernels = [title for title in titles if "ΦΦᵀ" in title]
    assert len(kernels) == 2 and all("ρ =" in title and "diverged" not in title for title in kernels), titles


@pytest.mark.slow
def test_a_reload_during_a_sweep_finds_it_again_with_its_stop_button():
    """The running sweep's id is in the address: a new session (a reload, a second tab) opened on it
    shows that sweep's progress and Stop, and stopping it there keeps the trials done."""
    at = choose_tiny_sweep(open_sweeps())
    at.number_input(key="sweep_epochs").set_value(40)
    at = at.run()
    at.button(key="run_sweep").click().run()
    job = at.session_state["sweep_job"]
    assert at.query_params[params.SWEEP_PARAM] == [job.id] or at.query_params[params.SWEEP_PARAM] == job.id

    again = open_app(**{params.SWEEP_PARAM: job.id}).switch_page(PAGE).run()
    assert not again.exception
    assert again.session_state["sweep_job"] is job
    assert [b for b in again.button if b.key == "stop_sweep"]  # the sweep's Stop, in the new session
    again.button(key="stop_sweep").click().run()
    assert job.wait(120) and job.status().state == "stopped"
    again.run()
    assert "Stopped with" in texts(again.info)


def test_a_link_to_a_sweep_that_is_no_longer_running_says_so_in_words():
    at = open_app(**{params.SWEEP_PARAM: "no-such-sweep"}).switch_page(PAGE).run()
    assert not at.exception
    assert "The sweep in this link is no longer running here" in texts(at.warning)
    assert at.session_state["sweep_job"] is None
