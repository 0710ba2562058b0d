"""Train page: choose the experiment, watch both models train live, read what happened."""

import streamlit as st

import ui
from kalign_core import figures, params
from kalign_core.devices import available_devices, resolve_device
from kalign_core.training import DIVERGENCE_FACTOR, MODEL_NAMES

ui.require_app()

SOURCES = {
    "auto": "auto (MNIST, else sample)",
    "mnist": "full MNIST (70,000)",
    "sample": "bundled sample (5,000)",
}
LABELS = params.FIELD_LABELS


def key(field: str) -> str:
    return f"train_{field}"


def on_train() -> None:
    """Runs before the rerun, so the page already draws the new job (and a disabled Train button)."""
    values = {field: st.session_state[key(field)] for field in LABELS}
    values["digits"] = sorted(values["digits"])
    st.session_state.settings = values
    st.session_state.url_warnings = []
    try:
        config = params.config_from_settings(values)
    except params.SettingsError:
        return  # the errors are drawn next to the form; nothing trains, the last run stays
    ui.start_training(config)


def settings_form(running: bool) -> None:
    s = ui.settings()
    devices = ["auto", *available_devices()]
    with st.form("train_form"):
        st.multiselect(LABELS["digits"], list(range(10)), default=s["digits"], key=key("digits"),
                       help="2 to 10 digits for the models to tell apart")
        st.number_input(LABELS["width"], value=s["width"], step=100, key=key("width"),
                        help="hidden ReLU units in each model")
        left, right = st.columns(2)
        left.number_input(LABELS["slow_lr"], value=s["slow_lr"], step=0.001, format="%g", key=key("slow_lr"),
                          help="the slow model's hidden layer; 0 freezes it (random features)")
        right.number_input(LABELS["regular_lr"], value=s["regular_lr"], step=0.001, format="%g",
                           key=key("regular_lr"), help="the regular model's hidden layer and both readouts")
        left.number_input(LABELS["epochs"], value=s["epochs"], step=1, key=key("epochs"))
        right.number_input(LABELS["batch_size"], value=s["batch_size"], step=50, key=key("batch_size"))
        left.number_input(LABELS["seed"], value=s["seed"], step=1, key=key("seed"),
                          help="same seed, same initial weights and batch order")
        right.number_input(LABELS["probe_size"], value=s["probe_size"], step=50, key=key("probe_size"),
                           help="held-out digits on which kernels and alignment are measured")
        st.selectbox(LABELS["source"], list(SOURCES), index=list(SOURCES).index(s["source"]),
                     format_func=SOURCES.get, key=key("source"),
                     help="full MNIST downloads once (about 12 MB); the sample ships with kalign, works offline")
        st.selectbox(LABELS["device"], devices, index=devices.index(s["device"]) if s["device"] in devices else 0,
                     format_func=lambda d: f"auto (uses {resolve_device('auto')})" if d == "auto" else d,
                     key=key("device"))
        st.form_submit_button("Train", type="primary", icon=":material/play_arrow:", disabled=running,
                              on_click=on_train, width="stretch", key="train")
    try:
        params.config_from_settings(s)
    except params.SettingsError as error:
        for message in error.messages():
            st.error(message, icon=":material/error:")


def charts(result, prefix: str) -> None:
    left, right = st.columns(2)
    left.plotly_chart(figures.error_figure(result), key=f"{prefix}_error")
    right.plotly_chart(figures.alignment_figure(result), key=f"{prefix}_alignment")


def time_text(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


@st.fragment(run_every=ui.PROGRESS_REFRESH_S)
def live_progress(job) -> None:
    status = job.status()
    if not status.active:
        st.rerun()  # draw the finished run with the whole page
    job.touch()
    total = status.config.epochs
    if status.state == "waiting":
        slots = ui.job_slots()
        st.info(
            f"Waiting for a free slot: {status.queue_position} run(s) ahead of yours. This server trains "
            f"{slots.limit} run(s) at a time so that each gets the CPU it needs.",
            icon=":material/hourglass_top:",
        )
    elif status.result is None:
        st.progress(0.0, text=f"Epoch 0/{total} · loading the digits and measuring the initial models…")
    else:
        done = status.epochs_done
        st.progress(done / total, text=f"Epoch {done}/{total} · {time_text(status.seconds_left)}")
    if st.button("Stop", icon=":material/stop:", key="stop_training"):
        job.stop()
        st.caption("Stopping after the current batch; the epochs done are kept.")
    if status.result is not None:
        charts(status.result, "live")


def outcome_notice() -> None:
    """How the last job ended, when that is news (stopped, given up, failed)."""
    status = st.session_state.get("outcome")
    if status is None or status.state == "finished":
        return
    if status.state == "failed":
        st.error(f"Training failed: {status.error}. Nothing was trained; earlier results are kept.",
                 icon=":material/error:")
    elif status.result is None:
        st.info("Stopped before training began; nothing was trained.")
    elif status.state == "stopped":
        st.info(f"Stopped after {status.epochs_done} of {status.config.epochs} epochs; the epochs done are kept.",
                icon=":material/stop_circle:")
    else:
        st.warning(f"This run was given up after {status.epochs_done} epochs because the page stopped "
                   "asking for it (the tab was closed or asleep). Press Train to run it again.")


def source_notice(result) -> None:
    if result.source == "sample" and result.config.source == "auto":
        why = result.source_note or "full MNIST was not on disk and could not be downloaded"
        st.info(f"Trained on the **bundled MNIST sample** (400 training and 100 test digits per class): {why}. "
                "Choose 'full MNIST' once online for all 70,000.", icon=":material/wifi_off:")
    names = {"mnist": "full MNIST", "sample": "the bundled MNIST sample (400 train / 100 test per digit)"}
    st.caption(f"Data: {names.get(result.source, result.source)} · device {result.device} · "
               f"{result.seconds:.1f} s · digits {', '.join(map(str, result.config.digits))}")


def divergence_notices(result) -> None:
    for name in MODEL_NAMES:
        epoch = result.diverged_at[name]
        if epoch is None:
            continue
        advice = ("a smaller slow learning rate, or a smaller regular one (it also trains this model's readout)"
                  if name == "slow" else "a smaller regular learning rate (e.g. 10 times smaller)")
        st.error(f"The **{name}** model diverged at epoch {epoch}: a batch loss grew past {DIVERGENCE_FACTOR:g}× "
                 f"its initial loss (or stopped being a number), so it stopped training there; its curves end at "
                 f"the ✕. Its ReLUs may have died, which leaves alignment undefined. Try {advice}.",
                 icon=":material/trending_up:")


def alignment_change(result, name: str) -> float | None:
    first, last = result.history[name][0].alignment, result.history[name][-1].alignment
    return None if first is None or last is None else last - first


def reading(result) -> str:
    """One plain-language sentence on what the run shows."""
    change = {name: alignment_change(result, name) for name in MODEL_NAMES}
    error = {name: f"{result.history[name][-1].test_error:.1f}%" for name in MODEL_NAMES}
    errors = f"test errors ended at {error['slow']} (slow) and {error['regular']} (regular)"
    diverged = [name for name in MODEL_NAMES if result.diverged_at[name] is not None]
    if len(diverged) == 2:
        return "Both models diverged, so this run says nothing about feature learning yet: lower the learning rates."
    if diverged:
        bad, good = diverged[0], other_model(diverged[0])
        moved = "undefined" if change[good] is None else f"{change[good]:+.3f}"
        return (f"The {bad} model diverged, so only the {good} model trained to the end (ρ {moved}, test error "
                f"{error[good]}); lower the {bad} model's learning rate to compare the two.")
    if None in change.values():
        return f"A model's alignment is undefined (see the note under the charts), so they cannot be compared; {errors}."
    if max(abs(c) for c in change.values()) < 0.005:
        return (f"Neither model's features have moved toward the task yet (ρ {change['slow']:+.3f} slow, "
                f"{change['regular']:+.3f} regular): so far they learn through the readout; {errors}. "
                "Try more epochs or larger learning rates.")
    mover = max(MODEL_NAMES, key=change.get)
    if change[mover] < 0:
        return (f"Both models' features moved away from the task (ρ {change['slow']:+.3f} slow, "
                f"{change['regular']:+.3f} regular); {errors}.")
    if mover == "regular" and change["slow"] < change["regular"] / 4:
        return (f"The **regular** model's features moved toward the task (ρ {change['regular']:+.3f}) while the "
                f"slow model's stayed close to their random start (ρ {change['slow']:+.3f}, the lazy regime); "
                f"{errors}.")
    return (f"The **{mover}** model's features moved toward the task more (ρ {change[mover]:+.3f}) than the "
            f"{other_model(mover)} model's (ρ {change[other_model(mover)]:+.3f}); {errors}.")


def other_model(name: str) -> str:
    return MODEL_NAMES[1 - MODEL_NAMES.index(name)]


def metrics(result) -> None:
    """Final test error and alignment of each model, with the change since initialisation."""
    columns = st.columns(4)  # both errors, then both alignments
    for name, error_column, alignment_column in zip(MODEL_NAMES, columns[:2], columns[2:]):
        first, last = result.history[name][0], result.history[name][-1]
        flag = " (diverged)" if result.diverged_at[name] is not None else ""
        error_column.metric(f"{name} · test error{flag}", f"{last.test_error:.1f}%", delta_color="inverse",
                            delta=f"{last.test_error - first.test_error:+.1f} pp since init")
        change = alignment_change(result, name)
        if last.alignment is None:
            alignment_column.metric(f"{name} · alignment ρ{flag}", "undefined", help=last.alignment_note)
        else:
            alignment_column.metric(f"{name} · alignment ρ{flag}", f"{last.alignment:.3f}",
                                    delta=None if change is None else f"{change:+.3f} since init")


def finished_run(result) -> None:
    note = st.session_state.get("run_note")
    if note:
        st.success(note, icon=":material/bolt:")
    divergence_notices(result)
    metrics(result)
    st.markdown(reading(result))
    charts(result, "final")
    for name in MODEL_NAMES:
        undefined = figures.undefined_alignment(result, name)
        if undefined:
            where, reason = undefined
            st.caption(f"The {name} model's alignment is undefined {where} (a gap in the chart): {reason}.")
    source_notice(result)


st.title("Train two networks side by side")
st.caption("Both start from the same weights and see the same batches; only the hidden layer's learning rate "
           "differs. Watch whether their features align with the task.")
job = ui.current_job()
form_column, result_column = st.columns([1.2, 3], gap="large")
with form_column:
    settings_form(running=job is not None)
with result_column:
    if job is not None:
        live_progress(job)
    else:
        outcome_notice()
        result = ui.current_result()
        if result is None:
            st.info("Choose digits and settings, then press **Train**: the error and alignment curves draw "
                    "themselves epoch by epoch, and you can stop at any time.",
                    icon=":material/arrow_back:")
        else:
            finished_run(result)
