"""A reload, a second tab or a dropped connection finds the session's run again by the id in the
address: its settings, its epochs so far, its progress and Stop; an id no longer on the server is
named in words; one run at a time per student, refused in words with a link to the run."""

import pytest

from apptest import TINY, finish, open_app, press_train, session_job, texts, wait_until
from kalign_app import jobs, ui
from kalign_core import ExperimentConfig

pytestmark = pytest.mark.usefixtures("fresh_server")

LONG = {**TINY, "epochs": "500", "width": "48"}  # minutes of training: the tests stop it
LESSONS_PAGE = "pages/lessons.py"


def progress_texts(at) -> str:
    return "\n".join(bar.proto.text for bar in at.get("progress"))


def test_a_reload_during_a_run_shows_that_run_again_with_its_settings_epochs_and_stop():
    at = press_train(open_app(**LONG))
    job = session_job(at)
    run_id = at.query_params["run"]
    assert at.query_params["width"] == "48" and at.query_params["epochs"] == "500"  # the settings stay in the URL
    wait_until(job.status, lambda status: status.epochs_done >= 2)
    heartbeat = job._heartbeat

    reloaded = open_app(run=run_id)  # the address alone: the run's own settings come back with it
    assert not reloaded.exception and not reloaded.warning
    assert session_job(reloaded) is job and job._heartbeat > heartbeat  # the reload renewed the heartbeat
    assert reloaded.number_input(key="train_width").value == 48
    assert reloaded.number_input(key="train_epochs").value == 500
    assert reloaded.button(key="train").disabled and reloaded.button(key="stop_training")
    assert "/500 · " in progress_texts(reloaded)
    shown = int(progress_texts(reloaded).split("Epoch ")[1].split("/")[0])
    assert shown >= 2
    assert reloaded.query_params["run"] == run_id and reloaded.query_params["width"] == "48"

    reloaded = reloaded.button(key="stop_training").click().run()
    reloaded = finish(reloaded)
    result = reloaded.session_state["result"]
    assert result.stopped and shown <= result.epochs_done < 500
    assert f"Stopped after {result.epochs_done} of 500 epochs" in texts(reloaded.info)
    assert (
        "run" not in reloaded.query_params and reloaded.query_params["width"] == "48"
    )  # ended: the link is the settings'
    assert finish(at).session_state["result"] is result  # the first tab, had it stayed, shows the same end


def test_a_run_link_that_ended_shows_how_it_ended_and_an_unknown_one_says_so_in_words():
    at = press_train(open_app(**LONG))
    job = session_job(at)
    run_id = at.query_params["run"]
    wait_until(job.status, lambda status: status.epochs_done >= 1)
    job.stop()
    assert job.wait(60)
    later = open_app(**{**LONG, "run": run_id})
    assert not later.exception and session_job(later) is None
    assert f"Stopped after {later.session_state['result'].epochs_done} of 500 epochs" in texts(later.info)

    gone = open_app(width="64", run="an-id-this-server-never-gave")
    assert not gone.exception and session_job(gone) is None
    assert "The run in this link (run=an-id-this-s…) is not on this server" in texts(gone.warning)
    assert gone.number_input(key="train_width").value == 64  # the link's settings are kept
    assert "run" not in gone.query_params and gone.query_params["width"] == "64"


def test_one_student_trains_one_run_at_a_time_and_is_told_where_it_is(monkeypatch):
    monkeypatch.setattr(ui, "student", lambda: "one browser")  # two tabs of one browser
    first = press_train(open_app(**LONG))
    job = session_job(first)
    run_id = first.query_params["run"]
    second = open_app(**{**TINY, "seed": "5"})  # a new tab, without the run's link: told where the run is
    assert f"[Open it](train?run={run_id})" in texts(second.warning)
    second = press_train(second)
    assert not second.exception and session_job(second) is None
    refusal = texts(second.warning)
    assert "You have a run training or waiting for a slot already" in refusal
    assert f"[Open it](train?run={run_id})" in refusal
    assert not job.done
    job.stop()
    assert job.wait(60)
    second = press_train(second.run(), wait=True)  # once it has ended, the next press trains
    assert "already" not in texts(second.warning)
    assert second.session_state["result"].config.seed == 5


def test_a_reload_during_a_lesson_shows_its_runs_waiting_and_stops_them(monkeypatch):
    monkeypatch.setenv("KALIGN_MAX_JOBS", "1")
    busy = press_train(open_app(**LONG))  # another student's run holds the only slot: the lesson waits
    at = open_app(**TINY).switch_page(LESSONS_PAGE).run()
    at = at.button(key="run_width").click().run()
    group = at.session_state["lesson_runs"]["width"]
    run_id = at.query_params["run"]
    assert at.query_params["lesson"] == "width"

    wait_until(session_job(busy).status, lambda status: status.epochs_done >= 1)  # its pace says when it ends
    reloaded = open_app(lesson="width", run=run_id).switch_page(LESSONS_PAGE).run()
    assert not reloaded.exception
    assert reloaded.session_state["lesson_runs"]["width"] is group and not group.done
    captions = texts(reloaded.caption)
    assert "width 64: waiting for a free slot: yours is next and should start in about " in captions
    assert "width 4096: waiting for a free slot: 1 run ahead of yours; the first slot frees in about " in captions
    reloaded = reloaded.button(key="stop_lesson").click().run()
    for job in group.jobs():
        assert job.wait(60) and job.status().state == "stopped"
    ended = reloaded.switch_page("pages/train.py").run()  # (app.py does this on every page; AppTest runs pages alone)
    assert "run" not in ended.query_params and ended.query_params["lesson"] == "width"
    session_job(busy).stop()
    assert session_job(busy).wait(60)


@pytest.mark.parametrize(
    "ahead, free_in, sweep_slots, words",
    [
        (0, 81.4, 0, "yours is next and should start in about 1 min 21 s"),
        (2, 81.4, 0, "2 runs ahead of yours; the first slot frees in about 1 min 21 s"),
        (1, 4.25, 0, "1 run ahead of yours; the first slot frees in about 4.2 s"),
        (0, None, 0, "yours is next; the wait is known once the runs training now have finished an epoch"),
        (0, 0.0, 0, "yours is next; a slot is free now"),
        (0, 81.4, 1, "yours is next and should start within about 1 min 21 s"),  # a sweep may free one sooner
        (
            1,
            None,
            2,
            "1 run ahead of yours; a sweep's trials hold 2 slots and tell no time, so the wait is not known yet",
        ),
    ],
)
def test_a_waiting_run_says_how_long_the_wait_is(ahead, free_in, sweep_slots, words):
    status = jobs.JobStatus(
        "waiting", ExperimentConfig(), None, ahead, None, None, slot_free_in=free_in, sweep_slots=sweep_slots
    )
    assert ui.slot_wait(status) == words
