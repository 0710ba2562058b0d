"""Runs page: runs saved on disk, compared side by side; save, download or open a run again."""

import pathlib

import streamlit as st

from kalign_app import environment, figures, measure_view, navigation, params, ui
from kalign_core import runs
from kalign_core.results import MODEL_NAMES

navigation.require_app()

MB = 2**20
# A run file of any accepted config fits (server.maxUploadSize in .streamlit/config.toml agrees);
# a run .json and its kernels .npz are the downloads of kalign before run files.
UPLOAD_LIMIT_MB = {"kalign": runs.MAX_RUN_FILE_BYTES // MB, "json": runs.MAX_RUN_JSON_BYTES // MB, "npz": 50}
CURRENT = "current run"
OPENED = "runs_page_opened"  # the message of a run just opened, shown after the rerun that shows it


def default_name(result) -> str:
    """The settings that tell runs apart at a glance, in a folder name; parametrization, lazy scale
    and twin only where not at their defaults."""
    c = result.config
    digits = "v".join(map(str, c.digits))
    name = f"{digits}-w{c.width}-lr{c.slow_lr:g}-{c.regular_lr:g}-e{result.epochs_done}-seed{c.seed}"
    if c.parametrization != "standard":
        name += f"-{c.parametrization}"
    if c.lazy_scale is not None:
        name += f"-alpha{c.lazy_scale:g}"
    return name + ("-twin" if c.linearized_twin else "")


# Shown rounded; the numbers themselves stay exact (downloads, sorting).
SUMMARY_FORMATS = {
    **{f"{model} test error %": st.column_config.NumberColumn(format="%.1f") for model in MODEL_NAMES},
    **{f"{model} ρ": st.column_config.NumberColumn(format="%.3f") for model in MODEL_NAMES},
    **{f"{model} Θ ρ": st.column_config.NumberColumn(format="%.3f") for model in MODEL_NAMES},
    **{f"{model} hidden change": st.column_config.NumberColumn(format="%.2e") for model in MODEL_NAMES},
    **{column: st.column_config.NumberColumn(format="%g") for column in ("slow lr", "regular lr")},
}


def summary(name: str, result) -> dict:
    c = result.config
    row = {
        "run": name,
        "digits": ", ".join(map(str, c.digits)),
        "width": c.width,
        "slow lr": c.slow_lr,
        "regular lr": c.regular_lr,
        "epochs": f"{result.epochs_done}/{c.epochs}",
        "batch": c.batch_size,
        "seed": c.seed,
        "parametrization": c.parametrization,
        "lazy α": "off" if c.lazy_scale is None else f"{c.lazy_scale:g}",
        "twin": "on" if c.linearized_twin else "off",
        "data": result.source,
    }
    for model in MODEL_NAMES:
        last = result.history[model][-1]
        row[f"{model} test error %"] = last.test_error
        row[f"{model} ρ"] = last.alignment
        row[f"{model} Θ ρ"] = last.tangent_alignment
        row[f"{model} hidden change"] = last.hidden_change
    diverged = [m for m in MODEL_NAMES if result.diverged_at[m] is not None]
    row["status"] = "stopped" if result.stopped else f"{', '.join(diverged)} diverged" if diverged else "finished"
    return row


def provenance_line(result) -> str:
    """What decides the run's numbers to the last bit, in a line."""
    p = result.provenance
    if not p:
        return "Provenance: not recorded (saved by an earlier kalign)."
    threads = p.get("torch_threads")
    parts = [
        f"torch {p.get('torch', '?')}",
        f"{threads} torch thread{'s' if threads != 1 else ''}",
        f"device {p.get('device', '?')}",
        f"CPU {p.get('cpu', '?')}",
        f"numpy {p.get('numpy', '?')}",
    ]
    return "Computed with " + " · ".join(parts) + ": runs agree to the last bit only where all of these do."


def folder_picker() -> pathlib.Path | None:
    base = environment.runs_base()
    text = st.text_input(
        "Runs folder",
        value=st.session_state.get("runs_dir", str(base)),
        help=f"{base} (set by KALIGN_RUNS_DIR) or a folder inside it",
    )
    try:
        folder = params.runs_folder(text, base)
    except ValueError as error:
        st.error(f"Runs folder: {error}", icon=":material/error:")
        return None
    st.session_state.runs_dir = text
    return folder


def compare(saved: dict, current, folder: pathlib.Path | None) -> None:
    choices = ({CURRENT: current} if current is not None else {}) | saved
    if not choices:
        st.caption("Save a run or two to compare them here.")
        return
    st.subheader("Any measure, across runs")
    measure_view.any_measure(choices, "overlay", "run", 2, "kalign-runs-final-values.csv")
    st.subheader("Kernel change K − K₀, side by side")
    measure_view.kernel_change_pair(choices, "pair", "run", folder)


def save_and_download(folder: pathlib.Path | None, result) -> None:
    name = default_name(result)
    if folder is not None:
        with st.form("save_run"):
            text = st.text_input("Save the current run as", value=name, key="save_name")
            if st.form_submit_button("Save", icon=":material/save:"):
                try:
                    path = params.run_path(folder, text)
                    if path.exists():
                        raise ValueError(
                            f"a run named {path.name!r} already exists in this folder; choose another name"
                        )
                    runs.save_run(result, path)
                except (ValueError, OSError) as error:
                    st.error(f"Run name: {error}", icon=":material/error:")
                else:
                    st.success(f"Saved as {path.name}", icon=":material/check:")
    downloads = [
        ("Run file (.kalign)", lambda: runs.run_file(result), "kalign", "application/zip"),
        ("Histories (.csv)", lambda: runs.history_csv(result), "csv", "text/csv"),
        ("Figures (.html)", lambda: figures.figures_html(result, f"kalign run {name}"), "html", "text/html"),
    ]
    row = st.container(horizontal=True)
    for label, data, extension, mime in downloads:
        row.download_button(
            label,
            data=data,
            file_name=f"{name}.{extension}",
            mime=mime,
            on_click="ignore",
            icon=":material/download:",
            key=f"download_{extension}",
        )
    st.caption(
        "The run file holds the settings, histories and kernels (in float16) of every epoch: upload it "
        "below to view the run again. The Kernels page downloads them in full float32; Save also keeps "
        "the weights."
    )


def show_opened(result, where: str, name: str) -> None:
    """Make `result` the current run and rerun, so that the page above shows it too."""
    ui.show_run(result, f"Opened {where} {name}.")
    st.session_state[OPENED] = f"Opened {name}: see it on the Train and Kernels pages."
    st.rerun()


def open_saved(folder: pathlib.Path, saved: dict) -> None:
    if not saved:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    name = left.selectbox("Open a saved run", list(saved), key="open_name")
    if right.button("Open", key="open_saved", icon=":material/folder_open:"):
        try:
            result = runs.load_run(folder / name)
        except (runs.RunFileError, OSError) as error:
            st.error(f"Saved run {name}: {error}", icon=":material/error:")
        else:
            show_opened(result, "the saved run", name)


def read_upload(upload, kind: str) -> bytes:
    limit = UPLOAD_LIMIT_MB[kind]
    if upload.size > limit * MB:
        raise runs.RunFileError(f"{upload.name} is {upload.size / MB:.1f} MB; a {kind} file may be at most {limit} MB")
    return upload.getvalue()


def read_uploaded_run(run_file, kernel_file):
    """The run in a run file (.kalign), or in a run .json (from earlier kalign versions) with its
    kernels .npz if given."""
    if run_file.name.lower().endswith(runs.RUN_FILE_SUFFIX):
        if kernel_file is not None:
            raise runs.RunFileError(f"{run_file.name} holds its kernels already: remove {kernel_file.name}")
        return runs.read_run_file(read_upload(run_file, "kalign"))
    result = runs.result_from_json(read_upload(run_file, "json"))
    if kernel_file is not None:
        runs.attach_kernels(result, read_upload(kernel_file, "npz"))
    return result


def open_upload() -> None:
    left, right = st.columns(2)
    run_file = left.file_uploader(
        "Run file (.kalign, or a run .json)",
        type=["kalign", "json"],
        key="upload_json",
        max_upload_size=UPLOAD_LIMIT_MB["kalign"],
    )
    kernel_file = right.file_uploader(
        "Its kernels (.npz, only beside a .json)",
        type=["npz"],
        key="upload_npz",
        max_upload_size=UPLOAD_LIMIT_MB["npz"],
    )
    if not st.button("View the uploaded run", disabled=run_file is None, key="open_upload", icon=":material/upload:"):
        return
    try:
        result = read_uploaded_run(run_file, kernel_file)
    except runs.RunFileError as error:
        st.error(f"Upload: {error}", icon=":material/error:")
        return
    show_opened(result, "the uploaded run", run_file.name)


st.title("Runs")
current = ui.current_result()
folder = folder_picker()

st.header("Current run")
ui.run_state(current, on_runs_page=True)
if current is not None:
    st.caption(f"{summary(CURRENT, current)['status']} · {default_name(current)}")
    st.caption(provenance_line(current))
    save_and_download(folder, current)

st.header("Saved runs")
saved, broken = runs.saved_runs(folder) if folder is not None else ({}, {})
if saved:
    st.dataframe(
        [summary(name, result) for name, result in saved.items()],
        hide_index=True,
        key="runs_table",
        column_config=SUMMARY_FORMATS,
    )
elif folder is not None:
    st.caption("No saved runs yet.")
for name, problem in broken.items():
    st.warning(f"{name} cannot be read: {problem}")
compare(saved, current, folder)

st.header("Open a run")
if OPENED in st.session_state:
    st.success(st.session_state.pop(OPENED), icon=":material/check:")
if folder is not None:
    open_saved(folder, saved)
open_upload()
