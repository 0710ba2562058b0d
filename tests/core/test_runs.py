"""Runs on disk: a lossless round trip, no unpickling, clear RunFileErrors for damaged files, and a
save that a crash cannot leave half-written."""

import csv
import io
import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from kalign_core import DigitData, ExperimentConfig, run_experiment
from kalign_core.model import MLP
from kalign_core.results import LINEAR_MEASURES, MEASURES, MODEL_NAMES
from kalign_core.runs import (
    RunFileError,
    attach_kernels,
    folders,
    history_csv,
    kernels_to_npz,
    load_run,
    result_from_json,
    result_to_json,
    save_run,
)
from runfaults import npz_replacing


@pytest.fixture(scope="module")
def result():
    config = ExperimentConfig(width=16, epochs=2, batch_size=200, probe_size=20, device="cpu", source="sample", seed=5)
    return run_experiment(config)


@pytest.fixture(scope="module")
def nan_result():
    """A run whose losses are NaN (both models diverge at epoch 1)."""
    r = np.random.default_rng(0)
    x = r.random((40, 6)).astype(np.float32)
    x[3, 2] = np.nan
    y = np.arange(40) % 2
    data = DigitData(x, y, x[:20].copy(), y[:20].copy(), digits=(0, 1))
    config = ExperimentConfig(digits=(0, 1), width=4, epochs=2, batch_size=10, probe_size=8, device="cpu")
    return run_experiment(config, data)


@pytest.fixture
def saved(result, tmp_path):
    return save_run(result, tmp_path / "run")


def assert_same_run(loaded, original, with_models=True):
    assert loaded.config == original.config
    assert (loaded.source, loaded.device, loaded.stopped) == (original.source, original.device, original.stopped)
    assert loaded.seconds == original.seconds and loaded.diverged_at == original.diverged_at
    assert loaded.history == original.history
    assert loaded.kernel_machine_errors == original.kernel_machine_errors
    assert loaded.alignment_null == original.alignment_null
    assert loaded.infinite_width == original.infinite_width
    np.testing.assert_array_equal(loaded.target_kernel, original.target_kernel)
    np.testing.assert_array_equal(loaded.probe_labels, original.probe_labels)
    for name in MODEL_NAMES:
        assert len(loaded.kernels[name]) == len(original.kernels[name])
        for a, b in zip(loaded.kernels[name], original.kernels[name]):
            np.testing.assert_array_equal(a, b)
    if with_models:
        assert set(loaded.models) == set(MODEL_NAMES)
        for name in MODEL_NAMES:
            assert isinstance(loaded.models[name], MLP) and not loaded.models[name].training
            want = original.models[name].state_dict()
            for key, value in loaded.models[name].state_dict().items():
                assert torch.equal(value, want[key]), (name, key)


# ---------------------------------------------------------------- round trips


def test_save_and_load_round_trip(result, saved):
    assert sorted(p.name for p in saved.iterdir()) == ["kernels.npz", "run.json", "weights.pt"]
    assert_same_run(load_run(saved), result)


def test_weights_are_loaded_with_weights_only(saved, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_run(saved)
    assert calls and all(call.get("weights_only") is True for call in calls)


PICKLE_RAN = []


def _side_effect():
    PICKLE_RAN.append(True)
    return {}


class _Payload:
    def __reduce__(self):
        return (_side_effect, ())


def test_a_pickle_payload_in_the_weights_is_refused_not_run(saved):
    torch.save({"slow": _Payload(), "regular": _Payload()}, saved / "weights.pt")
    with pytest.raises(RunFileError, match="weights in .* are unreadable"):
        load_run(saved)
    assert PICKLE_RAN == []


def test_a_run_without_models_round_trips_without_weights(result, tmp_path):
    bare = result.copy()
    bare.models = {}
    folder = save_run(bare, tmp_path / "bare")
    assert not (folder / "weights.pt").exists()
    loaded = load_run(folder)
    assert loaded.models == {}
    assert_same_run(loaded, bare, with_models=False)


def test_nan_losses_are_written_as_json_null_and_read_back(nan_result, tmp_path):
    text = result_to_json(nan_result)

    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    doc = json.loads(text, parse_constant=reject)
    assert doc["history"]["slow"][1]["loss"] is None
    loaded = load_run(save_run(nan_result, tmp_path / "nan"))
    assert loaded.diverged_at == nan_result.diverged_at == {"slow": 1, "regular": 1}
    assert loaded.history["slow"][1].loss is None and math.isnan(nan_result.history["slow"][1].loss)


def test_json_round_trip_keeps_config_and_history(result):
    loaded = result_from_json(result_to_json(result))
    assert loaded.history == result.history and loaded.config == result.config
    assert result_from_json(result_to_json(result).encode()).history == result.history


def test_a_run_saved_before_the_lazy_vs_rich_measures_loads_them_as_none(result):
    doc = json.loads(result_to_json(result))
    for records in doc["history"].values():
        for record in records:
            for field in (*MEASURES, "measure_note"):
                del record[field]
    del doc["config"]["lazy_scale"], doc["kernel_machine_errors"], doc["alignment_null"], doc["infinite_width"]
    loaded = result_from_json(json.dumps(doc))
    assert loaded.kernel_machine_errors == {} and loaded.alignment_null == {} and loaded.infinite_width == {}
    assert loaded.config == result.config and loaded.config.lazy_scale is None
    assert all(getattr(r, m) is None for records in loaded.history.values() for r in records for m in MEASURES)
    assert [r.alignment for r in loaded.history["slow"]] == [r.alignment for r in result.history["slow"]]


def test_a_run_with_the_linearized_twin_round_trips_and_one_saved_before_it_loads_without(result):
    twinned = run_experiment(replace(result.config, linearized_twin=True))
    loaded = result_from_json(result_to_json(twinned))
    assert loaded.config.linearized_twin and loaded.history == twinned.history
    assert all(r.linear_gap is not None for r in loaded.history["regular"])
    doc = json.loads(result_to_json(twinned))
    for records in doc["history"].values():
        for record in records:
            for field in (*LINEAR_MEASURES, "linear_note"):
                del record[field]
    del doc["config"]["linearized_twin"]
    older = result_from_json(json.dumps(doc))
    assert not older.config.linearized_twin
    assert all(r.linear_gap is None and r.linear_test_error is None for h in older.history.values() for r in h)


def test_history_csv_has_one_row_per_model_and_epoch(result):
    rows = list(csv.DictReader(io.StringIO(history_csv(result))))
    assert len(rows) == sum(len(h) for h in result.history.values())
    for name in MODEL_NAMES:
        mine = [row for row in rows if row["model"] == name]
        for row, record in zip(mine, result.history[name]):
            assert int(row["epoch"]) == record.epoch
            assert float(row["test_error"]) == record.test_error
            assert float(row["alignment"]) == record.alignment


def test_kernels_npz_round_trip(result):
    blank = result_from_json(result_to_json(result))
    attach_kernels(blank, kernels_to_npz(result))
    for name in MODEL_NAMES:
        assert np.array_equal(np.stack(blank.kernels[name]), np.stack(result.kernels[name]))
    np.testing.assert_array_equal(blank.target_kernel, result.target_kernel)


# ---------------------------------------------------------------- damaged files


def _edit_json(folder, change):
    doc = json.loads((folder / "run.json").read_text())
    change(doc)
    (folder / "run.json").write_text(json.dumps(doc))


def _set(path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BAD_JSON = [
    ("empty", lambda f: (f / "run.json").write_bytes(b""), "not valid JSON"),
    ("truncated", lambda f: (f / "run.json").write_bytes((f / "run.json").read_bytes()[:200]), "not valid JSON"),
    ("binary", lambda f: (f / "run.json").write_bytes(b"\xff\xfe\x00garbage"), "not valid JSON"),
    ("array", lambda f: (f / "run.json").write_text("[1, 2]"), "not a kalign run"),
    ("other-format", lambda f: _edit_json(f, _set(["format"], "other")), "not a kalign run"),
    ("version", lambda f: _edit_json(f, _set(["version"], 99)), "unsupported run version 99"),
    ("no-history", lambda f: _edit_json(f, lambda d: d.pop("history")), "lacks the field 'history'"),
    ("bad-config", lambda f: _edit_json(f, _set(["config", "width"], -1)), "width must be"),
    ("unknown-config", lambda f: _edit_json(f, _set(["config", "colour"], "red")), "colour"),
    (
        "epoch-text",
        lambda f: _edit_json(f, _set(["history", "slow", 1, "epoch"], "1")),
        "epoch must be a whole number from 0 to 500",
    ),
    ("alignment-text", lambda f: _edit_json(f, _set(["history", "slow", 0, "alignment"], "high")), "alignment"),
    (
        "error-list",
        lambda f: _edit_json(f, _set(["history", "regular", 0, "test_error"], [1])),
        "test_error must be a finite number",
    ),
    (
        "measure-text",
        lambda f: _edit_json(f, _set(["history", "slow", 1, "hidden_change"], "far")),
        "hidden_change must be a finite number or null",
    ),
    (
        "machine-error-text",
        lambda f: _edit_json(f, _set(["kernel_machine_errors", "slow", "init", "tangent"], "low")),
        "kernel_machine_errors must map",
    ),
    (
        "infinite-width-distance-negative",
        lambda f: _edit_json(f, _set(["infinite_width", "distance"], -0.5)),
        "infinite_width must map",
    ),
    (
        "null-band-reversed",
        lambda f: _edit_json(f, _set(["alignment_null", "feature"], [0.5, 0.1])),
        "alignment_null must map",
    ),
    ("extra-record-field", lambda f: _edit_json(f, _set(["history", "slow", 0, "colour"], 1)), "exactly the fields"),
    ("history-number", lambda f: _edit_json(f, _set(["history", "slow"], 5)), "wrong value"),
    ("diverged-text", lambda f: _edit_json(f, _set(["diverged_at", "slow"], "x")), "diverged_at"),
    ("stopped-text", lambda f: _edit_json(f, _set(["stopped"], "no")), "stopped"),
    ("seconds-text", lambda f: _edit_json(f, _set(["seconds"], "soon")), "wrong value"),
    (
        "empty-history",
        lambda f: _edit_json(f, _set(["history", "regular"], [])),
        "regular history must have 1 to 3 entries",
    ),
    ("no-run-json", lambda f: (f / "run.json").unlink(), "not a saved kalign run"),
]

BAD_NPZ = [
    ("empty", lambda f: (f / "kernels.npz").write_bytes(b""), "not a readable .npz"),
    (
        "truncated",
        lambda f: (f / "kernels.npz").write_bytes((f / "kernels.npz").read_bytes()[:300]),
        "not a readable .npz",
    ),
    ("not-zip", lambda f: (f / "kernels.npz").write_bytes(b"PK\x03\x04 not really a zip"), "not a readable .npz"),
    ("missing", lambda f: (f / "kernels.npz").unlink(), "not a readable .npz"),
    ("no-target", lambda f: _rewrite_npz(f, target=None), "lacks the array(s) target"),
    (
        "target-shape",
        lambda f: _rewrite_npz(f, target=np.zeros((20, 21), np.float32)),
        "target must have shape (20, 20)",
    ),
    (
        "too-few-epochs",
        lambda f: _rewrite_npz(f, slow=np.zeros((2, 20, 20), np.float32)),
        "slow must have shape (3, 20, 20)",
    ),
    ("kernel-size", lambda f: _rewrite_npz(f, regular=np.zeros((3, 19, 19), np.float32)), "regular must have shape"),
    ("labels-2d", lambda f: _rewrite_npz(f, probe_labels=np.zeros((20, 1), np.int64)), "probe labels must be"),
    ("labels-scalar", lambda f: _rewrite_npz(f, probe_labels=np.int64(20)), "probe labels must be"),
    ("bit-flip", lambda f: _flip_bytes(f / "kernels.npz"), "not a readable .npz"),
    ("pickled-array", lambda f: _rewrite_npz(f, slow=np.array([{"a": 1}], dtype=object)), "holds Python objects"),
    # Compresses to a few kB but would expand to 12 MB: refused from the headers, before loading.
    (
        "oversized",
        lambda f: _rewrite_npz(
            f,
            probe_labels=np.zeros(1001, np.int64),
            target=np.zeros((1001, 1001), np.float32),
            slow=np.zeros((3, 1001, 1001), np.float32),
            regular=np.zeros((3, 1001, 1001), np.float32),
        ),
        "at most 1000 probe points",
    ),
]

BAD_WEIGHTS = [
    ("empty", lambda f: (f / "weights.pt").write_bytes(b""), "unreadable"),
    ("truncated", lambda f: (f / "weights.pt").write_bytes((f / "weights.pt").read_bytes()[:500]), "unreadable"),
    ("one-model", lambda f: _rewrite_weights(f, lambda w: w.pop("regular")), "unreadable"),
    ("wrong-width", lambda f: _rewrite_weights(f, lambda w: w.update(slow=MLP(3, 2).state_dict())), "unreadable"),
]


def _rewrite_npz(folder, **replace):
    (folder / "kernels.npz").write_bytes(npz_replacing(folder / "kernels.npz", **replace))


def _flip_bytes(path):
    """Corrupt the compressed data in the middle of a zip member, keeping the zip's structure."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def _rewrite_weights(folder, change):
    weights = torch.load(folder / "weights.pt", weights_only=True)
    change(weights)
    torch.save(weights, folder / "weights.pt")


@pytest.mark.parametrize(
    "damage, message",
    [(d, m) for _, d, m in BAD_JSON + BAD_NPZ + BAD_WEIGHTS],
    ids=[f"json-{n}" for n, _, _ in BAD_JSON]
    + [f"npz-{n}" for n, _, _ in BAD_NPZ]
    + [f"weights-{n}" for n, _, _ in BAD_WEIGHTS],
)
def test_damaged_run_files_raise_run_file_error_saying_what_is_wrong(saved, damage, message):
    damage(saved)
    with pytest.raises(RunFileError) as raised:
        load_run(saved)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_missing_folder_is_a_run_file_error(tmp_path):
    with pytest.raises(RunFileError, match="not a saved kalign run"):
        load_run(tmp_path / "nowhere")


# ---------------------------------------------------------------- atomic saves


@pytest.fixture(scope="module")
def other_result():
    config = ExperimentConfig(width=16, epochs=1, batch_size=200, probe_size=20, device="cpu", source="sample", seed=6)
    return run_experiment(config)


def _fail_on_replace_call(monkeypatch, which):
    """os.replace in runs raises on its `which`-th call (1-based), as a crash there would."""
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == which:
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(folders.os, "replace", replace)


@pytest.mark.parametrize("which", [1, 2], ids=["retiring-the-old-version", "moving-the-new-one-in"])
def test_a_crash_while_saving_leaves_the_old_version_loadable(result, other_result, saved, monkeypatch, which):
    _fail_on_replace_call(monkeypatch, which)
    with pytest.raises(OSError, match="simulated crash"):
        save_run(other_result, saved)
    monkeypatch.undo()
    assert_same_run(load_run(saved), result)
    assert not [p.name for p in saved.parent.iterdir() if ".saving-" in p.name]


def test_a_crash_while_writing_files_leaves_the_old_version(result, other_result, saved, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_run(other_result, saved)
    monkeypatch.undo()
    assert_same_run(load_run(saved), result)
    assert [p.name for p in saved.parent.iterdir()] == ["run"]


def test_saving_over_a_run_replaces_it_and_leaves_nothing_behind(other_result, saved):
    save_run(other_result, saved)
    assert_same_run(load_run(saved), other_result)
    assert [p.name for p in saved.parent.iterdir()] == ["run"]
