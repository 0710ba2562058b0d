"""What the pages share: this session's settings, training job and current run (in st.session_state,
so they survive page switches), and the server's job slots, results cache and runs by id (shared by
all). While a run trains its id is in the page's address (`run=`): a session opened with it (a
reload, a second tab, a dropped connection) shows that run again."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

import streamlit as st

from kalign_app import jobs, navigation, params, students
from kalign_app.mnist_fetch import MnistFetch
from kalign_app.run_registry import AlreadyRunning, Entry, RunNotFound, RunRegistry
from kalign_core import data
from kalign_core.config import SETTINGS
from kalign_core.results import ExperimentResult
from kalign_core.sweep.spec import counted
from kalign_core.text import duration

log = logging.getLogger("kalign.app")

# Seconds between progress redraws of a running job, and between heartbeats on the other pages.
PROGRESS_REFRESH_S = 1.0
HEARTBEAT_S = 5.0


@st.cache_resource
def job_slots() -> jobs.JobSlots:
    return jobs.server_slots()


@st.cache_resource
def results_cache() -> jobs.ResultCache:
    return jobs.ResultCache()


@st.cache_resource
def run_registry() -> RunRegistry:
    return RunRegistry()


@st.cache_resource
def _mnist_fetch(root: str) -> MnistFetch:
    return MnistFetch(root)  # started by `warm_up_server`, once the first page is drawn


def _fetches_mnist() -> bool:
    """A server that starts its forms on "auto" (the default) downloads MNIST in the background; one
    set to another source (KALIGN_DEFAULT_SOURCE, e.g. offline classrooms and the tests) never
    touches the network."""
    return params.default_settings()[0]["source"] == "auto"


def mnist_status() -> str:
    """Where full MNIST stands for "auto" runs, in words."""
    if _fetches_mnist():
        return _mnist_fetch(str(data.default_data_dir())).status()
    return (
        "'auto' trains on full MNIST when it is on this machine, else on the bundled sample; "
        "choose full MNIST to download it."
    )


_warmed_up = threading.Event()


def warm_up_server() -> None:
    """Once per server, after the first page is drawn (so that it does not wait): the training
    processes, and the MNIST download when the forms start on "auto"."""
    job_slots()  # starts the training processes: seconds, mostly importing torch
    _warmed_up.set()
    if _fetches_mnist():
        _mnist_fetch(str(data.default_data_dir())).start()


def _worker_devices() -> list[str] | None:
    """What the training processes can train on; None until the first has started (a second or two
    after the server's first page)."""
    return job_slots().workers.devices() if _warmed_up.is_set() else None


def workers_ready() -> bool:
    """Whether a training process has started: until then a run waits for one."""
    return _worker_devices() is not None


def device_choices(current: str) -> tuple[list[str], str | None]:
    """The Train form's devices and the one "auto" trains on: what the training processes can use.
    Until the first has started (a second or two after the server's first page): "auto", "cpu" and
    `current` (a device a link asked for, checked already), and None."""
    found = _worker_devices()
    if found is None:
        return list(dict.fromkeys(["auto", "cpu", current])), None
    return ["auto", *found], found[0]


@contextlib.contextmanager
def apology():
    """Whatever fails inside ends as a short message in words; the details go to the server's log.
    (Streamlit's reruns and stops are BaseExceptions and pass through.)"""
    try:
        yield
    except Exception:
        log.exception("a page failed")
        st.error(
            "Sorry, something went wrong while drawing this part of the page. Your settings and your "
            "last run are kept: reload the page, or go back to Train. The details are in the server's log.",
            icon=":material/sentiment_dissatisfied:",
        )


def init_session() -> None:
    """On a session's first run: default settings, then whatever the URL asks for; a link to a run
    (`run=`) shows that run, live while it trains; a link whose settings have already finished on
    this server shows that run at once. A link with parameters that were dropped is not that link's
    run: it keeps its warnings and shows no cached run."""
    if "settings" in st.session_state:
        return
    settings, warnings = params.default_settings()
    query = st.query_params.to_dict()
    settings, url_warnings = params.settings_from_params(query, settings)
    st.session_state.settings = settings
    st.session_state.url_warnings = warnings + url_warnings
    if query.get(params.RUN_PARAM):
        attach(query[params.RUN_PARAM])
        return
    st.session_state.run_elsewhere = run_registry().active(student())  # e.g. a new tab without the run's link
    if query and not url_warnings:
        with contextlib.suppress(params.SettingsError):
            cached = results_cache().get(params.config_from_settings(settings))
            if cached is not None:
                show_run(cached, "Shown at once: this link's settings had already finished on this server.")


def settings() -> dict:
    return st.session_state.settings


def form_key(field: str) -> str:
    """The Train form's widget key for a setting."""
    return f"train_{field}"


def switch_key(field: str) -> str:
    """The Train form's on/off switch for a setting that can be off (None), e.g. the lazy scale."""
    return f"train_{field}_on"


def set_settings(settings: dict, from_form: bool = False) -> None:
    """Replace the session's settings; unless they come from the Train form, it shows them the next
    time it is drawn."""
    st.session_state.settings = settings
    st.session_state.url_warnings = []
    if not from_form:
        for field in SETTINGS:
            st.session_state.pop(form_key(field), None)
            st.session_state.pop(switch_key(field), None)


def mirror_settings_to_url() -> None:
    """Put the settings in the URL when they are valid, so the address is a shareable link, and the
    session's run while it trains, so that a reload finds it again."""
    current_run_id()
    try:
        wanted = params.config_to_params(params.config_from_settings(settings()))
    except params.SettingsError:
        return
    current = st.query_params.to_dict()
    wanted.update({name: value for name, value in current.items() if name in params.PAGE_PARAMS})
    if current != wanted:
        st.query_params.from_dict(wanted)


def show_url_warnings() -> None:
    for warning in st.session_state.get("url_warnings", []):
        st.warning(warning, icon=":material/link_off:")


def current_job() -> jobs.TrainingJob | None:
    """This session's running (or waiting) job; a job that has ended is collected first."""
    job = st.session_state.get("job")
    if job is not None and job.done:
        status = job.status()
        st.session_state.outcome = status
        if status.result is not None and status.state in ("finished", "stopped"):
            st.session_state.result = status.result
        st.session_state.job = job = None
    current_run_id()
    return job


def current_result() -> ExperimentResult | None:
    """The run the pages show: the last finished, stopped, loaded or uploaded one."""
    current_job()
    return st.session_state.get("result")


def show_run(result: ExperimentResult, note: str | None = None) -> None:
    """Make `result` the current run, with its settings in the form and the URL; `note` says where
    it came from."""
    st.session_state.result = result
    st.session_state.outcome = None
    st.session_state.run_note = note
    set_settings(params.settings_from_config(result.config))
    mirror_settings_to_url()


def start_training(config) -> None:
    """A finished identical config comes from the cache at once; otherwise a job starts, unless the
    student has a run training already (`run_elsewhere` then says so)."""
    cached = results_cache().get(config)
    if cached is not None:
        show_run(cached, "Shown at once: an identical run had already finished on this server.")
        return
    job = _start_run(lambda _: jobs.TrainingJob(config, job_slots(), results_cache()).start())
    if job is not None:
        st.session_state.run_note = None
        st.session_state.job = job


def _start_run(start, lesson: str | None = None):
    """The student's new run, `start(its id)`, registered as this session's; None, with theirs kept
    for `run_elsewhere` to draw, when they have one training already."""
    try:
        run_id = run_registry().start(student(), start, lesson)
    except AlreadyRunning as busy:
        st.session_state.run_elsewhere = (busy.run_id, busy.entry)
        return None
    st.session_state.run_elsewhere = None
    st.session_state.run_id = run_id
    current_run_id()  # into the address at once
    return run_registry().find(run_id).run


def attach(run_id: str) -> None:
    """Show the run with this id in this session (a reload, a second tab, a dropped connection): its
    settings, its epochs so far and, while it trains, its progress and Stop; an unknown or forgotten
    id is named in a warning, and the link's settings stay."""
    try:
        entry = run_registry().find(run_id)
    except RunNotFound as missing:
        st.session_state.url_warnings.append(str(missing))
        return
    entry.run.touch()  # a reload within the abandonment time keeps the run
    st.session_state.run_id = run_id
    if entry.lesson is not None:
        lesson_runs()[entry.lesson] = entry.run
        return
    set_settings(params.settings_from_config(entry.run.config))
    st.session_state.job = entry.run
    st.session_state.run_note = "This link's run had already finished: here it is." if entry.run.done else None


def current_run_id() -> str | None:
    """The id of this session's run (its Train job or its lesson's runs) while it trains or waits.
    It is in the address meanwhile (page switches drop it: it is put back), and leaves it at the end."""
    run_id = st.session_state.get("run_id")
    if run_id is not None and _ended(run_id):
        st.session_state.run_id = run_id = None
    if run_id is None:
        if params.RUN_PARAM in st.query_params:
            del st.query_params[params.RUN_PARAM]
    elif st.query_params.get(params.RUN_PARAM) != run_id:
        st.query_params[params.RUN_PARAM] = run_id
    return run_id


def _ended(run_id: str) -> bool:
    try:
        return run_registry().find(run_id).run.done
    except RunNotFound:
        return True


def run_link(run_id: str, entry: Entry) -> str:
    """A relative link that opens a run: on the Train page, or a lesson's on the Lessons page."""
    if entry.lesson is None:
        return f"train?{params.RUN_PARAM}={run_id}"
    return f"lessons?lesson={entry.lesson}&{params.RUN_PARAM}={run_id}"


def run_elsewhere() -> None:
    """The student's run that trains elsewhere (another tab), with a link to it: after a press that
    it refused, or in a new tab opened while it trains."""
    elsewhere = st.session_state.get("run_elsewhere")
    if elsewhere is None:
        return
    run_id, entry = elsewhere
    if entry.run.done:  # it has ended since: the next press will start
        st.session_state.run_elsewhere = None
        return
    what = "a run" if entry.lesson is None else "a lesson"
    st.warning(
        f"You have {what} training or waiting for a slot already (in this tab or another of this browser), and "
        f"each student trains one at a time: [Open it]({run_link(run_id, entry)}) to watch or stop it, or "
        "wait for it to end.",
        icon=":material/block:",
    )


def session_id() -> str:
    """This browser session (one tab)."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def student() -> str:
    """Who "one run at a time" counts: the browser (all its tabs) when Streamlit's cookie names it,
    otherwise this session."""
    return students.browser_id(st.context.cookies) or session_id()


@st.cache_resource
def shared_jobs() -> jobs.SharedJobs:
    return jobs.SharedJobs(job_slots(), results_cache())


def lesson_runs() -> dict[str, jobs.RunGroup]:
    """Each lesson's last runs in this session, by lesson id: running another lesson keeps them."""
    return st.session_state.setdefault("lesson_runs", {})


def start_lesson(lesson_id: str, configs) -> None:
    """Each run comes from the cache when it finished already; otherwise the session joins the job
    training it (started now, or by another session pressing the same lesson), unless the student
    has a run training already (`run_elsewhere` then says so)."""
    stop_lesson()
    if show_lesson_if_finished(lesson_id, configs):
        return

    def start(run_id: str) -> jobs.RunGroup:
        runs = [results_cache().get(config) or shared_jobs().join(config, run_id) for config in configs]
        return jobs.RunGroup(runs, watcher=run_id)

    group = _start_run(start, lesson_id)
    if group is not None:
        lesson_runs()[lesson_id] = group


def show_lesson_if_finished(lesson_id: str, configs) -> bool:
    """A lesson whose runs have all finished on this server becomes this session's at once."""
    cached = [results_cache().get(config) for config in configs]
    if None in cached:
        return False
    lesson_runs()[lesson_id] = jobs.RunGroup(cached)
    return True


def _lesson_jobs_running() -> list[jobs.TrainingJob]:
    return [job for group in lesson_runs().values() for job in group.jobs() if not job.done]


def stop_lesson() -> None:
    """Leave the running lesson's jobs (each stops unless another session still wants it)."""
    for group in lesson_runs().values():
        for job in group.jobs():
            if not job.done:
                shared_jobs().leave(job, group.watcher)


def watched_jobs() -> list[jobs.TrainingJob]:
    """The jobs this session is waiting for: its Train run and its lesson's runs."""
    train_job = st.session_state.get("job")
    return ([train_job] if train_job is not None else []) + _lesson_jobs_running()


@st.fragment(run_every=HEARTBEAT_S)
def _heartbeat() -> None:
    train_job = st.session_state.get("job")
    if train_job is not None and train_job.done:
        st.rerun()  # let whichever page is open show the finished run
    with apology():
        for job in watched_jobs():
            job.touch()


def keep_job_alive() -> None:
    """While jobs run, tell them every few seconds that this session is still open, on any page."""
    current_job()
    if watched_jobs():
        _heartbeat()


def slot_wait(status: jobs.JobStatus) -> str:
    """A waiting run's place in the queue and when it should start, from the progress of the runs
    training in the slots, in words. A sweep's trials in the slots tell no time: the wait is then
    at most what the runs say."""
    ahead = status.queue_position or 0
    place = "yours is next" if ahead == 0 else f"{ahead} run{'s' if ahead > 1 else ''} ahead of yours"
    if status.slot_free_in is None:
        if status.sweep_slots:
            held = counted(status.sweep_slots, "slot")
            return f"{place}; a sweep's trials hold {held} and tell no time, so the wait is not known yet"
        return f"{place}; the wait is known once the runs training now have finished an epoch"
    if status.slot_free_in == 0:
        return f"{place}; a slot is free now"
    free = f"{'within' if status.sweep_slots else 'in'} about {duration(status.slot_free_in)}"
    return f"{place} and should start {free}" if ahead == 0 else f"{place}; the first slot frees {free}"


def time_left(seconds: float | None) -> str:
    """A running job's time left, in words."""
    if seconds is None:
        return "estimating time left…"
    return f"about {duration(seconds)} left"


def run_state(result: ExperimentResult | None, on_runs_page: bool = False) -> None:
    """The one message a page that shows the current run needs above it: a run is training (the page
    shows it once it finishes, and the previous run until then), or there is no run yet."""
    if current_job() is not None:
        until_then = "; until then, the previous run" if result is not None else ""
        st.info(
            f"A run is training: this page shows it as soon as it finishes{until_then}.",
            icon=":material/hourglass_top:",
        )
        st.page_link(navigation.TRAIN, label="Watch it train", icon=":material/model_training:")
    elif result is None:
        where = "below" if on_runs_page else "on the Runs page"
        st.info(f"No run yet. Pick digits and press **Train** on the Train page, or open a saved run {where}.")
        st.page_link(navigation.TRAIN, label="Go to Train", icon=":material/play_arrow:")
