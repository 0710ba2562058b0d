"""Many browsers on one server: sessions whose jobs train at once each get their own result, equal
bit for bit to the same config run alone; a server-wide job limit queues the rest with a visible
"waiting for a free slot"; each job trains on a capped number of torch threads; a closed tab's job
gives up its slot; Stop keeps the epochs done.

AppTest is not thread-safe (each run installs its own Streamlit Runtime as the process-wide one), so
sessions press Train one after another, as a server's short script runs interleave anyway; what
overlaps is the training, in the jobs' worker processes. Results depend on the number of torch
threads, so every run alone uses the count the jobs used.
"""

import contextlib
import dataclasses
import importlib.util
import os
import signal
import sys

import pytest

from apptest import ROOT, TINY, alone, assert_same_training, finish, open_app, press_train, texts, wait_until
from kalign_app import jobs, params
from kalign_core import ExperimentConfig, devices

LONG = {**TINY, "epochs": "500"}  # would train for minutes; these tests stop it

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_server")]


def config_of(query: dict) -> ExperimentConfig:
    """The config a session opening `query`'s URL trains."""
    defaults, _ = params.default_settings()
    settings, warnings = params.settings_from_params(query, defaults)
    assert warnings == []
    return params.config_from_settings(settings)


@contextlib.contextmanager
def paused(pids):
    """Freeze these worker processes (SIGSTOP) until the block ends: the jobs they get stay running
    without training, so that every session can press Train before any result exists."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_sessions_training_at_once_each_get_their_own_result(monkeypatch):
    """Five sessions press Train together on a server training two at a time: two with the same
    settings, the others differing by one setting each. Every result equals its config run alone."""
    monkeypatch.setenv("KALIGN_MAX_JOBS", "2")
    workers = jobs.JobSlots(2).workers  # the warm processes the server's slots will train in
    queries = [TINY, TINY, {**TINY, "seed": "1"}, {**TINY, "digits": "3,5"}, {**TINY, "slow_lr": "0"}]
    with paused(workers.pids):
        sessions = [press_train(open_app(**query)) for query in queries]
        assert not any(at.exception for at in sessions)
        started = [at.session_state["job"] for at in sessions]
        states = [job.status() for job in started]
        assert [s.state for s in states] == ["running", "running", "waiting", "waiting", "waiting"]
        assert [s.queue_position for s in states] == [None, None, 0, 1, 2]  # in the order they pressed
        assert all(at.run().info for at in sessions[2:])  # the waiting pages say so
        slots = started[0]._slots
        assert slots.limit == 2 and slots.running == 2 and slots.workers is workers

    sessions = [finish(at) for at in sessions]
    assert [job.worker.torch_threads for job in started] == [slots.threads_per_job] * len(queries)
    assert slots.threads_per_job == max(1, devices.cpu_count() // 2)
    results = [at.session_state["result"] for at in sessions]
    assert results[0] is not results[1]  # the same settings at once train twice, then agree
    for query, result in zip(queries, results):
        assert result.config == config_of(query)
        assert_same_training(result, alone(config_of(query), slots))

    # A sixth session asking for the same settings gets a finished result at once.
    later = press_train(open_app(**TINY))
    assert "job" not in later.session_state
    assert later.session_state["result"] in (results[0], results[1])


def test_a_full_server_queues_then_stop_keeps_the_epochs_done(monkeypatch):
    monkeypatch.setenv("KALIGN_MAX_JOBS", "1")
    running = press_train(open_app(**LONG))
    waiting = press_train(open_app(**{**TINY, "seed": "4"}))
    job = running.session_state["job"]
    wait_until(lambda: job.status().state == "running")
    assert waiting.run().info  # the page says it waits (its words are the Train page's to test)
    assert waiting.session_state["job"].status().queue_position == 0

    wait_until(lambda: job.status().epochs_done >= 2)
    job.stop()  # what the Stop button calls (the button itself is test_app_pages' to check)
    running = finish(running)
    stopped = running.session_state["result"]
    assert stopped.stopped and 2 <= stopped.epochs_done < 500
    assert f"Stopped after {stopped.epochs_done} of 500 epochs; the epochs done are kept" in texts(running.info)
    # The epochs kept are exactly those of the same config trained alone for that many epochs.
    slots = job._slots
    shorter = alone(dataclasses.replace(stopped.config, epochs=stopped.epochs_done), slots)
    assert_same_training(stopped, shorter, epochs=stopped.epochs_done)

    # The freed slot went to the waiting session, which trains its own run to the end.
    waiting = finish(waiting)
    assert_same_training(waiting.session_state["result"], alone(config_of({**TINY, "seed": "4"}), slots))
    assert job.status().state == "stopped" and job._slots.running == 0


class QuickToGiveUp(jobs.TrainingJob):
    """A job that counts its session gone after half a second without a heartbeat, not 90."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, abandon_after_s=0.5)


def test_a_closed_tab_frees_its_slot_for_the_next_session(monkeypatch):
    monkeypatch.setenv("KALIGN_MAX_JOBS", "1")
    with monkeypatch.context() as patch:
        patch.setattr(jobs, "TrainingJob", QuickToGiveUp)
        closed = press_train(open_app(**LONG))  # this tab is closed now: the session never reruns
    job = closed.session_state["job"]
    after = press_train(open_app(**{**TINY, "seed": "3"}))  # waits, then gets the slot the closed tab held
    after = finish(after)
    assert job.done and job.status().state == "abandoned"
    assert after.session_state["result"].epochs_done == 2
    assert_same_training(after.session_state["result"], alone(config_of({**TINY, "seed": "3"}), job._slots))

    reopened = closed.run()  # had the tab come back, it would say what happened
    assert "This run was given up after" in texts(reopened.warning)
    assert "the tab was closed or asleep" in texts(reopened.warning)


def test_the_soak_benchmark_runs(monkeypatch):
    """benchmarks/soak.py end to end at a tiny size (its memory figures are measured, not asserted)."""
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "soak", soak)
    spec.loader.exec_module(soak)
    rows = soak.main(["--runs", "3", "--width", "16", "--epochs", "1", "--probe-size", "20"])
    assert [row.run for row in rows] == [1, 2, 3]
    assert all(row.rss_mb > 0 and row.cached <= row.run for row in rows)
