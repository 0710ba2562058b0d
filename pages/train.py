"""Train page: choose the experiment, watch both models train live, read what happened."""

import time

import streamlit as st

from kalign_app import figures, navigation, params, ui, wording
from kalign_core.config import SETTINGS
from kalign_core.parametrization import DESCRIPTIONS, PARAMETRIZATIONS
from kalign_core.results import MODEL_NAMES

navigation.require_app()

SOURCES = {
    "auto": "auto (MNIST if here, else sample)",
    "mnist": "full MNIST (70,000)",
    "sample": "bundled sample (5,000)",
}
PARAMETRIZATION_NAMES = {"standard": "standard (PyTorch)", "ntk": "NTK", "mup": "μP (mean-field)"}
# Whole-number settings are entered as floats so that 2.5 is refused, not silently cut to 2.
WHOLE_NUMBERS = ("width", "epochs", "batch_size", "probe_size")
# The lazy scale's slider: log-spaced steps from the plain scale to the very lazy.
LAZY_SCALES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
LAZY_SCALE_FIRST_SHOWN = 100.0


key = ui.form_key


def described(field: str) -> dict:
    """A widget's label and help: the setting's own (ExperimentConfig's field metadata)."""
    return dict(label=SETTINGS[field].label, help=SETTINGS[field].help)


def widget_value(field: str, value):
    if field == "lazy_scale":  # the slider keeps a value while the switch is off
        return LAZY_SCALE_FIRST_SHOWN if value is None else value
    return float(value) if field in WHOLE_NUMBERS and isinstance(value, int) else value


def setting_value(field: str, value):
    """A whole number typed as 3.0 is the setting 3; 2.5 stays 2.5 for the check to refuse."""
    if field in WHOLE_NUMBERS and isinstance(value, float) and value.is_integer():
        return int(value)
    return sorted(value) if field == "digits" else value


def restore_form() -> None:
    """The form shows the session's settings (Streamlit forgets widgets of pages not drawn)."""
    for field, value in ui.settings().items():
        st.session_state.setdefault(key(field), widget_value(field, value))
    st.session_state.setdefault(ui.switch_key("lazy_scale"), ui.settings()["lazy_scale"] is not None)


def on_change() -> None:
    """Every change becomes the session's settings at once, so problems show before Train."""
    current = ui.settings()
    settings = {field: setting_value(field, st.session_state.get(key(field), current[field])) for field in SETTINGS}
    if not st.session_state.get(ui.switch_key("lazy_scale")):
        settings["lazy_scale"] = None
    elif settings["lazy_scale"] is None:  # switched on while the slider was not drawn
        settings["lazy_scale"] = LAZY_SCALE_FIRST_SHOWN
    ui.set_settings(settings, from_form=True)


def on_train() -> None:
    """Runs before the rerun, so the page already draws the new job (and a disabled Train button)."""
    try:
        config = params.config_from_settings(ui.settings())
    except params.SettingsError:
        return  # the problems are drawn under the form; nothing trains, the last run stays
    ui.start_training(config)
    # The run that follows waits briefly for the job (see live_run); a cached result needs no wait.
    st.session_state.just_pressed = st.session_state.get("job") is not None


def settings_form(running: bool) -> None:
    restore_form()
    devices, auto_uses = ui.device_choices(st.session_state[key("device")])
    if st.session_state[key("device")] not in devices:
        st.session_state[key("device")] = "auto"
    changed = dict(on_change=on_change)
    st.multiselect(**described("digits"), options=list(range(10)), key=key("digits"), **changed)
    st.number_input(**described("width"), step=100.0, format="%g", key=key("width"), **changed)
    left, right = st.columns(2)
    left.number_input(**described("slow_lr"), step=0.001, format="%g", key=key("slow_lr"), **changed)
    right.number_input(**described("regular_lr"), step=0.001, format="%g", key=key("regular_lr"), **changed)
    left.number_input(**described("epochs"), step=1.0, format="%g", key=key("epochs"), **changed)
    right.number_input(**described("batch_size"), step=50.0, format="%g", key=key("batch_size"), **changed)
    left.number_input(**described("seed"), step=1, key=key("seed"), **changed)
    right.number_input(**described("probe_size"), step=50.0, format="%g", key=key("probe_size"), **changed)
    st.selectbox(**described("source"), options=list(SOURCES), format_func=SOURCES.get, key=key("source"), **changed)
    if st.session_state[key("source")] == "auto":
        st.caption(ui.mnist_status())
    st.selectbox(
        **described("device"),
        options=devices,
        key=key("device"),
        **changed,
    )
    if auto_uses is not None and st.session_state[key("device")] == "auto":
        # A caption, not the option's label: a label that changes between runs changes the value.
        st.caption(f"'auto' trains on {auto_uses} here.")
    lazy_scale_control(changed)
    st.toggle(**described("linearized_twin"), key=key("linearized_twin"), **changed)
    st.selectbox(
        **described("parametrization"),
        options=list(PARAMETRIZATIONS),
        format_func=PARAMETRIZATION_NAMES.get,
        key=key("parametrization"),
        **changed,
    )
    st.caption(DESCRIPTIONS[st.session_state[key("parametrization")]])
    try:
        params.config_from_settings(ui.settings())
        problems = []
    except params.SettingsError as error:
        problems = error.messages()
    st.button(
        "Train",
        type="primary",
        icon=":material/play_arrow:",
        disabled=running or bool(problems),
        on_click=on_train,
        width="stretch",
        key="train",
        help="fix the settings named below first" if problems else None,
    )
    for message in problems:
        st.error(message, icon=":material/error:")
    ui.run_elsewhere()


def lazy_scale_control(changed: dict) -> None:
    st.toggle(**described("lazy_scale"), key=ui.switch_key("lazy_scale"), **changed)
    if st.session_state[ui.switch_key("lazy_scale")]:
        current = st.session_state[key("lazy_scale")]
        options = sorted({*LAZY_SCALES, current})  # a linked α between the steps stays selectable
        st.select_slider("α (log steps)", options, key=key("lazy_scale"), format_func=lambda a: f"{a:g}", **changed)


def charts(result, prefix: str) -> None:
    st.session_state.charts_drawn = True  # the browser has its charting library now
    left, right = st.columns(2)
    left.plotly_chart(figures.error_figure(result), key=f"{prefix}_error")
    right.plotly_chart(figures.alignment_figure(result), key=f"{prefix}_alignment")
    left, right = st.columns(2)
    left.plotly_chart(figures.movement_figure(result), key=f"{prefix}_movement")
    if result.kernel_machine_errors:
        right.plotly_chart(figures.machines_figure(result), key=f"{prefix}_machines")
    if result.config.linearized_twin:
        st.plotly_chart(figures.twin_figure(result), key=f"{prefix}_twin")


# Live charts are redrawn at most this often: each redraw is work for the server and more for the
# browser (Plotly), which on a small machine shares the cores with the training.
CHART_REFRESH_S = 2.0


def charted(status) -> int:
    """Which snapshot of a job the page's charts show: its epochs done, or -1 before the first."""
    return -1 if status.result is None else status.epochs_done


@st.fragment(run_every=ui.PROGRESS_REFRESH_S)
def live_progress(job) -> None:
    """Every second, what costs little: the progress bar and Stop. The charts are drawn by a run of
    the whole page, started from here when the job ended, when the first epoch arrived, or when a
    new epoch arrived and the charts are CHART_REFRESH_S old: redrawing them every second for every
    watching browser cost the server about 6 % of a core per session."""
    status = job.status()
    with ui.apology():
        draw_progress(job, status)  # first, so that a click on Stop is seen before any rerun
    shown = st.session_state.get("charted")
    news = charted(status) != shown
    stale = shown == -1 or time.monotonic() - st.session_state.charted_at >= CHART_REFRESH_S
    if not status.active or (news and stale):
        st.rerun()


def draw_progress(job, status) -> None:
    job.touch()
    total = status.config.epochs
    if status.state == "waiting":
        limit = ui.job_slots().limit
        st.info(
            f"Waiting for a free slot: {ui.slot_wait(status)}. This server trains {limit} "
            f"run{'s' if limit > 1 else ''} at a time so that each gets the CPU it needs.",
            icon=":material/hourglass_top:",
        )
    elif status.result is None:
        st.progress(0.0, text=f"Epoch 0/{total} · loading the digits and measuring the initial models…")
    else:
        done = status.epochs_done
        st.progress(done / total, text=f"Epoch {done}/{total} · {ui.time_left(status.seconds_left)}")
    if st.button("Stop", icon=":material/stop:", key="stop_training"):
        job.stop()
        st.caption("Stopping after the current batch; the epochs done are kept.")


def preload_charts() -> None:
    """For a run pressed while the training processes are still starting (a fresh server's first
    minute), which waits a second or more for its first epoch: an empty chart, hidden, lets the browser load its
    charting library (Plotly, megabytes of script) meanwhile, so that the first chart draws at once
    (loaded with that chart, it had taken 1.5 s or more). Not otherwise: parsed while the run
    trains, it would share the cores with it, and a browser that has drawn a chart has it."""
    if st.session_state.get("charts_drawn"):
        return
    st.html("<style>.st-key-chart_preload {display: none}</style>")
    with st.container(key="chart_preload"):
        st.plotly_chart({"data": [{"type": "scatter", "x": [], "y": []}], "layout": {}}, key="preload")


# The page run that follows a press of Train (only that one) waits up to this long for the run to
# end: the default run on the sample takes about a second, and its final charts then come with this
# page run; drawing its first epochs while it trains would share the cores with it (on 2 cores, one
# session's run took 1.3 to 1.8 times its time alone with a browser drawing beside it). A run whose
# first epochs say it will take longer shows them at once (see TrainingJob.first_look).
FIRST_LOOK_S = 1.5
# While the training processes start, a run has no epoch to show at FIRST_LOOK_S: the page waits up
# to this much longer for its first, which the progress fragment's next poll would show no sooner.
STARTING_GRACE_S = 1.0


def live_run(job) -> None:
    if st.session_state.pop("just_pressed", False):
        starting = not ui.workers_ready()
        if starting:
            preload_charts()
        job.first_look(FIRST_LOOK_S, grace=STARTING_GRACE_S if starting else 0.0)
        if job.done:
            st.rerun()  # the page collects the job and draws the finished run
    status = job.status()
    st.session_state.charted, st.session_state.charted_at = charted(status), time.monotonic()
    live_progress(job)
    if status.result is not None:
        charts(status.result, "live")


def outcome_notice() -> None:
    """How the last job ended, when that is news (stopped, given up, failed)."""
    status = st.session_state.get("outcome")
    if status is None or status.state == "finished":
        return
    if status.state == "failed":
        done = (
            f"It had trained {status.epochs_done} epochs, which are not kept"
            if status.epochs_done
            else "Nothing was trained"
        )
        st.error(f"Training failed: {status.error}. {done}; earlier results are kept.", icon=":material/error:")
    elif status.result is None:
        st.info("Stopped before training began; nothing was trained.")
    elif status.state == "stopped":
        st.info(
            f"Stopped after {status.epochs_done} of {status.config.epochs} epochs; the epochs done are kept.",
            icon=":material/stop_circle:",
        )
    else:
        st.warning(
            f"This run was given up after {status.epochs_done} epochs because the page stopped "
            "asking for it (the tab was closed or asleep). Press Train to run it again."
        )


def source_notice(result) -> None:
    if result.source == "sample" and result.config.source == "auto":
        why = result.source_note or "full MNIST was not on this machine (choose full MNIST to download it, about 12 MB)"
        st.info(
            f"Trained on the **bundled MNIST sample** (400 training and 100 test digits per class): {why}.",
            icon=":material/wifi_off:",
        )
    names = {"mnist": "full MNIST", "sample": "the bundled MNIST sample (400 train / 100 test per digit)"}
    st.caption(
        f"Data: {names.get(result.source, result.source)} · device {result.device} · "
        f"{result.seconds:.2f} s · digits {', '.join(map(str, result.config.digits))}"
    )


def divergence_notices(result) -> None:
    for message in wording.divergence_messages(result):
        st.error(message, icon=":material/trending_up:")


def metrics(result) -> None:
    """Final test error and alignment of each model, with the change since initialisation."""
    # One column per model, error above alignment: four metrics side by side were cut off ("50.…")
    # in a narrow window.
    for name, column in zip(MODEL_NAMES, st.columns(2)):
        first, last = result.history[name][0], result.history[name][-1]
        diverged = result.diverged_at[name] is not None
        flag = " (diverged)" if diverged else ""
        why = (
            dict(help=f"At the end of epoch {result.diverged_at[name]}, the epoch it diverged in.") if diverged else {}
        )
        column.metric(
            f"{name} · test error{flag}",
            wording.error_percent(last.test_error),
            **why,
            **wording.delta(last.test_error - first.test_error, 1, " pp", colour="inverse"),
        )
        change = result.alignment_change(name)
        if last.alignment is None:
            column.metric(f"{name} · alignment ρ{flag}", "undefined", help=last.alignment_note)
        else:
            column.metric(
                f"{name} · alignment ρ{flag}",
                wording.rho_value(last.alignment),
                **why,
                **({} if change is None else wording.delta(change, 3, "")),
            )


def finished_run(result) -> None:
    note = st.session_state.get("run_note")
    if note:
        st.success(note, icon=":material/bolt:")
    divergence_notices(result)
    metrics(result)
    st.markdown(wording.reading(result))
    st.markdown(wording.movement_reading(result))
    charts(result, "final")
    for name in MODEL_NAMES:
        undefined = figures.undefined_alignment(result, name)
        if undefined:
            where, reason = undefined
            st.caption(f"The {name} model's alignment is undefined {where} (a gap in the chart): {reason}.")
    source_notice(result)


st.title("Train two networks side by side")
try:
    st.caption(wording.page_caption(params.config_from_settings(ui.settings())))
except params.SettingsError:  # the form says what to fix; the line under the title says what always holds
    st.caption(wording.page_caption(None))
job = ui.current_job()
form_column, result_column = st.columns([1.4, 3], gap="large")
with form_column:
    settings_form(running=job is not None)
with result_column:
    if job is not None:
        live_run(job)
    else:
        outcome_notice()
        result = ui.current_result()
        if result is None:
            st.info(
                "Choose digits and settings, then press **Train**: the error and alignment curves draw "
                "themselves epoch by epoch, and you can stop at any time.",
                icon=":material/arrow_back:",
            )
        else:
            finished_run(result)
