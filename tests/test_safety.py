"""Safety: what users type or upload cannot reach outside the runs folder, run files are read as JSON
and .npz only (nothing unpickled, so nothing in a file runs), uploads are capped in size also after
decompression, and the server listens on this machine only unless told otherwise."""

import ast
import io
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.request
import zipfile

import numpy as np
import pytest
import tomllib
import torch
from streamlit.testing.v1 import AppTest

from apptest import MB, ROOT, open_app, texts
from kalign_app.browser import free_port
from kalign_core import cli, runs

# The runs folder is tmp_path/runs, so anything else in tmp_path escaped.
pytestmark = pytest.mark.usefixtures("fresh_server")


def runs_page(earlier) -> AppTest:
    """A session showing `earlier`, on the Runs page."""
    return open_app(earlier).switch_page("pages/runs.py").run()


def everything_under(folder: pathlib.Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


class Payload:
    """Unpickling this creates `marker`: proof that a file's code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ================================================================ names and paths from users
HOSTILE_NAMES = [
    "..",
    "../../outside",
    "/etc/cron.d/kalign",
    "a/b/c",
    "C:\\Windows\\x",
    "nul\x00byte",
    ".hidden",
    "-" * 80,
]


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_a_run_name_cannot_leave_the_runs_folder(earlier, tmp_path, name):
    at = runs_page(earlier)
    at.text_input(key="save_name").set_value(name)
    at = at.button(key="FormSubmitter:save_run-Save").click().run()
    assert not at.exception
    assert everything_under(tmp_path) <= {"runs"} | {f"runs/{p}" for p in everything_under(tmp_path / "runs")}
    saved = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    if at.error:  # refused, saying why
        assert texts(at.error).startswith("Run name: ") and saved == []
    else:  # saved as one plain folder right inside the runs folder
        assert len(saved) == 1 and saved[0].is_dir() and not saved[0].name.startswith(".")
        assert (saved[0] / runs.RUN_JSON).is_file()


def offered(at, name: str) -> bool:
    """Whether the page shows `name` in a table or among a picker's choices (the current run's own
    tables and choices name it "current run")."""
    pickers = [*at.selectbox, *at.multiselect]
    return any(name in frame.value.to_csv() for frame in at.dataframe) or any(
        name in " ".join(map(str, picker.options)) for picker in pickers
    )


@pytest.mark.parametrize("text", ["..", "/", "/etc", "../runs-elsewhere", "inside/../../..", "link-out", "a\x00b"])
def test_the_runs_folder_field_cannot_leave_the_runs_folder(earlier, tmp_path, text):
    outside = tmp_path / "outside"
    runs.save_run(earlier, outside / "secret-run")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link-out").symlink_to(outside)
    at = runs_page(earlier)
    at = at.text_input[0].set_value(text).run()
    assert not at.exception
    assert "Runs folder: " in texts(at.error)
    assert not offered(at, "secret-run")  # nothing from outside


def test_a_link_in_the_runs_folder_is_neither_listed_nor_written_through(earlier, tmp_path):
    outside = tmp_path / "outside"
    runs.save_run(earlier, outside)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "linked").symlink_to(outside)
    at = runs_page(earlier)
    assert not offered(at, "linked")  # the link is not offered as a saved run
    at.text_input(key="save_name").set_value("linked")
    at = at.button(key="FormSubmitter:save_run-Save").click().run()
    assert "Run name: " in texts(at.error)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_cli_out_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("months of work")
    argv = ["train", "--source", "sample", "--width", "16", "--epochs", "1", "--probe-size", "20", "--out", str(folder)]
    try:
        code = cli.main(argv)
    except SystemExit as leaving:
        code = leaving.code
    assert (folder / "chapter1.tex").read_text() == "months of work"
    assert code == 2 and "--out" in capsys.readouterr().err


# ================================================================ nothing in a file runs
LOADERS = {("np", "load"), ("numpy", "load"), ("torch", "load")}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# The one exception, and why: the pipe between the server and its own training processes (and the
# queue of its Ray actors, ray_pool.py) carries only what kalign's worker made (configs, results);
# no file and no upload ever travels it.
PICKLE_ALLOWED = {"kalign_app/workers.py"}


def sources() -> list[pathlib.Path]:
    return [
        ROOT / "app.py",
        *(path for folder in ("kalign_app", "pages", "kalign_core") for path in sorted((ROOT / folder).rglob("*.py"))),
    ]


def test_the_code_reads_files_only_without_unpickling():
    """Every np.load passes allow_pickle=False and every torch.load weights_only=True; no pickle modules."""
    problems = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                forbidden = [n for n in names if n and n.split(".")[0] in FORBIDDEN_MODULES]
                if str(path.relative_to(ROOT)) not in PICKLE_ALLOWED or forbidden != ["pickle"]:
                    problems += [f"{where} imports {n}" for n in forbidden]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
            ):
                call = (node.func.value.id, node.func.attr)
                keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                wanted = ("weights_only", True) if call[0] == "torch" else ("allow_pickle", False)
                if call in LOADERS and keywords.get(wanted[0], "missing") is not wanted[1]:
                    problems.append(f"{where} calls {'.'.join(call)} without {wanted[0]}={wanted[1]}")
    assert problems == []


def npz_with_objects(result, payload) -> bytes:
    with np.load(io.BytesIO(runs.kernels_to_npz(result)), allow_pickle=False) as f:
        arrays = {key: f[key] for key in f.files}
    arrays["slow"] = np.array([payload] * len(result.history["slow"]), dtype=object)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_an_uploaded_npz_with_python_objects_is_refused_never_run(earlier, tmp_path):
    marker = tmp_path / "payload-ran"
    bomb = npz_with_objects(earlier, Payload(marker))
    with np.load(io.BytesIO(bomb), allow_pickle=True) as f:  # the payload is live: loading it runs it
        f["slow"]
    assert marker.exists()
    marker.unlink()

    at = runs_page(earlier)
    at.file_uploader(key="upload_json").set_value(
        ("run.json", runs.result_to_json(earlier).encode(), "application/json")
    )
    at.file_uploader(key="upload_npz").set_value(("kernels.npz", bomb, "application/octet-stream"))
    at = at.run().button(key="open_upload").click().run()
    assert not at.exception
    assert texts(at.error).startswith("Upload: kernel file")
    assert not marker.exists()
    assert at.session_state["result"] is earlier


@pytest.mark.parametrize("file", [runs.WEIGHTS_PT, runs.KERNELS_NPZ])
def test_a_saved_run_with_code_in_a_file_is_refused_never_run(earlier, tmp_path, file):
    marker = tmp_path / "payload-ran"
    folder = runs.save_run(earlier, tmp_path / "runs" / "trojan")
    if file == runs.WEIGHTS_PT:
        torch.save({"slow": Payload(marker), "regular": Payload(marker)}, folder / file)
        torch.load(folder / file, weights_only=False)  # the payload is live
    else:
        (folder / file).write_bytes(npz_with_objects(earlier, Payload(marker)))
        with np.load(folder / file, allow_pickle=True) as f:
            f["slow"]
    assert marker.exists()
    marker.unlink()

    at = runs_page(earlier)
    at.selectbox(key="open_name").set_value("trojan")
    at = at.button(key="open_saved").click().run()
    assert not at.exception
    assert "Saved run trojan: " in texts(at.error)
    assert not marker.exists()
    assert at.session_state["result"] is earlier


# ================================================================ sizes
def test_uploads_are_capped_by_the_page_and_by_the_server(earlier):
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    at = runs_page(earlier)
    caps = {u.key: u.proto.max_upload_size_mb for u in at.file_uploader}
    assert set(caps) == {"upload_json", "upload_npz"}
    assert all(0 < cap <= server["maxUploadSize"] for cap in caps.values())


EXPANSION_BUDGET = 256 * MB  # what one upload may unpack to in the server's memory


def zero_kernels_npz(epochs: int, m: int) -> bytes:
    """A small file (zeros compress about 200:1 even at the fastest level) that unpacks to
    (epochs+1)·m²·4 bytes per model; written in chunks, never held unpacked here."""
    shapes = {"target": (m, m), "slow": (epochs + 1, m, m), "regular": (epochs + 1, m, m)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as npz:
        npz.writestr("probe_labels.npy", npy_bytes(np.repeat(np.arange(2), m // 2)))
        for name, shape in shapes.items():
            with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
                left = 4 * math.prod(shape)
                while left > 0:
                    member.write(bytes(min(left, MB)))
                    left -= MB
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_an_upload_that_unpacks_to_hundreds_of_mb_is_refused_before_unpacking(earlier):
    epochs, m = 100, 600
    doc = json.loads(runs.result_to_json(earlier))
    doc["config"].update(epochs=epochs, probe_size=m)
    for name in ("slow", "regular"):
        doc["history"][name] = [dict(doc["history"][name][-1], epoch=e) for e in range(epochs + 1)]
    with pytest.raises(runs.RunFileError, match="keep 277 MB of kernels"):
        runs.result_from_json(json.dumps(doc))  # no run can have such kernels
    # The kernel file alone is refused from its headers too, whatever history it is paired with.
    result = runs.result_from_json(runs.result_to_json(earlier))
    result.history = {name: [result.history[name][-1]] * (epochs + 1) for name in result.history}
    bomb = zero_kernels_npz(epochs, m)
    assert len(bomb) < 4 * MB  # far below the 50 MB upload cap
    tracemalloc.start()
    try:
        with pytest.raises(runs.RunFileError, match="kernel file unpacks to 277 MB; at most 256 MB"):
            runs.attach_kernels(result, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < EXPANSION_BUDGET / 4


# ================================================================ the network
def test_the_server_config_listens_on_this_machine_only():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("localhost", "127.0.0.1", "::1")
    assert config["server"].get("enableXsrfProtection", True) and config["server"].get("enableCORS", True)
    assert config["browser"]["gatherUsageStats"] is False


def this_machines_network_address() -> str | None:
    """The address other machines would reach this one at (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_the_server_is_not_reachable_from_the_network(tmp_path):
    address = this_machines_network_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KALIGN_RUNS_DIR": str(tmp_path / "runs")},
    )
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as answer:
                    assert answer.read() == b"ok"
                break
            except OSError:
                assert server.poll() is None, "streamlit exited"
                time.sleep(0.1)
        else:
            pytest.fail("streamlit did not answer on localhost within 60 s")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=5).close()
    finally:
        server.terminate()
        server.wait(30)
