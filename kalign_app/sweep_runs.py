"""Running a sweep from a page, shared by the Sweeps page and the Width lab: the server's sweeps
folder, one sweep at a time on the server, the estimate before it starts, the Run button, the live
progress while it trains in the app's worker processes (or its job slots on Ray), and what became
of it.

A session has one sweep at a time (`sweep_job`), whichever page started it; both pages show its
progress, and open its folder when it ends.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping

import streamlit as st

from kalign_app import environment, params, ui
from kalign_app.jobs import SweepJob
from kalign_core.config import ConfigError
from kalign_core.data import DataUnavailable
from kalign_core.sweep.options import SweepOptions, recorded_threads
from kalign_core.sweep.runner import calibrate, estimate_seconds
from kalign_core.sweep.spec import SUMMARY_CSV, SweepSpec, TrialSummary, counted, read_summary_csv, saved_sweeps
from kalign_core.text import duration

# The sweep choosers (Sweeps page, Width lab) that open a sweep of this session's when it ends.
OPEN_KEYS = ("sweep_open", "lab_open")


def restore_form(prefix: str, defaults: Mapping) -> None:
    """Streamlit forgets the values of widgets not drawn on the last run (another page was open):
    the form's widgets (keys `{prefix}_{field}`) get back what the session last had."""
    saved = st.session_state.setdefault(f"{prefix}_settings", dict(defaults))
    for field, value in saved.items():
        st.session_state.setdefault(f"{prefix}_{field}", value)


def remember_form(prefix: str, defaults: Mapping) -> dict:
    """The form's values now, kept for `restore_form`."""
    st.session_state[f"{prefix}_settings"] = {field: st.session_state[f"{prefix}_{field}"] for field in defaults}
    return st.session_state[f"{prefix}_settings"]


@st.cache_resource
def server_sweeps() -> dict:
    """Sweeps running on this server, by folder, shared by all sessions: one at a time, since each
    uses every core (and two must never write the same folder)."""
    return {}


def running_elsewhere() -> str | None:
    job = next((job for job in server_sweeps().values() if not job.done), None)
    return None if job is None or job is st.session_state.get("sweep_job") else job.folder.name


@st.cache_data(show_spinner="Timing a one-epoch trial to estimate the sweep…", max_entries=64)
def cost_model(base, pair):
    # Under the server's own torch thread setting: calibrating must not change it for running jobs.
    return calibrate(SweepSpec(base, (pair,)), threads_per_trial=None)


def spec_cost(spec: SweepSpec):
    return cost_model(dataclasses.replace(spec.base, epochs=1), spec.pairs[0])


def chosen_sweep(open_key: str, empty: str) -> tuple[pathlib.Path, list[TrialSummary]] | None:
    """The saved sweep picked in a chooser (widget key `open_key`) and its summaries; None, with
    `empty` or a warning in words (the details go to the server's log), when there is none to show."""
    base = environment.sweeps_base()
    names = saved_sweeps(base)
    if not names:
        st.caption(empty)
        return None
    if st.session_state.get(open_key) not in names:
        st.session_state[open_key] = names[0]
    folder = base / st.selectbox("Sweep", names, key=open_key, help="the sweeps saved on this server")
    try:
        return folder, read_summary_csv((folder / SUMMARY_CSV).read_text())
    except (OSError, ValueError):
        ui.log.exception("sweep %s: its summary cannot be read", folder)
        st.warning(f"The summary of the sweep {folder.name} cannot be read; the details are in the server's log.")
        return None


def plan(spec: SweepSpec, folder: pathlib.Path, workers: int, labels: Mapping[str, str]) -> bool:
    """Trials and estimated time; True when there is something to run. `labels`: what the page
    calls each setting, for errors that name one."""
    total = len(spec.trials())
    in_slots = slots_runner() is not None
    workers = slot_workers() if in_slots else workers
    try:
        pending, seconds = estimate_seconds(spec, SweepOptions(workers=workers), folder, spec_cost(spec))
    except (ValueError, OSError) as error:  # e.g. the folder holds trials with other settings
        why = params.capitalised(error.describe(labels)) if isinstance(error, ConfigError) else error
        st.error(f"Sweep {folder.name}: {why}", icon=":material/error:")
        return False
    except DataUnavailable as unavailable:  # the reason in words here, the paths in the server's log
        ui.log.warning("sweep %s: %s", folder.name, unavailable)
        st.error(f"Sweep {folder.name}: {unavailable.words}", icon=":material/error:")
        return False
    axes = spec.axes_text()
    if not pending:
        every = "The trial" if total == 1 else f"All {total} trials"
        st.success(f"{every} ({axes}) {'is' if total == 1 else 'are'} in **{folder.name}**: see the results below.")
        return False
    already = f", {total - pending} already done" if pending < total else ""
    where = (
        f"{counted(min(workers, pending), 'job slot')} of the Ray cluster, as they come free beside the class's runs"
        if in_slots
        else f"{counted(min(workers, pending), 'worker')}, plus the workers' start-up "
        "(each starts Python and imports torch: seconds)"
    )
    st.info(
        f"**{counted(total, 'trial')}** ({axes}{already}) into **{folder.name}**: about **{duration(seconds)}** of "
        f"training on {where}.",
        icon=":material/schedule:",
    )
    return True


def run_button(spec: SweepSpec, folder: pathlib.Path, workers: int, keep: str | None, button_key: str) -> None:
    """The Run button, unless another session's sweep is running; pressed, it starts the sweep.
    `keep` None: what the folder's sweep kept before (lean for a new one), so that resuming works."""
    elsewhere = running_elsewhere()
    if elsewhere:
        st.info(f"Another session's sweep ({elsewhere}) is running on this server; one runs at a time.")
    if st.button("Run", type="primary", icon=":material/play_arrow:", key=button_key, disabled=bool(elsewhere)):
        runner = slots_runner()
        job = SweepJob(spec, folder, sweep_options(workers, keep, folder, runner), spec_cost(spec), runner).start()
        server_sweeps()[folder] = job
        st.session_state.sweep_job = job
        st.session_state.sweep_outcome = None
        st.query_params[params.SWEEP_PARAM] = job.id
        st.rerun()


def sweep_options(workers: int, keep: str | None, folder: pathlib.Path, runner) -> SweepOptions:
    """`workers` worker processes of the sweep's own; with the job slots' block `runner` (the
    server's runs train on Ray, whose actors hold the cluster's CPUs), the blocks train in the slots
    instead (`slot_workers` at once), at the slots' torch threads unless the sweep in `folder`
    trained at others."""
    if runner is not None:
        threads = recorded_threads(folder) or ui.job_slots().threads_per_job
        return SweepOptions(workers=slot_workers(), threads_per_trial=threads, keep=keep)
    return SweepOptions(workers=workers, in_process=False, keep=keep)


def slot_workers() -> int:
    """Blocks a sweep trains in the job slots at once: half of those live, so that the class's runs
    keep going beside it."""
    return max(1, _slots_in_use(ui.job_slots()) // 2)


def slots_runner():
    """The job slots' block runner where the server's runs train on Ray (KALIGN_RAY_ADDRESS) in two
    slots or more, else None (and the local slots are left unstarted): a sweep in the only slot would
    keep every run waiting until it ends."""
    if environment.ray_address() is None:
        return None
    slots = ui.job_slots()
    return slots.block_runner() if _slots_in_use(slots) >= 2 else None


def _slots_in_use(slots) -> int:
    """How many runs the slots train at once now (fewer while the cluster has lost a node)."""
    return min(slots.limit, slots.workers.capacity())


def current_job() -> SweepJob | None:
    """This session's running sweep, or the one the address names (a reload, a second tab); one that
    has ended is collected, and its folder opened."""
    job = st.session_state.get("sweep_job")
    wanted = st.query_params.get(params.SWEEP_PARAM)
    if job is None and wanted:
        job = next((j for j in server_sweeps().values() if j.id == wanted), None)
        if job is None:
            st.warning(
                "The sweep in this link is no longer running here (it ended, or the server restarted); the trials "
                "it finished are saved in its folder: choose it under Results.",
                icon=":material/link_off:",
            )
        st.session_state.sweep_job = job
    if job is not None and job.done:
        st.session_state.sweep_outcome = job.status()
        for key in OPEN_KEYS:
            st.session_state[key] = job.folder.name
        st.session_state.sweep_job = job = None
    if job is None and wanted:
        del st.query_params[params.SWEEP_PARAM]
    return job


def run_panel(
    form: Callable[[], tuple[SweepSpec | None, pathlib.Path | None, int, str | None]],
    draw_so_far: Callable[[list[TrialSummary]], None],
    labels: Mapping[str, str],
    button_key: str,
    chart: str,
) -> bool:
    """A sweep page's top: its form beside the session's running sweep (progress, Stop, `draw_so_far`)
    or the plan and Run button, then the Results header; True when no sweep runs and the page is to
    draw its results (else a caption says when they come; `chart` names what fills in meanwhile).
    `form` draws the form: (spec, folder, workers, keep), spec or folder None when they cannot run."""
    job = current_job()
    form_column, run_column = st.columns([1.6, 3], gap="large")  # room for a multiselect of four chips
    with form_column:
        spec, folder, workers, keep = form()
    with run_column:
        if job is not None:
            live_progress(job, draw_so_far)
        else:
            outcome_notice()
            if spec is not None and folder is not None and plan(spec, folder, workers, labels):
                run_button(spec, folder, workers, keep, button_key)
    st.header("Results")
    if job is not None:
        st.caption(f"The results show here when the sweep ends; the {chart} above fills in as trials finish.")
    return job is None


@st.fragment(run_every=ui.PROGRESS_REFRESH_S)
def live_progress(job: SweepJob, draw_so_far: Callable[[list[TrialSummary]], None]) -> None:
    """The sweep's progress and a Stop button; `draw_so_far` draws the trials finished so far."""
    if job.done:
        st.rerun()  # draw the results with the whole page
    with ui.apology():
        status = job.status()
        progress = status.progress
        if progress is None:
            st.progress(0.0, text="Starting the worker processes and the first trials…")
        else:
            left = "" if progress.seconds_left is None else f" · about {duration(progress.seconds_left)} left"
            st.progress(progress.done / progress.total, text=f"{progress.done}/{progress.total} trials{left}")
        if st.button("Stop", icon=":material/stop:", key="stop_sweep"):
            job.stop()
            st.caption("Stopping: no new trial starts; the finished ones are saved, and the same sweep resumes later.")
        if status.summaries:
            draw_so_far(status.summaries)


def outcome_notice() -> None:
    status = st.session_state.get("sweep_outcome")
    if status is None:
        return
    if status.state == "failed":
        st.error(f"The sweep failed: {status.error}. The trials finished before it are saved.", icon=":material/error:")
    elif status.state == "stopped":
        st.info(
            f"Stopped with {counted(len(status.summaries), 'trial')} done; press Run to resume.",
            icon=":material/stop_circle:",
        )
