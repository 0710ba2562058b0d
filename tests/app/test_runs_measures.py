"""Any measure across runs: the table of final values against the records themselves, and the Runs
and Sweeps pages' picker (a measure per epoch, its final value against a setting, the CSV) and two
runs' K − K₀ on one colour scale, through AppTest on tiny runs of the bundled sample."""

import base64
import csv
import dataclasses
import io
import json
import math
import shutil

import numpy as np
import pytest

from apptest import charts, open_app, texts
from kalign_app import measure_table, measure_view
from kalign_core import ExperimentConfig, run_experiment, runs
from kalign_core.results import LINEAR_MEASURES, MEASURES, MODEL_NAMES, EpochRecord
from kalign_core.runs.lean import lean_trial_files
from kalign_core.sweep.spec import SUMMARY_CSV, SweepSpec, summarize, summary_csv

pytestmark = pytest.mark.usefixtures("fresh_server")

TINY = dict(batch_size=100, probe_size=40, source="sample", device="cpu")


@pytest.fixture(scope="module")
def tiny_runs():
    """Two tiny runs (width 16, 2 epochs; width 32, 1 epoch, μP) and one like the first as kalign saved
    runs before it measured lazy vs rich (those measures None), saved without its kernels."""
    narrow = run_experiment(ExperimentConfig(width=16, epochs=2, **TINY))
    wide = run_experiment(ExperimentConfig(width=32, epochs=1, slow_lr=0.0, parametrization="mup", **TINY))
    unmeasured = dict.fromkeys((*MEASURES, "measure_note"))
    old = dataclasses.replace(
        narrow,
        history={m: [dataclasses.replace(r, **unmeasured) for r in narrow.history[m]] for m in MODEL_NAMES},
    )
    return {"narrow": narrow, "old": old, "wide": wide}


@pytest.fixture
def saved(tiny_runs, tmp_path):
    """The tiny runs in the server's runs folder (KALIGN_RUNS_DIR); "old" without its kernels."""
    for name, result in tiny_runs.items():
        runs.save_run(result, tmp_path / "runs" / name)
    (tmp_path / "runs" / "old" / runs.KERNELS_NPZ).unlink()
    return tiny_runs


def last(result, model) -> EpochRecord:
    return result.history[model][-1]


def heatmap_values(z: dict) -> np.ndarray:
    """A heatmap's z as Plotly sends a numpy array: base64 bytes of its dtype, and its shape."""
    shape = tuple(int(n) for n in z["shape"].split(","))
    return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)


def reference_value(value):
    """What a table cell should hold for a record's value: None where undefined or not finite."""
    return None if value is None or not math.isfinite(value) else value


# -- the table, as data ------------------------------------------------------------------------------


def test_the_measures_are_every_number_an_epoch_record_holds_and_each_has_a_label():
    numbers = [f.name for f in dataclasses.fields(EpochRecord) if f.type in ("float", "float | None")]
    assert list(measure_table.EPOCH_MEASURES) == [name for name in numbers if name != "seconds"]
    recorded = {"alignment", "test_error", "train_error", "loss", *MEASURES, *LINEAR_MEASURES}
    assert recorded == set(measure_table.MEASURE_LABELS)
    assert all(label.strip() for label in measure_table.MEASURE_LABELS.values())
    assert set(measure_table.SETTING_LABELS) == set(ExperimentConfig().to_dict())


def test_final_rows_and_their_csv_hold_each_models_last_record_and_settings(tiny_runs):
    rows = measure_table.final_rows(tiny_runs)
    assert [(row["run"], row["model"]) for row in rows] == [(r, m) for r in tiny_runs for m in MODEL_NAMES]
    parsed = list(csv.DictReader(io.StringIO(measure_table.rows_csv(rows))))
    assert len(parsed) == len(rows)
    for row, cells in zip(rows, parsed):
        result = tiny_runs[row["run"]]
        record = last(result, row["model"])
        assert row["epoch"] == record.epoch == result.epochs_done
        assert row["width"] == result.config.width and row["slow_lr"] == result.config.slow_lr
        assert row["digits"] == "8, 9" and row["lazy_scale"] == "off"
        assert cells["parametrization"] == result.config.parametrization
        for measure in measure_table.EPOCH_MEASURES:
            want = reference_value(getattr(record, measure))
            assert row[measure] == want
            assert cells[measure] == ("" if want is None else repr(want))  # every digit kept
    old = [row for row in rows if row["run"] == "old"]
    assert all(row["hidden_change"] is None and row["alignment"] is not None for row in old)


def test_the_axis_of_a_setting_follows_its_values(tiny_runs):
    rows = measure_table.final_rows(tiny_runs)
    assert measure_table.setting_axis(rows, "width") == "log"
    assert measure_table.setting_axis(rows, "slow_lr") == "linear"  # "wide" trains its slow layer at 0
    assert measure_table.setting_axis(rows, "seed") == "linear"
    for words in ("parametrization", "digits", "lazy_scale", "linearized_twin"):
        assert measure_table.setting_axis(rows, words) == "category"
    assert {row["linearized_twin"] for row in rows} == {"off"}  # a switch in words, not a number
    unmeasured = "saved before kalign measured it, or undefined at every epoch"
    assert measure_table.lacking(tiny_runs, "tangent_distance") == {unmeasured: ["old · slow", "old · regular"]}
    assert measure_table.lacking(tiny_runs, "alignment") == {}
    twinless = [f"{run} · {model}" for run in tiny_runs for model in MODEL_NAMES]
    assert measure_table.lacking(tiny_runs, "linear_gap") == {measure_table.NO_TWIN: twinless}


# -- the Runs page -----------------------------------------------------------------------------------


def open_runs():
    return open_app().switch_page("pages/runs.py").run()


def pick(at, runs_picked, measure, setting="width"):
    at.multiselect(key="overlay_runs").set_value(runs_picked)
    at.selectbox(key="overlay_measure").set_value(measure)
    at.selectbox(key="overlay_setting").set_value(setting)
    return at.run()


def test_a_picked_measure_is_overlaid_per_epoch_and_its_csv_holds_the_records(saved, monkeypatch):
    written = []
    monkeypatch.setattr(
        measure_view, "rows_csv", lambda rows: written.append(measure_table.rows_csv(rows)) or written[-1]
    )
    at = pick(open_runs(), ["narrow", "wide"], "readout_change")
    assert not at.exception and not at.error
    label = measure_table.MEASURE_LABELS["readout_change"]
    overlay = charts(at)[f"{label} (slow dotted, regular solid)"]
    assert overlay["layout"]["yaxis"]["type"] == "log"
    lines = {trace["name"]: trace for trace in overlay["data"]}
    for run in ("narrow", "wide"):
        for model in MODEL_NAMES:
            records = saved[run].history[model]
            trace = lines[f"{run} · {model}"]
            assert trace["x"] == [r.epoch for r in records]
            # A log axis: the start (exactly 0) is a gap.
            assert trace["y"] == [r.readout_change if r.readout_change > 0 else None for r in records]
            assert trace["y"][0] is None and all(v > 0 for v in trace["y"][1:])
    cells = list(csv.DictReader(io.StringIO(written[-1])))
    assert [(c["run"], c["model"]) for c in cells] == [(r, m) for r in ("narrow", "wide") for m in MODEL_NAMES]
    for c in cells:
        record = last(saved[c["run"]], c["model"])
        assert int(c["epoch"]) == record.epoch and int(c["width"]) == saved[c["run"]].config.width
        for measure in measure_table.EPOCH_MEASURES:
            value = getattr(record, measure)  # None (an empty cell) where not measured: no twin here
            assert (float(c[measure]) if c[measure] else None) == value
    table = at.dataframe[-1].value
    assert table[label].tolist() == [last(saved[r], m).readout_change for r in ("narrow", "wide") for m in MODEL_NAMES]


def test_the_final_value_against_a_setting_uses_a_log_axis_for_width_and_categories_for_words(saved):
    at = pick(open_runs(), ["narrow", "wide"], "test_error", "width")
    assert not at.exception
    final = charts(at)["Test error % at the last epoch, against hidden width"]
    assert final["layout"]["xaxis"]["type"] == "log" and final["layout"]["yaxis"]["type"] == "linear"
    for trace, model in zip(final["data"], MODEL_NAMES):
        assert trace["name"] == model
        assert trace["x"] == [16, 32]
        assert trace["y"] == [last(saved[run], model).test_error for run in ("narrow", "wide")]
    at = pick(at, ["narrow", "wide"], "hidden_change", "parametrization")
    final = charts(at)[f"{measure_table.MEASURE_LABELS['hidden_change']} at the last epoch, against parametrization"]
    assert final["layout"]["xaxis"]["type"] == "category"
    assert final["layout"]["xaxis"]["categoryarray"] == ["mup", "standard"]
    slow = final["data"][0]
    # The wide run's slow hidden layer is frozen (rate 0): exactly 0, so the value axis stays linear.
    assert slow["x"] == ["standard", "mup"] and slow["y"][1] == 0.0
    assert final["layout"]["yaxis"]["type"] == "linear"


def test_a_run_without_a_measure_is_named_and_drawn_as_a_gap(saved):
    at = pick(open_runs(), ["narrow", "old"], "tangent_alignment")
    assert not at.exception and not at.error
    assert "is not recorded in old · slow, old · regular" in texts(at.caption)
    label = measure_table.MEASURE_LABELS["tangent_alignment"]
    overlay = {t["name"]: t for t in charts(at)[f"{label} (slow dotted, regular solid)"]["data"]}
    assert overlay["old · regular"]["y"] == [None] * 3
    assert None not in overlay["narrow · regular"]["y"]
    final = charts(at)[f"{label} at the last epoch, against hidden width"]
    assert [len(trace["x"]) for trace in final["data"]] == [1, 1]  # old's points are left out


def test_two_runs_kernel_changes_share_one_symmetric_colour_scale(saved, tmp_path):
    at = open_runs()
    at.selectbox(key="pair_left").set_value("narrow")
    at.selectbox(key="pair_right").set_value("wide")
    at = at.radio(key="pair_model").set_value("regular").run()
    assert not at.exception and not at.error
    shown = charts(at)
    left, right = shown["narrow: regular K − K₀ (epoch 2)"], shown["wide: regular K − K₀ (epoch 1)"]
    changes = []
    for spec, run in ((left, "narrow"), (right, "wide")):
        kernels = runs.load_run(tmp_path / "runs" / run).kernels["regular"]
        change = kernels[-1].astype(np.float64) - kernels[0]
        heatmap = spec["data"][0]
        np.testing.assert_allclose(heatmap_values(heatmap["z"]), change, rtol=1e-6, atol=1e-7)
        changes.append(np.abs(change).ravel())
    assert "These differ in width" in texts(at.caption)
    limit = np.percentile(np.concatenate(changes), 99)
    for spec in (left, right):
        heatmap = spec["data"][0]
        assert heatmap["zmin"] == -heatmap["zmax"] and heatmap["zmid"] == 0
        assert heatmap["zmax"] == pytest.approx(limit, rel=1e-5)
    at.selectbox(key="pair_right").set_value("old")
    at = at.run()
    assert not at.exception
    assert "old has no kernels saved: its kernel change cannot be drawn." in texts(at.info)


def test_a_damaged_kernel_file_is_told_in_words(saved, tmp_path):
    (tmp_path / "runs" / "wide" / runs.KERNELS_NPZ).write_bytes(b"not a zip")
    at = open_runs()
    at.selectbox(key="pair_left").set_value("narrow")
    at = at.selectbox(key="pair_right").set_value("wide").run()
    assert not at.exception
    assert "The kernels of wide cannot be read; the details are in the server's log." in texts(at.info)
    assert str(tmp_path) not in texts(at.info)


# -- the Sweeps page ---------------------------------------------------------------------------------


def test_a_sweeps_trials_show_any_measure_against_width_and_their_kernel_changes(tmp_path):
    spec = SweepSpec(ExperimentConfig(epochs=1, **TINY), pairs=((3, 5),), widths=(16, 32), ratios=(0.1,), seeds=(0,))
    folder = tmp_path / "sweeps" / "tiny"
    summaries, results = [], {}
    for trial in spec.trials():
        results[trial.id] = run_experiment(trial.config)
        runs.write_run_folder(lean_trial_files(results[trial.id]), folder / trial.id)
        summaries.append(summarize(trial, results[trial.id]))
    (folder / SUMMARY_CSV).write_text(summary_csv(summaries))
    at = open_app().switch_page("pages/sweeps.py").run()
    assert at.multiselect(key="sweep_measure_runs").value == list(results)  # every trial at first
    at.selectbox(key="sweep_measure_measure").set_value("feature_distance").run()
    assert not at.exception and not at.error
    label = measure_table.MEASURE_LABELS["feature_distance"]
    final = charts(at)[f"{label} at the last epoch, against hidden width"]
    assert final["layout"]["xaxis"]["type"] == "log"
    for trace, model in zip(final["data"], MODEL_NAMES):
        assert trace["x"] == [16, 32]
        assert trace["y"] == [last(result, model).feature_distance for result in results.values()]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    # Lean trials keep their first and last epochs' kernels: enough for K − K₀.
    assert [t for t in titles if "K − K₀" in t] == [f"{trial}: regular K − K₀ (epoch 1)" for trial in results]


def test_the_runs_folder_emptied_of_a_run_leaves_the_view_in_words(saved, tmp_path):
    shutil.rmtree(tmp_path / "runs" / "narrow")
    shutil.rmtree(tmp_path / "runs" / "wide")
    at = open_runs()
    assert not at.exception
    assert "Two runs are needed to set their kernel changes side by side." in texts(at.caption)
    at = at.multiselect(key="overlay_runs").set_value([]).run()
    assert "Pick runs above to compare them." in texts(at.caption)
