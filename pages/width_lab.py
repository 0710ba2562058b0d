"""Width lab: how each lazy-vs-rich measure scales with the hidden width under each parametrization,
on log-log axes with the fitted slope beside the theory's, and μP's coordinate check. Its runs are a
sweep like any other (saved, resumable, a summary CSV), over widths and parametrizations. Named
presets fill the form, and the form lives in the URL (kalign_app/width_lab_settings.py)."""

import dataclasses

import streamlit as st

from kalign_app import environment, figures, navigation, params, sweep_runs, ui
from kalign_app.width_lab_settings import (
    DEFAULTS,
    MAX_RATE,
    MAX_SEEDS,
    MIN_REGULAR_RATE,
    PRESETS,
    URL_PARAMS,
    WIDTHS,
    query_from_settings,
    settings_from_query,
)
from kalign_core.config import MAX_EPOCHS, ConfigError
from kalign_core.devices import cpu_count
from kalign_core.parametrization import MUP_BASE_WIDTH, PARAMETRIZATIONS
from kalign_core.results import LINEAR_MEASURES
from kalign_core.sweep.options import BLOCK_THREADS
from kalign_core.sweep.spec import ALL_PAIRS, SweepSpec, round_lr
from kalign_core.sweep.width_lab import (
    COORDINATE_MEASURES,
    INFINITE_WIDTH_MEASURE,
    LAB_MEASURES,
    THEORY_MEASURE,
    slope_text,
    width_lines,
)

navigation.require_app()

FORM_DEFAULTS = {**DEFAULTS, "name": ""}
# What a ConfigError's fields are called here.
LABELS = {
    **{field: f"{label} (Train page)" for field, label in params.FIELD_LABELS.items()},
    "digits": "Digits",
    "width": "Hidden widths",
    "slow_lr": "Slow learning rate",
    "regular_lr": "Regular learning rate",
    "seed": "Seeds",
    "epochs": "Epochs",
    "parametrization": "Parametrizations",
}
WORKERS = max(1, cpu_count() // BLOCK_THREADS)  # as the Sweeps page's default


def key(field: str) -> str:
    return f"lab_{field}"


def default_name(spec: SweepSpec) -> str:
    (a, b), base = spec.pairs[0], spec.base
    return (
        f"lab-{'-'.join(spec.parametrizations)}-w{'-'.join(map(str, spec.widths))}-{a}v{b}"
        f"-lr{base.slow_lr:g}-{base.regular_lr:g}-s{len(spec.seeds)}-e{base.epochs}"
    )


def from_link() -> None:
    """On the lab's first draw in a session, its settings come from the URL (a preset, lab_* values);
    what the URL got wrong is said in words, and those settings keep their defaults."""
    if "lab_settings" in st.session_state:
        return
    settings, _, warnings = settings_from_query(st.query_params.to_dict())
    st.session_state["lab_settings"] = {**settings, "name": ""}
    st.session_state["lab_url_warnings"] = warnings


def apply_preset() -> None:
    """Fill the form with the chosen preset (a callback: it runs before the widgets are drawn)."""
    chosen = st.session_state[key("preset")]
    if chosen is not None:
        for field, value in PRESETS[chosen].settings.items():
            st.session_state[key(field)] = value


def mirror_to_url(settings) -> str | None:
    """The form in the address bar, so that the address is a link to it; the preset it is, if any."""
    wanted = {name: value for name, value in st.query_params.to_dict().items() if name not in URL_PARAMS}
    lab = query_from_settings(settings)
    wanted.update(lab)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    return lab.get("preset")


def lab_form():
    """The lab's settings and where its sweep goes; errors are drawn here and give (None, None)."""
    for warning in st.session_state.pop("lab_url_warnings", []):
        st.warning(warning, icon=":material/link_off:")
    # The preset shown is the one the form is (none once a setting was changed from it).
    form_now = {field: st.session_state[key(field)] for field in FORM_DEFAULTS}
    st.session_state[key("preset")] = query_from_settings(form_now).get("preset")
    st.selectbox(
        "Preset",
        [None, *PRESETS],
        key=key("preset"),
        format_func=lambda name: "choose one to fill the form" if name is None else PRESETS[name].title,
        on_change=apply_preset,
        help="named settings to link a class to: the address bar holds the form, so copy it as the link",
    )
    st.multiselect("Parametrizations", PARAMETRIZATIONS, key=key("parametrizations"))
    st.multiselect("Hidden widths", WIDTHS, key=key("widths"), help="log-spaced: each a power of two")
    st.selectbox("Digits", ALL_PAIRS, key=key("pair"), format_func=lambda p: f"{p[0]} vs {p[1]}")
    left, right = st.columns(2)
    left.number_input(
        "Slow learning rate", 0.0, MAX_RATE, key=key("slow_lr"), format="%g", help="the slow model's hidden layer"
    )
    right.number_input(
        "Regular learning rate",
        MIN_REGULAR_RATE,
        MAX_RATE,
        key=key("regular_lr"),
        format="%g",
        help="the regular model, and both readouts",
    )
    left.number_input("Epochs", 1, MAX_EPOCHS, key=key("epochs"))
    right.number_input("Seeds", 1, MAX_SEEDS, key=key("seeds"), help="seeds 0, 1, …: the error bars")
    st.text_input(
        "Sweep name",
        key=key("name"),
        placeholder="from the settings",
        help="a folder in the server's sweeps folder; the same name resumes a sweep",
    )
    s = sweep_runs.remember_form("lab", FORM_DEFAULTS)
    preset = mirror_to_url(s)
    if preset is not None:
        st.caption(f"**{PRESETS[preset].title}**: {PRESETS[preset].about}")
    errors = [
        f"{label}: choose at least one"
        for label, field in (("Parametrizations", "parametrizations"), ("Hidden widths", "widths"))
        if not s[field]
    ]
    if s["slow_lr"] > s["regular_lr"]:
        errors.append("Slow learning rate: at most the regular learning rate")
    spec = None
    try:
        base = params.config_from_settings(ui.settings())
        if not errors:
            base = dataclasses.replace(base, epochs=s["epochs"], regular_lr=s["regular_lr"], slow_lr=s["slow_lr"])
            spec = SweepSpec(
                base,
                (tuple(s["pair"]),),
                tuple(sorted(s["widths"])),
                (round_lr(s["slow_lr"] / s["regular_lr"]),),
                tuple(range(s["seeds"])),
                tuple(p for p in PARAMETRIZATIONS if p in s["parametrizations"]),
            )
    except params.SettingsError as error:
        errors.append(f"The Train page's settings are not valid ({error}); fix them there")
    except ConfigError as error:
        errors.append(params.capitalised(error.describe(LABELS)))
    if errors:
        for message in errors:
            st.error(message, icon=":material/error:")
        return None, None
    st.caption(
        f"Each trial also uses the Train page's settings: batch {base.batch_size}, probe {base.probe_size} "
        f"digits, data {base.source}, device {base.device}, linearized twin {'on' if base.linearized_twin else 'off'} "
        "(the gap from the twin is measured only with it on)."
    )
    try:
        return spec, params.run_path(environment.sweeps_base(), s["name"] or default_name(spec))
    except ValueError as error:
        st.error(f"Sweep name: {error}", icon=":material/error:")
        return spec, None


# -- results ---------------------------------------------------------------------------------------


def not_recorded(measure) -> str:
    """Why no trial of a sweep has `measure`, in words."""
    if measure.name in LINEAR_MEASURES:
        return "measured only in trials trained with the linearized twin"
    if measure.name == INFINITE_WIDTH_MEASURE:
        return "defined under ntk and μP only (under standard the tangent kernel grows without limit)"
    return "saved before kalign measured it"


def lines_chart(summaries, measure, chart_key: str) -> list:
    """`measure` against width, with each line's slope in words below; the lines drawn."""
    lines = width_lines(summaries, measure)
    if not lines:
        st.caption(f"{measure.label}: not recorded by this sweep's trials ({not_recorded(measure)}).")
        return lines
    st.plotly_chart(figures.width_figure(lines, f"{measure.label} vs width", measure.label), key=chart_key)
    return lines


def slope_notes(lines) -> None:
    notes = []
    for line in lines:
        model = "" if line.model is None else f" · {line.model}"
        left_out = f" ({line.left_out} trial(s) left out: diverged or undefined)" if line.left_out else ""
        notes.append(f"- **{line.parametrization}{model}**: {slope_text(line)}{left_out}")
    st.markdown("\n".join(notes))


def draw_lab(summaries) -> None:
    measure = LAB_MEASURES[
        st.selectbox(
            "Measure at the last epoch",
            list(LAB_MEASURES),
            key=key("measure"),
            format_func=lambda name: LAB_MEASURES[name].label,
        )
    ]
    lines = lines_chart(summaries, measure, "lab_chart")
    slope_notes(lines)
    lines_are, same_start = (
        (
            "one line per parametrization, of the start both models share (dashed)",
            " μP's Θ₀, weighted by its learning rates, is ntk's, so their lines lie on top of each other.",
        )
        if measure.models == ("init",)
        else ("one line per parametrization and model (slow dotted, regular solid)", "")
    )
    st.caption(
        f"{lines_are.capitalize()}, mean ± spread over seeds; the slope is a straight line fitted to the means on "
        "log-log axes. Theory gives a slope for two measures only: the relative hidden-weight change "
        f"({LAB_MEASURES[THEORY_MEASURE].label}), −½ under ntk and 0 under μP, and Θ₀'s distance to Θ∞, −½ "
        f"(the finite kernel is a sum over units).{same_start}"
    )
    st.subheader("Coordinate check")
    st.caption(
        "μP's check (Yang & Hu; mup's coord check): the regular model's mean size of the hidden "
        "pre-activations and of the outputs on the probe digits after t SGD steps, t = 0 (initialisation, "
        "dashed) to 4, and at the end of the run, one panel per parametrization. A parametrization passes "
        "when these lines stay flat in width (slope near 0) from step to step; sizes that grow with width "
        "step after step fail it. (At initialisation μP's readout multiplier, "
        f"σ·√{MUP_BASE_WIDTH}/width, makes its outputs shrink like width^−½ by construction.)"
    )
    for name, measure in COORDINATE_MEASURES.items():
        lines = width_lines(summaries, measure)
        if not lines:
            st.caption(f"{measure.label}: not recorded by this sweep's trials ({not_recorded(measure)}).")
            continue
        st.plotly_chart(figures.coordinate_figure(lines, measure), key=f"lab_{name}")


def results() -> None:
    chosen = sweep_runs.chosen_sweep(key("open"), "No sweeps yet: choose the settings and press Run.")
    if chosen is None:
        return
    _, summaries = chosen
    if len({s.width for s in summaries}) < 2:
        st.caption("This sweep has fewer than two widths: nothing to draw against width.")
        return
    draw_lab(summaries)


def live_lines(summaries) -> None:
    lines = width_lines(summaries, LAB_MEASURES[THEORY_MEASURE])
    st.plotly_chart(figures.width_figure(lines, "Hidden-weight change so far", "‖W − W₀‖ / ‖W₀‖"), key="lab_live")


st.title("Width lab")
st.caption(
    "Train the slow and the regular model at many widths under each parametrization and see how far they "
    "move against width on log-log axes, with the slope theory expects. The runs are a sweep: saved, resumable, "
    "and on the Sweeps page too."
)
from_link()
sweep_runs.restore_form("lab", FORM_DEFAULTS)
if sweep_runs.run_panel(lambda: (*lab_form(), WORKERS, None), live_lines, LABELS, "run_lab", "chart"):
    results()
