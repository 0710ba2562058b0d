"""Any recorded measure across runs, in Streamlit: pick runs and a measure, see it per epoch and its
final value against a setting, with the table as CSV; and two runs' feature kernel change K − K₀ side
by side on one colour scale. The Runs page shows it for saved runs, the Sweeps page for a sweep's trials."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import streamlit as st

from kalign_app import figures, ui
from kalign_app.measure_table import (
    NO_TWIN,
    SETTING_LABELS,
    final_rows,
    lacking,
    rows_csv,
    setting_axis,
)
from kalign_core import runs
from kalign_core.results import LOG_MEASURES, MEASURE_LABELS, MODEL_NAMES, ExperimentResult


def labelled_choice(column, title: str, labels: Mapping[str, str], default: str, key: str, help: str | None = None):
    """One of `labels`' keys, shown by its label, `default` at first."""
    return column.selectbox(
        title, list(labels), index=list(labels).index(default), format_func=labels.get, key=key, help=help
    )


def any_measure(
    results: Mapping[str, ExperimentResult], key: str, noun: str, default_count: int | None, file_name: str
) -> None:
    """The picker and both views for `results` (by name; `noun` what one is, e.g. "run");
    `default_count` of them picked at first (None: all). Widget keys start with `key`."""
    names = list(results)
    picked = st.multiselect(f"{noun.capitalize()}s to compare", names, default=names[:default_count], key=f"{key}_runs")
    chosen = {name: results[name] for name in picked}
    if not chosen:
        st.caption(f"Pick {noun}s above to compare them.")
        return
    measure_column, setting_column = st.columns(2)
    measure = labelled_choice(
        measure_column,
        "Measure",
        MEASURE_LABELS,
        "alignment",
        f"{key}_measure",
        "any measure kalign records every epoch, on the probe digits for the kernel measures",
    )
    setting = labelled_choice(setting_column, "Final value against", SETTING_LABELS, "width", f"{key}_setting")
    label, setting_label, log = MEASURE_LABELS[measure], SETTING_LABELS[setting], measure in LOG_MEASURES
    absent = lacking(chosen, measure)
    for why, models in absent.items():
        hint = "" if why == NO_TWIN else " (hover a point for why where it says)"
        st.caption(f"{label} is not recorded in {', '.join(models)}: {why}{hint}.")
    if log:
        st.caption("A log axis: the start, where nothing has moved yet (exactly 0), is not drawn.")
    rows = final_rows(chosen)
    left, right = st.columns(2)
    left.plotly_chart(
        figures.overlay_figure(
            chosen, measure, figures.two_line_title(label, "(slow dotted, regular solid)"), "", log=log
        ),
        key=f"{key}_overlay",
    )
    right.plotly_chart(
        figures.setting_figure(rows, setting, measure, setting_label, label, setting_axis(rows, setting), log=log),
        key=f"{key}_final",
    )
    undefined = [f"{row['run']} · {row['model']}" for row in rows if row[measure] is None]
    if undefined and set(undefined) != {model for models in absent.values() for model in models}:
        st.caption(f"Left out of the chart on the right (no value at the last epoch): {', '.join(undefined)}.")
    st.dataframe(
        [
            {
                noun: row["run"],
                "model": row["model"],
                "epoch": row["epoch"],
                setting_label: row[setting],
                label: row[measure],
            }
            for row in rows
        ],
        hide_index=True,
        key=f"{key}_table",
    )
    st.download_button(
        "Final values of every measure (.csv)",
        data=rows_csv(rows),
        file_name=file_name,
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key=f"{key}_download",
        help=f"one row per {noun} and model: its settings and each measure at its last epoch (empty where undefined)",
    )


def with_kernels(name: str, result: ExperimentResult, folder: pathlib.Path | None) -> ExperimentResult | str:
    """`result` with its kernels (read from `folder`/`name` when not in memory), or why there are none, in words."""
    if result.kernels[MODEL_NAMES[0]]:
        return result
    path = folder / name / runs.KERNELS_NPZ if folder is not None else None
    if path is None or not path.is_file():
        return f"{name} has no kernels saved: its kernel change cannot be drawn."
    loaded = result.copy()
    try:
        runs.attach_kernels(loaded, path)
    except (runs.RunFileError, OSError):
        ui.log.exception("kernels of %s cannot be read", path)
        return f"The kernels of {name} cannot be read; the details are in the server's log."
    return loaded


def kernel_change_pair(
    results: Mapping[str, ExperimentResult], key: str, noun: str, folder: pathlib.Path | None
) -> None:
    """Two runs' K − K₀ of one model side by side on one colour scale (`noun`: what a run is called,
    its kernels read from `folder`/name when not in memory); a run without kernels is said so."""
    names = list(results)
    if len(names) < 2:
        st.caption(f"Two {noun}s are needed to set their kernel changes side by side.")
        return
    first, second, model_column = st.columns([2, 2, 1])
    pair = (
        first.selectbox("Left", names, index=0, key=f"{key}_left"),
        second.selectbox("Right", names, index=1, key=f"{key}_right"),
    )
    model = model_column.radio("Model", MODEL_NAMES, index=1, key=f"{key}_model")
    if pair[0] == pair[1]:
        st.caption(f"Pick two different {noun}s.")
        return
    loaded = {name: with_kernels(name, results[name], folder) for name in pair}
    problems = [problem for problem in loaded.values() if isinstance(problem, str)]
    for problem in problems:
        st.info(problem, icon=":material/info:")
    if problems:
        return
    st.caption(
        f"The {model} model's feature kernel change K − K₀ at each {noun}'s last epoch, on one colour scale "
        "(symmetric around 0, saturating at the 99th percentile of |K − K₀| over both): a pale map moved little."
    )
    widths = {result.config.width for result in loaded.values()}
    if len(widths) > 1:
        st.caption(
            "These differ in width: the feature kernel ΦΦᵀ sums over the hidden units, so it and its change "
            "grow with the width. The scale-free distance 1 − ρ(K, K₀) (a measure above) compares across widths."
        )
    for side, column, figure in zip(
        ("left", "right"), st.columns(2), figures.kernel_change_pair(loaded, model).values()
    ):
        column.plotly_chart(figure, key=f"{key}_kernel_{side}")
