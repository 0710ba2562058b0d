"""Runs page: runs saved on disk, compared side by side; save, download or open a run again."""

import os
import pathlib

import streamlit as st

import ui
from kalign_core import figures, params, runs
from kalign_core.training import MODEL_NAMES

ui.require_app()

UPLOAD_LIMIT_MB = {"json": 5, "npz": 50}
CURRENT = "current run"


def runs_base() -> pathlib.Path:
    """The server's runs folder: KALIGN_RUNS_DIR, or ./runs. Users may pick folders inside it only."""
    return pathlib.Path(os.environ.get("KALIGN_RUNS_DIR", "runs")).resolve()


def default_name(result) -> str:
    c = result.config
    digits = "v".join(map(str, c.digits))
    return f"{digits}-w{c.width}-lr{c.slow_lr:g}-{c.regular_lr:g}-e{result.epochs_done}-seed{c.seed}"


def saved_runs(folder: pathlib.Path) -> tuple[dict, dict]:
    """(name -> result without kernels, name -> why it cannot be read) for the runs in `folder`."""
    found, broken = {}, {}
    if not folder.is_dir():
        return found, broken
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            found[path.name] = runs.result_from_json((path / runs.RUN_JSON).read_bytes())
        except (OSError, runs.RunFileError) as error:
            broken[path.name] = str(error)
    return found, broken


def summary(name: str, result) -> dict:
    c = result.config
    row = {"run": name, "digits": ", ".join(map(str, c.digits)), "width": c.width, "slow lr": c.slow_lr,
           "regular lr": c.regular_lr, "epochs": f"{result.epochs_done}/{c.epochs}", "batch": c.batch_size,
           "seed": c.seed, "data": result.source}
    for model in MODEL_NAMES:
        last = result.history[model][-1]
        row[f"{model} test error %"] = last.test_error
        row[f"{model} ρ"] = last.alignment
    diverged = [m for m in MODEL_NAMES if result.diverged_at[m] is not None]
    row["status"] = "stopped" if result.stopped else f"{', '.join(diverged)} diverged" if diverged else "finished"
    return row


def folder_picker() -> pathlib.Path | None:
    base = runs_base()
    text = st.text_input("Runs folder", value=st.session_state.get("runs_dir", str(base)),
                         help=f"{base} (set by KALIGN_RUNS_DIR) or a folder inside it")
    try:
        folder = params.runs_folder(text, base)
    except ValueError as error:
        st.error(f"Runs folder: {error}", icon=":material/error:")
        return None
    st.session_state.runs_dir = text
    return folder


def compare(saved: dict, current) -> None:
    choices = ([CURRENT] if current is not None else []) + list(saved)
    if not choices:
        st.caption("Save a run or two to compare them here.")
        return
    picked = st.multiselect("Runs to overlay", choices, default=choices[:2], key="overlay_runs")
    chosen = {name: current if name == CURRENT else saved[name] for name in picked}
    if not chosen:
        return
    left, right = st.columns(2)
    left.plotly_chart(figures.overlay_figure(chosen, "alignment", "Alignment ρ (slow dotted, regular solid)", "ρ"),
                      key="overlay_alignment")
    right.plotly_chart(figures.overlay_figure(chosen, "test_error", "Test error (slow dotted, regular solid)",
                                              "error %"), key="overlay_error")


def save_and_download(folder: pathlib.Path | None, result) -> None:
    name = default_name(result)
    if folder is not None:
        with st.form("save_run"):
            text = st.text_input("Save the current run as", value=name, key="save_name")
            if st.form_submit_button("Save", icon=":material/save:"):
                try:
                    path = params.run_path(folder, text)
                    if path.exists():
                        raise ValueError(f"a run named {path.name!r} already exists in {folder}; choose another name")
                    runs.save_run(result, path)
                except (ValueError, OSError) as error:
                    st.error(f"Run name: {error}", icon=":material/error:")
                else:
                    st.success(f"Saved as {path}", icon=":material/check:")
    downloads = [
        ("Run (.json)", lambda: runs.result_to_json(result), "json", "application/json"),
        ("Histories (.csv)", lambda: runs.history_csv(result), "csv", "text/csv"),
        ("Kernels (.npz)", lambda: runs.kernels_to_npz(result), "npz", "application/octet-stream"),
        ("Figures (.html)", lambda: figures.figures_html(result, f"kalign run {name}"), "html", "text/html"),
    ]
    row = st.container(horizontal=True)
    for label, data, extension, mime in downloads:
        row.download_button(label, data=data, file_name=f"{name}.{extension}", mime=mime, on_click="ignore",
                            icon=":material/download:", key=f"download_{extension}")


def open_saved(folder: pathlib.Path, saved: dict) -> None:
    if not saved:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    name = left.selectbox("Open a saved run", list(saved), key="open_name")
    if right.button("Open", key="open_saved", icon=":material/folder_open:"):
        try:
            ui.show_run(runs.load_run(folder / name), f"Opened the saved run {name}.")
        except (runs.RunFileError, OSError) as error:
            st.error(f"Saved run {name}: {error}", icon=":material/error:")
        else:
            st.success(f"Opened {name}: see it on the Train and Kernels pages.")


def read_upload(upload, kind: str) -> bytes:
    limit = UPLOAD_LIMIT_MB[kind]
    if upload.size > limit * 2**20:
        raise runs.RunFileError(f"{upload.name} is {upload.size / 2**20:.1f} MB; a {kind} file may be at most {limit} MB")
    return upload.getvalue()


def open_upload() -> None:
    left, right = st.columns(2)
    run_file = left.file_uploader("Run file (.json)", type=["json"], key="upload_json",
                                  max_upload_size=UPLOAD_LIMIT_MB["json"])
    kernel_file = right.file_uploader("Its kernels (.npz, optional)", type=["npz"], key="upload_npz",
                                      max_upload_size=UPLOAD_LIMIT_MB["npz"])
    if not st.button("View the uploaded run", disabled=run_file is None, key="open_upload", icon=":material/upload:"):
        return
    try:
        result = runs.result_from_json(read_upload(run_file, "json"))
        if kernel_file is not None:
            runs.attach_kernels(result, read_upload(kernel_file, "npz"))
    except runs.RunFileError as error:
        st.error(f"Upload: {error}", icon=":material/error:")
        return
    ui.show_run(result, f"Opened the uploaded run {run_file.name}.")
    st.success(f"Opened {run_file.name}: see it on the Train and Kernels pages.")


st.title("Runs")
current = ui.current_result()
folder = folder_picker()

st.header("Current run")
if current is None:
    ui.no_run_yet()
else:
    st.caption(f"{summary(CURRENT, current)['status']} · {default_name(current)}")
    save_and_download(folder, current)

st.header("Saved runs")
saved, broken = saved_runs(folder) if folder is not None else ({}, {})
if saved:
    st.dataframe([summary(name, result) for name, result in saved.items()], hide_index=True, key="runs_table")
elif folder is not None:
    st.caption(f"No saved runs in {folder} yet.")
for name, problem in broken.items():
    st.warning(f"{name} cannot be read: {problem}")
compare(saved, current)

st.header("Open a run")
if folder is not None:
    open_saved(folder, saved)
open_upload()
