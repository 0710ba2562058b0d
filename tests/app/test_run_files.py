"""Run files (.kalign): what the Runs page downloads comes back, at every setting ExperimentConfig
accepts, under one upload limit that the page and the server agree on; damaged or foreign files are
refused in words. Also the provenance every run records, and saved folders from before it."""

import io
import json
import threading
import zipfile

import numpy as np
import pytest
import tomllib
import torch

from apptest import MB, ROOT, TINY_CONFIG, open_app, texts
from kalign_core import ExperimentConfig, load_run, run_experiment, runs, save_run
from kalign_core.config import MAX_EPOCHS, MAX_KERNEL_BYTES, MAX_PROBE_SIZE, MIN_PROBE_SIZE
from kalign_core.engine import trial
from kalign_core.results import MODEL_NAMES, EpochRecord, ExperimentResult
from runfaults import npz_replacing

# float16 keeps 11 significant bits: each entry within half a unit in the last place of the kernel's
# largest entry (entries are scaled by it).
FLOAT16_TOLERANCE = 2.0**-12


def most_epochs(probe_size: int) -> int:
    """The most epochs ExperimentConfig accepts at this probe size."""
    return min(MAX_EPOCHS, MAX_KERNEL_BYTES // (2 * 4 * probe_size**2) - 1)


def synthetic_result(epochs: int, probe_size: int, digits=(1, 7, 9)) -> ExperimentResult:
    """A finished run at these settings with random symmetric kernels that grow over the epochs.
    Three kernels are shared between the epochs (the file is built kernel by kernel either way), so
    that the largest settings take little memory here."""
    rng = np.random.default_rng(probe_size)
    config = ExperimentConfig(digits=digits, width=256, epochs=epochs, probe_size=probe_size, source="sample")
    labels = np.sort(np.arange(probe_size) % len(digits))
    bases = []
    for scale in (1.0, 30.0, 1e6):  # 1e6: far beyond float16's range (65504)
        features = rng.normal(size=(probe_size, 8))
        bases.append((scale * features @ features.T).astype(np.float32))
    records = [EpochRecord(e, 10.0, 11.0, 0.5, 0.4 + e / 1e4, seconds=e / 10) for e in range(epochs + 1)]
    return ExperimentResult(
        config=config,
        source="sample",
        device="cpu",
        history={name: list(records) for name in MODEL_NAMES},
        kernels={name: [bases[(e + i) % 3] for e in range(epochs + 1)] for i, name in enumerate(MODEL_NAMES)},
        target_kernel=(labels[:, None] == labels[None, :]).astype(np.float32) - 1 / len(digits),
        probe_labels=labels,
        diverged_at={name: None for name in MODEL_NAMES},
        seconds=12.5,
        provenance={"torch": "2.0", "torch_threads": 2, "device": "cpu", "cpu": "Test CPU", "numpy": "2.0"},
    )


def assert_kernels_close(loaded: ExperimentResult, original: ExperimentResult) -> None:
    for name in MODEL_NAMES:
        assert len(loaded.kernels[name]) == len(original.kernels[name])
        for got, want in zip(loaded.kernels[name], original.kernels[name]):
            assert got.dtype == np.float32 and got.shape == want.shape
            finite = np.isfinite(want)
            np.testing.assert_array_equal(np.isfinite(got), finite)
            np.testing.assert_array_equal(got[~finite], want[~finite])  # inf stays inf; NaN stays NaN
            largest = np.abs(want[finite]).max(initial=0)
            assert np.abs(got[finite] - want[finite]).max(initial=0) <= FLOAT16_TOLERANCE * largest


def assert_same_except_kernels(loaded: ExperimentResult, original: ExperimentResult) -> None:
    assert loaded.config == original.config and loaded.history == original.history
    assert (loaded.source, loaded.device, loaded.stopped, loaded.seconds) == (
        original.source,
        original.device,
        original.stopped,
        original.seconds,
    )
    assert loaded.diverged_at == original.diverged_at and loaded.provenance == original.provenance
    np.testing.assert_array_equal(loaded.target_kernel, original.target_kernel)
    np.testing.assert_array_equal(loaded.probe_labels, original.probe_labels)


# ---------------------------------------------------------------- at the configuration limits


def test_every_accepted_setting_makes_a_run_file_under_the_upload_limit():
    """The run file's size from its parts (stored, uncompressed): both models' float16 triangles and
    float32 scales, the float32 target, int64 labels; plus room for run.json and the zip's headers."""
    sizes = {}
    for m in range(MIN_PROBE_SIZE, MAX_PROBE_SIZE + 1):
        epochs = most_epochs(m)
        ExperimentConfig(epochs=epochs, probe_size=m)  # accepted
        with pytest.raises(ValueError):
            ExperimentConfig(epochs=epochs + 1, probe_size=m)  # unless it is the epoch limit itself
        snapshots = len(MODEL_NAMES) * (epochs + 1)
        sizes[m] = snapshots * (m * (m + 1) // 2 * 2 + 4) + m * m * 4 + m * 8
    worst = max(sizes, key=sizes.get)
    assert worst == 993  # measured for real below
    assert sizes[worst] + 1 * MB < runs.MAX_RUN_FILE_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("probe_size", [200, 512, 993], ids=["500-epochs", "kernels-at-256MB", "largest-file"])
def test_a_run_at_the_limits_round_trips_through_its_run_file(probe_size):
    original = synthetic_result(most_epochs(probe_size), probe_size)
    data = runs.run_file(original)
    assert len(data) <= runs.MAX_RUN_FILE_BYTES
    loaded = runs.read_run_file(data)
    assert_same_except_kernels(loaded, original)
    assert_kernels_close(loaded, original)


def test_the_issues_300_epoch_run_takes_a_quarter_of_its_float32_kernels():
    original = synthetic_result(300, 200)
    data = runs.run_file(original)
    full = 2 * 301 * 200 * 200 * 4
    assert len(data) < 0.26 * full  # 23 MB: float16 halves, the upper triangle halves again


@pytest.mark.slow
def test_a_saved_folder_at_the_kernel_limit_loads_again(tmp_path):
    """Exactly MAX_KERNEL_BYTES of kernels (probe 512, 127 epochs) beside the target kernel."""
    original = synthetic_result(most_epochs(512), 512)
    assert 2 * (original.config.epochs + 1) * 512**2 * 4 == MAX_KERNEL_BYTES
    steady = np.eye(512, dtype=np.float32)  # compresses fast; what matters here is the size
    original.kernels = {name: [steady] * (original.config.epochs + 1) for name in MODEL_NAMES}
    loaded = load_run(save_run(original, tmp_path / "run"))
    for name in MODEL_NAMES:
        assert all(np.array_equal(a, b) for a, b in zip(loaded.kernels[name], original.kernels[name]))


# ---------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def trained():
    return run_experiment(
        ExperimentConfig(width=16, epochs=3, batch_size=200, probe_size=30, device="cpu", source="sample", seed=3)
    )


@pytest.mark.slow
def test_a_trained_run_round_trips_through_its_run_file(trained):
    data = runs.run_file(trained)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [runs.RUN_JSON, runs.KERNELS_NPZ]
    loaded = runs.read_run_file(data)
    assert_same_except_kernels(loaded, trained)
    assert_kernels_close(loaded, trained)
    assert loaded.models == {}  # weights stay in saved folders (a wide model's would not fit)


def test_a_run_without_kernels_round_trips_without_them(trained):
    bare = runs.result_from_json(runs.result_to_json(trained))
    loaded = runs.read_run_file(runs.run_file(bare))
    assert loaded.history == trained.history and loaded.kernels == {name: [] for name in MODEL_NAMES}


def test_undefined_and_infinite_kernel_entries_survive():
    original = synthetic_result(2, 12)
    broken = original.kernels["regular"][2].copy()
    broken[0, :] = broken[:, 0] = np.inf
    broken[3, 3] = np.nan
    original.kernels["regular"][2] = broken
    original.kernels["slow"][1] = np.full((12, 12), np.nan, np.float32)  # all undefined
    original.kernels["slow"][0] = np.zeros((12, 12), np.float32)
    assert_kernels_close(runs.read_run_file(runs.run_file(original)), original)


# ---------------------------------------------------------------- provenance


def test_a_run_records_what_decides_its_bits(trained):
    p = trained.provenance
    assert p["torch"] == torch.__version__ and p["numpy"] == np.__version__
    assert p["device"] == "cpu" and p["cpu"] == trial.cpu_model() != ""
    assert p["torch_threads"] == torch.get_num_threads()


def test_the_thread_count_is_the_training_threads(keep_torch_threads):
    recorded = []

    def train_with_one_thread():
        torch.set_num_threads(1)
        recorded.append(run_experiment(TINY_CONFIG).provenance["torch_threads"])

    worker = threading.Thread(target=train_with_one_thread)
    worker.start()
    worker.join()
    assert recorded == [1]


def test_the_cpu_model_falls_back_where_there_is_no_proc_cpuinfo(monkeypatch):
    def no_file(*args, **kwargs):
        raise FileNotFoundError("/proc/cpuinfo")

    trial.cpu_model.cache_clear()
    monkeypatch.setattr("builtins.open", no_file)
    monkeypatch.setattr(trial.platform, "processor", lambda: "")
    monkeypatch.setattr(trial.platform, "machine", lambda: "arm64")
    try:
        assert trial.cpu_model() == "arm64"
    finally:
        trial.cpu_model.cache_clear()


def test_provenance_is_saved_and_an_older_folder_without_it_loads(trained, tmp_path):
    folder = save_run(trained, tmp_path / "run")
    assert load_run(folder).provenance == trained.provenance
    doc = json.loads((folder / runs.RUN_JSON).read_text())
    del doc["provenance"]  # as kalign wrote run.json before recording it
    (folder / runs.RUN_JSON).write_text(json.dumps(doc))
    older = load_run(folder)
    assert older.provenance == {} and older.history == trained.history
    assert all(np.array_equal(a, b) for a, b in zip(older.kernels["slow"], trained.kernels["slow"]))


def test_provenance_that_is_not_names_and_values_is_refused(trained):
    doc = json.loads(runs.result_to_json(trained))
    doc["provenance"] = {"cpu": {"nested": [1]}}
    with pytest.raises(runs.RunFileError, match="provenance must map names to text or numbers"):
        runs.result_from_json(json.dumps(doc))


# ---------------------------------------------------------------- damaged and foreign files


def zip_of(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def with_kernels(result, **replace) -> bytes:
    """The result's run file with arrays of its compact kernels replaced (None: left out)."""
    npz = npz_replacing(io.BytesIO(runs.compact_kernels_npz(result)), **replace)
    return zip_of({runs.RUN_JSON: runs.result_to_json(result).encode(), runs.KERNELS_NPZ: npz})


def claiming_a_huge_run_json(result) -> bytes:
    """A zip whose run.json says it unpacks to 6 MB (the directory's size is what is checked)."""
    data = bytearray(zip_of({runs.RUN_JSON: runs.result_to_json(result).encode()}))
    directory = data.rindex(b"PK\x01\x02")
    data[directory + 24 : directory + 28] = (6 * MB).to_bytes(4, "little")
    return bytes(data)


BAD_RUN_FILES = [
    ("empty", lambda r: b"", "not a readable kalign run file"),
    ("json-not-zip", lambda r: runs.result_to_json(r).encode(), "not a readable kalign run file"),
    ("truncated", lambda r: runs.run_file(r)[:1000], "not a readable kalign run file"),
    ("no-run-json", lambda r: zip_of({"notes.txt": b"hi"}), "it must hold run.json"),
    (
        "extra-member",
        lambda r: zip_of({runs.RUN_JSON: b"{}", "evil.sh": b"rm"}),
        "nothing else (it holds evil.sh, run.json)",
    ),
    (
        "bzip2",
        lambda r: zip_of({runs.RUN_JSON: runs.result_to_json(r).encode()}, zipfile.ZIP_BZIP2),
        "run.json is compressed in a way kalign does not read",
    ),
    ("huge-json", claiming_a_huge_run_json, "run.json unpacks to 6.0 MB; at most 5 MB"),
    ("foreign-json", lambda r: zip_of({runs.RUN_JSON: b'{"format": "mlflow"}'}), "not a kalign run"),
    (
        "kernels-not-npz",
        lambda r: zip_of({runs.RUN_JSON: runs.result_to_json(r).encode(), runs.KERNELS_NPZ: b"PK"}),
        "kernel file is not a readable .npz",
    ),
    ("no-scale", lambda r: with_kernels(r, regular_scale=None), "lacks the array(s) regular_scale"),
    (
        "full-matrices",
        lambda r: with_kernels(r, slow=np.zeros((4, 30, 30), np.float16)),
        "slow must have shape (4, 465) (got (4, 30, 30))",
    ),
    (
        "too-few-epochs",
        lambda r: with_kernels(r, regular=np.zeros((3, 465), np.float16)),
        "regular must have shape (4, 465)",
    ),
    ("float64", lambda r: with_kernels(r, slow=np.zeros((4, 465))), "slow must hold float16 or float32 numbers"),
    (
        "text-scale",
        lambda r: with_kernels(r, slow_scale=np.array(["a"] * 4)),
        "slow_scale must hold float16 or float32",
    ),
    ("objects", lambda r: with_kernels(r, regular=np.array([{}] * 4, dtype=object)), "holds Python objects"),
    (
        "labels-out-of-range",
        lambda r: with_kernels(r, probe_labels=np.full(30, 7)),
        "probe labels must be classes 0 to 1",
    ),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in BAD_RUN_FILES], ids=[c[0] for c in BAD_RUN_FILES])
def test_a_damaged_or_foreign_run_file_is_refused_saying_why(trained, make, message):
    with pytest.raises(runs.RunFileError) as raised:
        runs.read_run_file(make(trained))
    assert message in str(raised.value)


def test_a_bzip2_member_in_a_kernel_npz_is_refused_before_unpacking(trained):
    npz = zip_of({"probe_labels.npy": b"\x93NUMPY"}, zipfile.ZIP_BZIP2)
    with pytest.raises(runs.RunFileError, match="probe_labels.npy is compressed in a way kalign does not read"):
        runs.attach_kernels(runs.result_from_json(runs.result_to_json(trained)), npz)


# ---------------------------------------------------------------- the Runs page


@pytest.mark.slow
def test_the_page_the_server_and_the_largest_run_file_agree_on_the_upload_limit(earlier):
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["maxUploadSize"] * MB == runs.MAX_RUN_FILE_BYTES
    at = open_app(earlier).switch_page("pages/runs.py").run()
    assert at.file_uploader(key="upload_json").proto.max_upload_size_mb == server["maxUploadSize"]


def uploaded(at, name: str, data: bytes, kernels: bytes | None = None):
    at.switch_page("pages/runs.py").run()
    at.file_uploader(key="upload_json").set_value((name, data, "application/zip"))
    if kernels is not None:
        at.file_uploader(key="upload_npz").set_value(("kernels.npz", kernels, "application/octet-stream"))
    return at.run().button(key="open_upload").click().run()


@pytest.mark.usefixtures("fresh_server")
def test_an_uploaded_run_file_is_shown_at_once_on_every_page(trained):
    at = uploaded(open_app(), "mine.kalign", runs.run_file(trained))
    assert not at.exception
    assert "Opened mine.kalign" in texts(at.success)
    assert "No run yet" not in texts(at.info)  # the Current run section above shows it already
    assert "e3-seed3" in texts(at.caption) and "Computed with torch" in texts(at.caption)
    assert_kernels_close(at.session_state["result"], trained)
    at.switch_page("pages/kernels.py").run()
    assert not at.exception and at.slider(key="kernel_epoch").max == 3


@pytest.mark.usefixtures("fresh_server")
def test_an_opened_saved_run_is_shown_at_once_with_its_provenance(trained, tmp_path):
    save_run(trained, tmp_path / "runs" / "mine")
    at = open_app().switch_page("pages/runs.py").run()
    at.selectbox(key="open_name").set_value("mine")
    at = at.button(key="open_saved").click().run()
    assert "Opened mine" in texts(at.success) and "No run yet" not in texts(at.info)
    assert f"CPU {trained.provenance['cpu']}" in texts(at.caption)


@pytest.mark.usefixtures("fresh_server")
def test_a_run_file_with_a_kernels_npz_beside_it_is_refused_and_the_earlier_run_stays(earlier, trained):
    at = uploaded(open_app(earlier), "mine.kalign", runs.run_file(trained), kernels=runs.kernels_to_npz(trained))
    assert not at.exception
    assert "Upload: mine.kalign holds its kernels already: remove kernels.npz" in texts(at.error)
    assert at.session_state["result"] is earlier


@pytest.mark.usefixtures("fresh_server")
def test_a_foreign_zip_is_refused_in_words_and_the_earlier_run_stays(earlier):
    at = uploaded(open_app(earlier), "photos.kalign", zip_of({"cat.jpg": b"\xff\xd8"}))
    assert not at.exception
    assert texts(at.error).startswith("Upload: not a kalign run file")
    assert at.session_state["result"] is earlier


@pytest.mark.usefixtures("fresh_server")
def test_a_run_saved_before_provenance_says_it_was_not_recorded(trained):
    older = trained.copy()
    older.provenance = {}
    at = open_app(older).switch_page("pages/runs.py").run()
    assert "Provenance: not recorded" in texts(at.caption)
