"""Sweeps page: every digit pair × width × lr ratio × seed in one go, with live progress, then the
patterns: which pairs feature learning helps most, and how that changes with width and lr ratio."""

import dataclasses
import pathlib

import streamlit as st

from kalign_app import environment, figures, measure_view, navigation, params, sweep_runs, ui
from kalign_core import runs
from kalign_core.config import MAX_EPOCHS, ConfigError
from kalign_core.devices import cpu_count
from kalign_core.sweep.options import BLOCK_THREADS
from kalign_core.sweep.spec import SweepSpec, pairs_among, summary_csv

navigation.require_app()

WIDTHS = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
RATIOS = [0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0]
MAX_SEEDS = 20
ALL = "all (mean)"
# The sweep's own settings; the other experiment settings come from the Train page.
DEFAULTS = {
    "digits": list(range(10)),
    "pairs": [],
    "widths": [256],
    "ratios": [0.1],
    "seeds": 1,
    "epochs": 10,
    "workers": max(1, cpu_count() // BLOCK_THREADS),  # as the command line's sweep: see sweep/options.py
    "name": "",
    "keep_all": False,
}


# What the sweep's settings are called here: its own controls, and the Train page's for the rest.
SWEEP_LABELS = {
    **{field: f"{label} (Train page)" for field, label in params.FIELD_LABELS.items()},
    "digits": "Digits",
    "width": "Hidden widths",
    "slow_lr": "Slow / regular learning rate ratios",
    "seed": "Seeds",
    "epochs": "Epochs",
}


# The trial table shows numbers rounded; the summary CSV keeps them exact.
TABLE_FORMATS = {
    **{
        f"{when}_alignment_{model}": st.column_config.NumberColumn(format="%.4f")
        for when in ("initial", "final")
        for model in ("slow", "regular")
    },
    "alignment_gain": st.column_config.NumberColumn(format="%+.4f"),
    **{f"test_error_{model}": st.column_config.NumberColumn(format="%.1f") for model in ("slow", "regular")},
    "seconds": st.column_config.NumberColumn(format="%.1f"),
    **{column: st.column_config.NumberColumn(format="%g") for column in ("lr_ratio", "slow_lr", "regular_lr")},
}


def key(field: str) -> str:
    return f"sweep_{field}"


def default_name(spec: SweepSpec) -> str:
    widths = "-".join(map(str, spec.widths))
    ratios = "-".join(f"{r:g}" for r in spec.ratios)
    return f"{len(spec.pairs)}pairs-w{widths}-r{ratios}-s{len(spec.seeds)}-e{spec.base.epochs}"


def pair_label(pair) -> str:
    return f"{pair[0]} vs {pair[1]}"


def axes_form() -> tuple[SweepSpec | None, pathlib.Path | None, int]:
    """The axes and where the sweep goes; errors are drawn here and give (None, None, workers)."""
    st.multiselect(
        "Digits",
        list(range(10)),
        key=key("digits"),
        help="the sweep runs every pair among these digits (all ten: all 45 pairs)",
    )
    choosable = pairs_among(st.session_state[key("digits")]) if len(st.session_state[key("digits")]) >= 2 else ()
    st.session_state[key("pairs")] = [p for p in st.session_state[key("pairs")] if tuple(p) in choosable]
    st.multiselect(
        "Only these pairs",
        choosable,
        key=key("pairs"),
        format_func=pair_label,
        placeholder="all pairs among the digits",
    )
    st.multiselect(
        "Hidden widths",
        WIDTHS,
        key=key("widths"),
        help="one trial per width: the wider the network, the less its features need to move",
    )
    st.multiselect(
        "Slow / regular learning rate ratios",
        RATIOS,
        key=key("ratios"),
        format_func=lambda r: {0.0: "0 (random features)", 1.0: "1 (both the same)"}.get(r, f"{r:g}"),
        help="the slow model's hidden layer learns at ratio × the regular learning rate",
    )
    left, right = st.columns(2)
    left.number_input("Seeds", 1, MAX_SEEDS, key=key("seeds"), help="seeds 0, 1, …: the spread over them is the noise")
    right.number_input("Epochs", 1, MAX_EPOCHS, key=key("epochs"))
    left.number_input(
        "Parallel workers",
        1,
        cpu_count(),
        key=key("workers"),
        help="processes training at once, each a block of the trials as one batched computation on its share "
        f"of the cores (at most {BLOCK_THREADS} torch threads); a resumed sweep keeps the thread count it had",
    )
    right.text_input(
        "Sweep name",
        key=key("name"),
        placeholder="from the axes",
        help="a folder in the server's sweeps folder; the same name resumes a sweep",
    )
    st.checkbox(
        "Keep all kernels and weights",
        key=key("keep_all"),
        help="by default each trial keeps its histories and the kernels of its first and last epoch (under "
        "1 MB); all of them take about 4.5 MB a trial at width 256 and 10 epochs. A resumed sweep keeps "
        "what it kept before",
    )
    s = sweep_runs.remember_form("sweep", DEFAULTS)
    workers = s["workers"]
    errors = [
        f"{label}: choose at least one"
        for label, field in (("Hidden widths", "widths"), ("Learning rate ratios", "ratios"))
        if not s[field]
    ]
    if len(s["digits"]) < 2:
        errors.append("Digits: choose at least two")
    spec = None
    try:
        base = params.config_from_settings(ui.settings())
        if not errors:
            spec = SweepSpec(
                dataclasses.replace(base, epochs=s["epochs"]),
                tuple(s["pairs"]) or choosable,
                tuple(sorted(s["widths"])),
                tuple(sorted(s["ratios"])),
                tuple(range(s["seeds"])),
            )
    except params.SettingsError as error:
        errors.append(f"The Train page's settings are not valid ({error}); fix them there")
    except ConfigError as error:  # e.g. the sweep's epochs with the Train page's probe size
        errors.append(params.capitalised(error.describe(SWEEP_LABELS)))
    if errors:
        for message in errors:
            st.error(message, icon=":material/error:")
        return None, None, workers
    st.caption(
        f"Each trial also uses the Train page's settings: regular learning rate {base.regular_lr:g}, batch "
        f"{base.batch_size}, probe {base.probe_size} digits, data {base.source}, device {base.device}, linearized "
        f"twin {'on' if base.linearized_twin else 'off'}."
    )
    try:
        folder = params.run_path(environment.sweeps_base(), s["name"] or default_name(spec))
    except ValueError as error:
        st.error(f"Sweep name: {error}", icon=":material/error:")
        return spec, None, workers
    return spec, folder, workers


def live_gain(summaries) -> None:
    st.plotly_chart(figures.pair_heatmap(summaries, "alignment_gain", "Alignment gain so far"), key="live_gain")


# -- results ---------------------------------------------------------------------------------------


def only(summaries, field: str, label: str):
    """A chooser for one value of `field` (or all of them, averaged) when the sweep has several."""
    values = sorted({getattr(s, field) for s in summaries})
    if len(values) < 2:
        return summaries
    chosen = st.selectbox(label, [ALL, *values], key=key(f"only_{field}"))
    return summaries if chosen == ALL else [s for s in summaries if getattr(s, field) == chosen]


def open_trial(folder: pathlib.Path, summaries) -> None:
    gains = {s.trial_id: s.alignment_gain for s in summaries}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    trial = left.selectbox(
        "Open a trial",
        list(gains),
        key=key("trial"),
        format_func=lambda t: t if gains[t] is None else f"{t} (gain {gains[t]:+.4f})",
    )
    if right.button("Open on the Kernels page", icon=":material/grid_on:", key="open_trial"):
        try:
            result = runs.load_run(folder / trial)
        except (runs.RunFileError, OSError) as error:
            st.error(f"Trial {trial}: {error}", icon=":material/error:")
            return
        ui.show_run(result, f"Opened trial {trial} of the sweep {folder.name}.")
        st.switch_page(navigation.KERNELS)


def results() -> None:
    chosen = sweep_runs.chosen_sweep(
        key("open"), "No sweeps yet: choose the axes and press Run, or run `python -m kalign_core sweep`."
    )
    if chosen is None:
        return
    folder, summaries = chosen
    if not summaries:
        st.caption("No trial of this sweep has finished yet.")
        return
    st.caption(
        "Alignment gain = how much further the regular model's features moved toward the task than the "
        "slow model's: (final − initial ρ, regular) − (final − initial ρ, slow)."
    )
    width_column, ratio_column, model_column = st.columns(3)
    with width_column:
        # The parametrization chosen applies to the trends too: their lines average seeds, not scalings.
        scaled = only(summaries, "parametrization", "Parametrization shown")
        filtered = only(scaled, "width", "Width shown")
    with ratio_column:
        filtered = only(filtered, "lr_ratio", "Learning rate ratio shown")
    model = model_column.radio("Test error of", ["regular", "slow"], horizontal=True, key=key("error_model"))
    left, right = st.columns(2)
    left.plotly_chart(
        figures.pair_heatmap(filtered, "alignment_gain", "Alignment gain per digit pair"), key="gain_matrix"
    )
    right.plotly_chart(
        figures.pair_heatmap(
            filtered, f"test_error_{model}", f"Final test error % ({model} model)", colorscale="Viridis", zmid=None
        ),
        key="error_matrix",
    )
    left, right = st.columns(2)
    trends = (
        (left, "width", "lr_ratio", "width", "ratio", True),
        (right, "lr_ratio", "width", "lr ratio", "width", min(s.lr_ratio for s in scaled) > 0),
    )
    for column, x, line, x_title, line_title, log_x in trends:
        if len({getattr(s, x) for s in scaled}) > 1:
            column.plotly_chart(
                figures.sweep_trend_figure(scaled, x, line, x_title, line_title, log_x), key=f"gain_vs_{x}"
            )
        else:
            column.caption(f"Sweep more than one {x_title} to see the gain against it.")
    st.dataframe(
        [dataclasses.asdict(s) for s in summaries], hide_index=True, key="sweep_table", column_config=TABLE_FORMATS
    )
    open_trial(folder, summaries)
    st.download_button(
        "Summary (.csv)",
        data=summary_csv(summaries),
        file_name=f"{folder.name}-summary.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key="download_summary",
    )
    any_measure(folder, summaries)


def any_measure(folder: pathlib.Path, summaries) -> None:
    """Any recorded measure over the sweep's finished trials, and two trials' kernel changes."""
    st.subheader("Any measure, across trials")
    finished = {s.trial_id for s in summaries}
    trials, broken = runs.saved_runs(folder)
    for trial in broken:
        ui.log.warning("sweep %s: trial %s cannot be read: %s", folder, trial, broken[trial])
        st.warning(f"Trial {trial} cannot be read; the details are in the server's log.")
    trials = {trial: result for trial, result in trials.items() if trial in finished}
    measure_view.any_measure(trials, key("measure"), "trial", None, f"{folder.name}-final-values.csv")
    st.subheader("Kernel change K − K₀ of two trials")
    measure_view.kernel_change_pair(trials, key("pair"), "trial", folder)


st.title("Sweeps")
st.caption(
    "Many runs at once: every pair of the chosen digits, at each width, learning-rate ratio and seed. "
    "Each trial is saved, so a sweep stopped or interrupted resumes where it was."
)
sweep_runs.restore_form("sweep", DEFAULTS)


def form():
    spec, folder, workers = axes_form()
    # Unticked: what the folder's sweep kept before (lean for a new one), so that resuming works.
    keep = "all" if st.session_state.sweep_settings["keep_all"] else None
    return spec, folder, workers, keep


if sweep_runs.run_panel(form, live_gain, SWEEP_LABELS, "run_sweep", "heatmap"):
    results()
