"""Bad input at every door it can come in by, one table per door: the Train form, the URL, the
command line, files uploaded on the Runs page, the data folder, runs whose alignment is undefined,
and absent devices. Each row is what comes in, where, and a fragment of the message the user must
see; add a row to try a new case.

Each case is tried end to end (AppTest for the app, `cli.main` for the command line); the core's own
tables live elsewhere: ExperimentConfig in test_config.py, damaged files on disk in test_runs.py, a
damaged MNIST cache in test_data_faults.py, query-parameter parsing in test_app_params.py.
"""

import dataclasses
import io
import json
import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest import MB, TINY, TINY_CONFIG, TRAIN_CHARTS, charts, open_app, press_train, session_job, texts
from kalign_app import jobs, params
from kalign_core import ExperimentConfig, cli, data, run_experiment, runs
from kalign_core.devices import available_devices
from kalign_core.results import MODEL_NAMES

pytestmark = pytest.mark.usefixtures("fresh_server")


def strict_json(spec: str) -> dict:
    """Plotly's JSON as a browser would parse it: NaN or Infinity would be a syntax error there."""

    def refuse(constant):
        raise AssertionError(f"{constant} in a figure sent to the browser")

    return json.loads(spec, parse_constant=refuse)


def assert_untouched(at: AppTest, earlier) -> None:
    """The app kept serving and the session still shows its earlier run."""
    assert not at.exception
    assert at.session_state["result"] is earlier


def case(name: str, *values, bug: str | None = None):
    """One row of a table, shown as `name`; `bug` marks a known defect (a strict xfail until fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(*values, id=name, marks=marks)


# ================================================================ the Train form
# field, value typed into its control, message shown next to the form
FORM = [
    case("no digit", "digits", [], "Digits must be 2 to 10 distinct whole numbers from 0 to 9 (got [])"),
    case("one digit", "digits", [8], "Digits must be 2 to 10 distinct whole numbers from 0 to 9 (got [8])"),
    case(
        "repeated digits",
        "digits",
        [8, 8],
        "Digits must be 2 to 10 distinct whole numbers from 0 to 9; [8, 8] repeats a digit",
    ),
    case("width 0", "width", 0, "Hidden width must be a whole number from 1 to 32,768 (got 0)"),
    case("width negative", "width", -64, "Hidden width must be a whole number from 1 to 32,768 (got -64)"),
    case("width huge", "width", 10**9, "Hidden width must be a whole number from 1 to 32,768 (got 1000000000)"),
    case(
        "slow lr negative",
        "slow_lr",
        -0.001,
        "Slow learning rate must be a finite number 0 or more and at most 1,000,000 (got -0.001)",
    ),
    case(
        "regular lr 0",
        "regular_lr",
        0.0,
        "Regular learning rate must be a finite number greater than 0 and at most 1,000,000 (got 0.0)",
    ),
    case(
        "regular lr negative",
        "regular_lr",
        -0.01,
        "Regular learning rate must be a finite number greater than 0 and at most 1,000,000 (got -0.01)",
    ),
    case("epochs 0", "epochs", 0, "Epochs must be a whole number from 1 to 500 (got 0)"),
    case("epochs huge", "epochs", 10**6, "Epochs must be a whole number from 1 to 500 (got 1000000)"),
    case("batch 0", "batch_size", 0, "Batch size must be a whole number from 1 to 60,000 (got 0)"),
    case("batch huge", "batch_size", 10**7, "Batch size must be a whole number from 1 to 60,000 (got 10000000)"),
    case("probe too small", "probe_size", 3, "Probe size must be a whole number from 4 to 1,000 (got 3)"),
    case("seed negative", "seed", -1, "Seed must be a whole number from 0 to"),
]


def set_control(at: AppTest, field: str, value) -> None:
    control = at.multiselect(key="train_digits") if field == "digits" else at.number_input(key=f"train_{field}")
    control.set_value(value)


@pytest.mark.slow
@pytest.mark.parametrize("field, value, message", FORM)
def test_bad_form_input_is_named_trains_nothing_and_keeps_the_earlier_run(earlier, field, value, message):
    at = open_app(earlier, **TINY)
    set_control(at, field, value)
    at = at.run()
    assert message in texts(at.error)
    assert at.button(key="train").disabled  # named before Train; nothing can start
    assert session_job(at) is None
    assert_untouched(at, earlier)
    assert len(at.get("plotly_chart")) == TRAIN_CHARTS  # the earlier run's charts are still drawn


# Settings valid one by one that the data cannot satisfy (the bundled sample has 400 training and
# 100 test digits per class: 800 and 200 for 8 vs 9), or that clash: named in the form before Train.
DOES_NOT_FIT = [
    case(
        "batch larger than the data",
        {"batch_size": 5000},
        "Batch size must be from 1 to 800, the training digits available (got 5000)",
    ),
    case(
        "probe larger than the test set",
        {"probe_size": 500},
        "Probe size must be from 4 to 200, the held-out digits available (got 500)",
    ),
    case(
        "epochs × probe too large",
        {"epochs": 500, "probe_size": 300},
        "Epochs 500 × Probe size 300 keep 344 MB of kernels (they grow with the probe size squared); the limit is "
        "256 MB: lower either",
    ),
]


@pytest.mark.parametrize("values, message", DOES_NOT_FIT)
def test_settings_that_do_not_fit_are_named_before_training_and_keep_the_earlier_run(earlier, values, message):
    at = open_app(earlier, **TINY)
    for field, value in values.items():
        set_control(at, field, value)
    at = at.run()
    assert message in texts(at.error)
    assert at.button(key="train").disabled  # named before Train; nothing can start
    assert session_job(at) is None
    assert_untouched(at, earlier)


def test_a_linearized_twin_beyond_its_memory_is_named_before_training_and_keeps_the_earlier_run(earlier):
    """Full MNIST's 8 vs 9 (13,783 digits, counted without loading them) at the widest width."""
    at = open_app(earlier, **TINY)
    at.selectbox(key="train_source").set_value("mnist")
    at.number_input(key="train_width").set_value(32768.0)
    at = at.toggle(key="train_linearized_twin").set_value(True).run()
    assert (
        "Linearized twin keeps the initial features of all 13,783 digits at Hidden width 32,768: 1,723 MB, above its "
        "limit of 1,024 MB; lower the width, choose fewer digits or turn the twin off" in texts(at.error)
    )
    assert at.button(key="train").disabled
    assert session_job(at) is None
    assert_untouched(at, earlier)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_rate_never_reaches_training(value):
    """A browser's number box cannot hold NaN or ±inf; should one arrive, the control keeps a finite value."""
    at = open_app(**TINY)
    at.number_input(key="train_slow_lr").set_value(value)
    at = press_train(at, wait=True)
    assert not at.exception
    assert math.isfinite(at.number_input(key="train_slow_lr").value)
    assert math.isfinite(at.session_state["settings"]["slow_lr"])


# ================================================================ URL query parameters
# parameters added to TINY's, warning shown above the page
URL = [
    case("unknown key", {"colour": "red"}, "Ignored unknown URL parameter(s) 'colour'; known ones are digits, width"),
    case("many unknown keys", {f"k{i}": "1" for i in range(50)}, "Ignored unknown URL parameter(s) 'k0', 'k1'"),
    case(
        "width text",
        {"width": "wide"},
        "Ignored URL parameter width='wide': width must be a whole number from 1 to 32,768",
    ),
    case(
        "width float",
        {"width": "1e9"},
        "Ignored URL parameter width='1e9': width must be a whole number from 1 to 32,768",
    ),
    case("width 400 digits", {"width": "9" * 400}, "Ignored URL parameter width='9999999999"),
    case(
        "digits empty", {"digits": ""}, "Ignored URL parameter digits='': digits must be 2 to 10 distinct whole numbers"
    ),
    case("one digit", {"digits": "8"}, "Ignored URL parameter digits='8': digits must be 2 to 10"),
    case("repeated digits", {"digits": "8,8"}, "[8, 8] repeats a digit"),
    case(
        "digit 10",
        {"digits": "8,10"},
        "Ignored URL parameter digits='8,10': digits must be 2 to 10 distinct whole numbers from 0 to 9",
    ),
    case("digits text", {"digits": "eight,nine"}, "Ignored URL parameter digits='eight,nine'"),
    case(
        "slow lr NaN",
        {"slow_lr": "nan"},
        "Ignored URL parameter slow_lr='nan': slow_lr must be a finite number 0 or more",
    ),
    case(
        "slow lr negative",
        {"slow_lr": "-0.1"},
        "slow_lr must be a finite number 0 or more and at most 1,000,000 (got -0.1)",
    ),
    case(
        "regular lr 0",
        {"regular_lr": "0"},
        "regular_lr must be a finite number greater than 0 and at most 1,000,000 (got 0.0)",
    ),
    case(
        "regular lr inf",
        {"regular_lr": "inf"},
        "regular_lr must be a finite number greater than 0 and at most 1,000,000 (got inf)",
    ),
    case("epochs 0", {"epochs": "0"}, "epochs must be a whole number from 1 to 500 (got 0)"),
    case("epochs huge", {"epochs": "100000"}, "epochs must be a whole number from 1 to 500 (got 100000)"),
    case("batch 0", {"batch_size": "0"}, "batch_size must be a whole number from 1 to 60,000 (got 0)"),
    case("probe huge", {"probe_size": "99999"}, "probe_size must be a whole number from 4 to 1,000 (got 99999)"),
    case("seed negative", {"seed": "-3"}, "seed must be a whole number from 0"),
    case("unknown source", {"source": "floppy"}, "source must be one of auto, mnist, sample (got 'floppy')"),
    case(
        "twin neither on nor off",
        {"linearized_twin": "maybe"},
        "Ignored URL parameter linearized_twin='maybe': linearized_twin must be on or off (got 'maybe')",
    ),
    case("unknown device", {"device": "tpu"}, "device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' (got 'tpu')"),
    case("absent device", {"device": "cuda:7"}, "device 'cuda:7' is not available here; choose one of auto"),
    case("markup", {"device": "<script>alert(1)</script>"}, "Ignored URL parameter device='<script>alert(1)</script>'"),
]


def controls(at: AppTest) -> dict:
    """What each control of the Train form shows, by config field."""
    shown = {n.key.removeprefix("train_"): n.value for n in at.number_input}
    shown["digits"] = at.multiselect(key="train_digits").value
    shown["source"] = at.selectbox(key="train_source").value
    shown["device"] = at.selectbox(key="train_device").value
    shown["linearized_twin"] = at.toggle(key="train_linearized_twin").value
    return shown


@pytest.fixture(scope="module")
def tiny_controls():
    return controls(open_app(**TINY))


@pytest.mark.slow
@pytest.mark.parametrize("query, warning", URL)
def test_bad_url_parameters_warn_and_the_controls_keep_sane_values(tiny_controls, query, warning):
    at = open_app(**{**TINY, **query})
    assert not at.exception
    assert warning in texts(at.warning)
    defaults, _ = params.default_settings()
    assert controls(at) == {**tiny_controls, **{f: v for f, v in defaults.items() if f in query}}
    # The address bar is rewritten to the settings in use: a link copied from it carries no garbage.
    shared = dict(at.query_params)
    assert set(shared) == set(defaults) and params.settings_from_params(shared, defaults)[1] == []


def test_the_app_keeps_serving_after_a_garbage_url():
    at = press_train(
        open_app(**{**TINY, "digits": "1", "seed": "minus one", "bogus": "?", "device": "cuda:9"}), wait=True
    )
    assert not at.exception
    assert at.session_state["result"].config == TINY_CONFIG
    at.switch_page("pages/kernels.py").run()
    assert not at.exception and len(at.get("plotly_chart")) == 6  # three kernels and their class-block means


# ================================================================ the command line
# `python -m kalign_core train` with one bad option after a tiny valid run's: exit code 2 and the
# field named on stderr (by argparse for what it parses, by ExperimentConfig or the data check after).
# options, message on stderr
CLI = [
    case("one digit", ["--digits", "8"], "--digits must be 2 to 10 distinct whole numbers from 0 to 9 (got [8])"),
    case("repeated digits", ["--digits", "8", "8"], "[8, 8] repeats a digit"),
    case(
        "digit 12", ["--digits", "8", "12"], "--digits must be 2 to 10 distinct whole numbers from 0 to 9 (got [8, 12])"
    ),
    case("digits text", ["--digits", "eight", "nine"], "argument --digits: invalid int value: 'eight'"),
    case("width 0", ["--width", "0"], "--width must be a whole number from 1 to 32,768 (got 0)"),
    case("width fractional", ["--width", "1.5"], "argument --width: invalid int value: '1.5'"),
    case("width huge", ["--width", "100000000"], "--width must be a whole number from 1 to 32,768 (got 100000000)"),
    case(
        "slow lr NaN",
        ["--slow-lr", "nan"],
        "--slow-lr must be a finite number 0 or more and at most 1,000,000 (got nan)",
    ),
    case(
        "slow lr negative",
        ["--slow-lr", "-1"],
        "--slow-lr must be a finite number 0 or more and at most 1,000,000 (got -1.0)",
    ),
    case(
        "lazy scale too small",
        ["--lazy-scale", "0.5"],
        "--lazy-scale must be off or a number from 1 to 1,000 (got 0.5)",
    ),
    case(
        "regular lr 0",
        ["--regular-lr", "0"],
        "--regular-lr must be a finite number greater than 0 and at most 1,000,000 (got 0.0)",
    ),
    case(
        "regular lr inf",
        ["--regular-lr", "inf"],
        "--regular-lr must be a finite number greater than 0 and at most 1,000,000 (got inf)",
    ),
    case("regular lr text", ["--regular-lr", "fast"], "argument --regular-lr: invalid float value: 'fast'"),
    case("epochs 0", ["--epochs", "0"], "--epochs must be a whole number from 1 to 500 (got 0)"),
    case("epochs huge", ["--epochs", "1000000"], "--epochs must be a whole number from 1 to 500 (got 1000000)"),
    case("batch 0", ["--batch-size", "0"], "--batch-size must be a whole number from 1 to 60,000 (got 0)"),
    case(
        "batch larger than the data",
        ["--batch-size", "5000"],
        "--batch-size must be from 1 to 800, the training digits available",
    ),
    case(
        "probe larger than the test set",
        ["--probe-size", "500"],
        "--probe-size must be from 4 to 200, the held-out digits available (got 500)",
    ),
    case("seed negative", ["--seed", "-1"], "--seed must be a whole number from 0"),
    case("unknown source", ["--source", "web"], "argument --source: invalid choice: 'web'"),
    case(
        "unknown device", ["--device", "tpu"], "--device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' (got 'tpu')"
    ),
    case("absent device", ["--device", "cuda:7"], "--device 'cuda:7' is not available here; choose one of auto"),
    case("unknown option", ["--colour", "red"], "unrecognized arguments: --colour red"),
    case("out is below a file", ["--out", "{file}/run"], "--out"),
]
TINY_ARGS = ["train", "--source", "sample", "--width", "16", "--epochs", "1", "--probe-size", "20", "--device", "cpu"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m kalign_core ARGV` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as leaving:
        code = leaving.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_linearized_twin_beyond_its_memory_exits_2_naming_the_options(capsys, monkeypatch):
    """The limit lowered to 1 MB: 8 vs 9 of the sample (1,000 digits) at width 512 keep 2 MB."""
    monkeypatch.setattr("kalign_core.config.MAX_TWIN_FEATURE_BYTES", 2**20)
    code, out, err = run_cli(TINY_ARGS + ["--linearized-twin", "--width", "512"], capsys)
    assert code == 2 and "Traceback" not in err and "data: " not in out
    assert (
        "--linearized-twin keeps the initial features of all 1,000 digits at --width 512: 2 MB, above its limit "
        "of 1 MB" in err
    )


@pytest.mark.parametrize("options, message", CLI)
def test_bad_cli_options_exit_2_naming_the_field(capsys, tmp_path, options, message):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code, out, err = run_cli(TINY_ARGS + [o.format(file=a_file) for o in options], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert "data: " not in out  # refused before any training finished


# `python -m kalign_core sweep` with one bad option: exit code 2, the option named, no trial run.
SWEEP_CLI = [
    case("one digit", ["--digits", "8"], "--digits must be 2 to 10 distinct whole numbers from 0 to 9 (got [8])"),
    case("width 0", ["--widths", "0"], "--widths must be a whole number from 1 to 32,768 (got 0)"),
    case("ratio above 1", ["--ratios", "2"], "ratios must be numbers from 0 to 1, slow_lr / regular_lr (got 2.0)"),
    case("workers negative", ["--workers", "-1"], "--workers must be a whole number from 1 to 1,024 (got -1)"),
    case("workers 0", ["--workers", "0"], "--workers must be a whole number from 1"),
    case("threads per trial 0", ["--threads-per-trial", "0"], "--threads-per-trial must be a whole number from 1"),
]


@pytest.mark.parametrize("options, message", SWEEP_CLI)
def test_bad_sweep_options_exit_2_naming_the_option(capsys, tmp_path, options, message):
    folder = tmp_path / "sweep"
    argv = [
        "sweep",
        "--out",
        str(folder),
        "--digits",
        "8",
        "9",
        "--widths",
        "16",
        "--epochs",
        "1",
        "--source",
        "sample",
    ]
    code, _, err = run_cli(argv + options, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not any(folder.glob("*/run.json"))  # no trial ran


@pytest.fixture
def no_mnist_here(tmp_path, monkeypatch):
    """Where data goes: makers of folders and downloads both fail here at once, without a network."""
    monkeypatch.setattr(data, "_last_failed_download", -math.inf)
    data._mnist_arrays.cache_clear()
    yield tmp_path
    data._mnist_arrays.cache_clear()


def test_cli_without_mnist_says_so_instead_of_a_traceback(capsys, monkeypatch, no_mnist_here):
    folder = no_mnist_here / "a-file"
    folder.write_text("not a folder")
    monkeypatch.setenv("KALIGN_DATA_DIR", str(folder))
    code, _, err = run_cli(TINY_ARGS + ["--source", "mnist"], capsys)
    assert code in (1, 2)
    assert "MNIST is not on disk" in err and str(folder) in err and "Traceback" not in err


# ================================================================ files uploaded on the Runs page
def upload(at: AppTest, run_json: bytes, kernels_npz: bytes | None = None) -> AppTest:
    at.switch_page("pages/runs.py").run()
    at.file_uploader(key="upload_json").set_value(("run.json", run_json, "application/json"))
    if kernels_npz is not None:
        at.file_uploader(key="upload_npz").set_value(("kernels.npz", kernels_npz, "application/octet-stream"))
    at.run()
    return at.button(key="open_upload").click().run()


def as_json(result, *changes) -> bytes:
    """The run's JSON after `changes`, each (path of keys and indices, new value)."""
    doc = json.loads(runs.result_to_json(result))
    for path, value in changes:
        inner = doc
        for key in path[:-1]:
            inner = inner[key]
        inner[path[-1]] = value
    return json.dumps(doc).encode()


def as_npz(result, **arrays) -> bytes:
    """The run's kernels file with `arrays` replaced."""
    with np.load(io.BytesIO(runs.kernels_to_npz(result)), allow_pickle=False) as f:
        kept = {key: f[key] for key in f.files}
    out = io.BytesIO()
    np.savez(out, **{**kept, **arrays})
    return out.getvalue()


def longer(result, epochs: int):
    """A copy of the run whose histories repeat their last record up to `epochs` records."""
    doc = json.loads(runs.result_to_json(result))
    for name in MODEL_NAMES:
        doc["history"][name] += [doc["history"][name][-1]] * (epochs - len(doc["history"][name]))
    return json.dumps(doc).encode()


# (run JSON, kernels npz or None) made from the earlier run, error shown
REFUSED_UPLOADS = [
    case("empty", lambda r: (b"", None), "Upload: run file is not valid JSON"),
    case("truncated", lambda r: (as_json(r)[:300], None), "Upload: run file is not valid JSON"),
    case("not JSON", lambda r: (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", None), "Upload: run file is not valid JSON"),
    case("a JSON list", lambda r: (b"[1, 2, 3]", None), "Upload: not a kalign run"),
    case("another program's JSON", lambda r: (b'{"format": "mlflow"}', None), "Upload: not a kalign run"),
    case(
        "width as text",
        lambda r: (as_json(r, (["config", "width"], "wide")), None),
        "width must be a whole number from 1 to 32,768 (got 'wide')",
    ),
    case(
        "digits as a string",
        lambda r: (as_json(r, (["config", "digits"], "89")), None),
        "digits must be 2 to 10 distinct whole numbers",
    ),
    case("history as a number", lambda r: (as_json(r, (["history"], 7)), None), "Upload: run file has a wrong value"),
    case(
        "error as text",
        lambda r: (as_json(r, (["history", "slow", 0, "test_error"], "low")), None),
        "test_error must be a finite number",
    ),
    case("stopped as text", lambda r: (as_json(r, (["stopped"], "yes")), None), "stopped must be true or false"),
    case(
        "npz not a zip",
        lambda r: (as_json(r), b"PK\x03\x04 nothing else"),
        "Upload: kernel file is not a readable .npz",
    ),
    case(
        "npz wrong target shape",
        lambda r: (as_json(r), as_npz(r, target=np.zeros((5, 5), np.float32))),
        "Upload: kernel file: target must have shape (40, 40) (got (5, 5))",
    ),
    case(
        "npz too few epochs",
        lambda r: (as_json(r), as_npz(r, slow=np.zeros((1, 40, 40), np.float32))),
        "Upload: kernel file: slow must have shape (3, 40, 40) (got (1, 40, 40))",
    ),
    case(
        "npz 2-d labels",
        lambda r: (as_json(r), as_npz(r, probe_labels=np.zeros((40, 1), np.int64))),
        "probe labels must be one list of whole class numbers",
    ),
    case(
        "JSON over 5 MB",
        lambda r: (as_json(r) + b" " * (5 * MB), None),
        "run.json is 5.0 MB; a json file may be at most 5 MB",
    ),
    case(
        "npz over 50 MB",
        lambda r: (as_json(r), b"\0" * (50 * MB + 1)),
        "kernels.npz is 50.0 MB; a npz file may be at most 50 MB",
    ),
    case(
        "JSON nested 100,000 deep",
        lambda r: (b"[" * 100_000 + b"]" * 100_000, None),
        "Upload: run file is not valid JSON",
    ),
    case("npz labels as text", lambda r: (as_json(r), as_npz(r, probe_labels=np.array(["a"] * 40))), "probe labels"),
]


@pytest.mark.slow
@pytest.mark.parametrize("make, message", REFUSED_UPLOADS)
def test_a_bad_upload_is_refused_with_a_reason_and_the_earlier_run_stays(earlier, make, message):
    at = upload(open_app(earlier, **TINY), *make(earlier))
    assert message in texts(at.error)
    assert_untouched(at, earlier)


# Files that pass the checks but hold odd values: each is refused with a reason, or every page draws it.
ODD_UPLOADS = [
    case(
        "NaN and inf kernels",
        lambda r: (
            as_json(r),
            as_npz(r, slow=np.full((3, 40, 40), np.nan, np.float32), target=np.full((40, 40), np.inf, np.float32)),
        ),
    ),
    case(
        "float16 kernels", lambda r: (as_json(r), as_npz(r, regular=np.stack(r.kernels["regular"]).astype(np.float16)))
    ),
    case("alignment 1e308", lambda r: (as_json(r, (["history", "slow", 1, "alignment"], 1e308)), None)),
    case("diverged after the last epoch", lambda r: (as_json(r, (["diverged_at", "regular"], 10**6)), None)),
    case("600 epochs of history", lambda r: (longer(r, 600), None)),
    case("test error null", lambda r: (as_json(r, (["history", "regular", 2, "test_error"], None)), None)),
    case("epoch 10**30", lambda r: (as_json(r, (["history", "slow", 1, "epoch"], 10**30)), None)),
    case("probe labels beyond the digits", lambda r: (as_json(r), as_npz(r, probe_labels=np.full(40, 5)))),
    case(
        "no probe points",
        lambda r: (
            as_json(r),
            as_npz(
                r,
                probe_labels=np.zeros(0, np.int64),
                target=np.zeros((0, 0), np.float32),
                slow=np.zeros((3, 0, 0), np.float32),
                regular=np.zeros((3, 0, 0), np.float32),
            ),
        ),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("make", ODD_UPLOADS)
def test_an_odd_upload_is_refused_or_drawn_on_every_page(earlier, make):
    at = upload(open_app(earlier, **TINY), *make(earlier))
    assert not at.exception
    if at.error:
        assert texts(at.error).startswith("Upload: ")
        assert_untouched(at, earlier)
        return
    for page in ("pages/train.py", "pages/kernels.py", "pages/runs.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception[0].value)
        for chart in at.get("plotly_chart"):
            strict_json(chart.proto.spec)


# ================================================================ the data folder (KALIGN_DATA_DIR)
# where KALIGN_DATA_DIR points, data source, what the Train page says (in words: the folder is in
# the server's log, not on the page)
DATA_FOLDER = [
    case("a file, auto", "a-file", "auto", "Trained on the **bundled MNIST sample**"),
    case("inside a file, auto", "a-file/kalign", "auto", "Trained on the **bundled MNIST sample**"),
    # Each worker process keeps its own note of a failed download: the message says "could not be
    # downloaded" or "a download failed at HH:MM", depending on the worker; both start so.
    case("a file, mnist", "a-file", "mnist", "Training failed: full MNIST is not on this machine yet"),
    case("inside a file, mnist", "a-file/kalign", "mnist", "Training failed: full MNIST is not on this machine yet"),
    case("the fallback says why", "a-file", "auto", "full MNIST is not on this machine yet"),
]


@pytest.mark.slow
@pytest.mark.parametrize("where, source, message", DATA_FOLDER)
def test_an_unusable_data_folder_falls_back_or_says_so(no_mnist_here, monkeypatch, where, source, message):
    (no_mnist_here / "a-file").write_text("not a folder")
    folder = no_mnist_here / where
    monkeypatch.setenv("KALIGN_DATA_DIR", str(folder))
    at = press_train(open_app(**{**TINY, "source": source}), wait=True)
    assert not at.exception
    shown = texts(at.info) + texts(at.error)
    assert message in shown and str(no_mnist_here) not in shown
    if source == "auto":
        assert at.session_state["result"].source == "sample"
    else:
        assert at.session_state["outcome"].state == "failed" and "result" not in at.session_state


# ================================================================ alignment undefined, devices absent, sizes absurd
def test_all_hidden_units_dead_show_a_gap_with_the_reason():
    """A learning rate of 10 kills every ReLU of both models in the first epoch: ρ is 0/0 from then on."""
    at = press_train(open_app(**TINY, slow_lr="10", regular_lr="10"), wait=True)
    assert not at.exception
    result = at.session_state["result"]
    assert [result.curve(name, "alignment")[1] for name in MODEL_NAMES] == [None, None]
    alignment = charts(at, parse=strict_json)["Alignment ρ (feature solid, Θ dashed)"]
    curves = {
        name: trace["y"] for trace in alignment["data"] for name in MODEL_NAMES if trace["name"] == f"{name} features"
    }
    assert curves["slow"][1:] == [None] and curves["regular"][1:] == [None]  # a gap, not a NaN or a zero
    assert any("ρ undefined at epoch 1" in note["text"] for note in alignment["layout"]["annotations"])
    reason = "alignment is undefined at epoch 1 (a gap in the chart): the centered feature kernel is zero"
    assert reason in texts(at.caption)
    assert [m.value for m in at.metric if "alignment" in m.label] == ["undefined", "undefined"]
    at.switch_page("pages/kernels.py").run()
    assert not at.exception
    for chart in at.get("plotly_chart"):
        strict_json(chart.proto.spec)


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_a_job_for_an_absent_device_fails_naming_it(device):
    if ("cuda:0" if device == "cuda" else device) in available_devices():
        pytest.skip(f"this machine has {device}")
    job = jobs.TrainingJob(dataclasses.replace(TINY_CONFIG, device=device), jobs.JobSlots(1)).start()
    assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and status.result is None
    assert f"device {device!r} is not available here; choose one of auto" in status.error


KERNEL_BUDGET = 256 * MB  # per run: a class of 30 on a 24 GiB server leaves well under 1 GiB each


def test_the_kernel_snapshots_of_one_run_are_bounded():
    settings = dict(digits=tuple(range(10)), width=8, probe_size=1000, epochs=500, batch_size=4000, source="sample")
    try:
        config = ExperimentConfig(**settings)
    except ValueError as refused:  # refusing such settings up front is a fix too
        assert "probe_size" in str(refused) and "epochs" in str(refused)
        return
    seen = []
    result = run_experiment(config, on_epoch=lambda r: seen.append(r.epochs_done), should_stop=lambda: len(seen) > 40)
    assert sum(k.nbytes for stack in result.kernels.values() for k in stack) <= KERNEL_BUDGET
