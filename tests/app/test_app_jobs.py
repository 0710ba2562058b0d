"""Training jobs for a shared server: worker processes, slots, stop, abandonment, results cache."""

import dataclasses
import os
import threading
import time

import pytest
import torch

from apptest import wait_until
from kalign_app import environment, jobs, ui
from kalign_core import devices, run_experiment
from kalign_core.devices import torch_threads


def long_config(small_config, **overrides):
    """A config that would run for a long time; tests stop it."""
    return small_config(epochs=500, **overrides)


@pytest.mark.slow
def test_a_job_trains_in_the_background_and_lands_in_the_cache(small_config):
    config = small_config()
    cache = jobs.ResultCache()
    slots = jobs.JobSlots(1)
    job = jobs.TrainingJob(config, slots, cache).start()
    assert job.wait(60)
    status = job.status()
    assert status.state == "finished" and not status.active and status.error is None
    assert status.epochs_done == config.epochs
    assert cache.get(config) is status.result
    assert job.worker.pid != os.getpid()  # trained in a worker process
    with torch_threads(slots.threads_per_job):
        alone = run_experiment(config)  # the same config alone gives the same numbers: no cross-talk
    assert status.result.curve("regular", "alignment") == alone.curve("regular", "alignment")
    for name, model in alone.models.items():  # the models come back whole
        for ours, theirs in zip(status.result.models[name].parameters(), model.parameters()):
            assert torch.equal(ours, theirs)


def test_progress_snapshots_stay_fixed_and_estimate_time_left(small_config):
    job = jobs.TrainingJob(long_config(small_config), jobs.JobSlots(1)).start()
    status = wait_until(job.status, lambda s: s.epochs_done >= 2)
    assert status.state == "running" and status.seconds_left > 0
    wait_until(job.status, lambda s: s.epochs_done > status.epochs_done)
    job.stop()
    assert job.wait(60)
    assert len(status.result.history["slow"]) == status.epochs_done + 1  # it did not grow with the run


def test_stop_keeps_the_epochs_done_and_is_not_cached(small_config):
    cache = jobs.ResultCache()
    job = jobs.TrainingJob(long_config(small_config), jobs.JobSlots(1), cache).start()
    wait_until(job.status, lambda s: s.epochs_done >= 1)
    job.stop()
    assert job.wait(60)
    status = job.status()
    assert status.state == "stopped" and status.result.stopped and 1 <= status.epochs_done < 500
    assert len(cache) == 0


def test_one_slot_queues_the_second_job_until_the_first_ends(small_config):
    slots = jobs.JobSlots(1)
    first = jobs.TrainingJob(long_config(small_config), slots).start()
    wait_until(first.status, lambda s: s.state == "running")
    second = jobs.TrainingJob(small_config(), slots).start()
    threading.Event().wait(0.3)
    assert second.status().state == "waiting" and second.status().queue_position == 0
    assert slots.running == 1
    first.stop()
    assert second.wait(60) and second.status().state == "finished"
    assert slots.running == 0


def test_a_waiting_job_says_when_a_slot_frees_from_the_progress_of_the_job_in_it(small_config):
    slots = jobs.JobSlots(1)
    assert slots.first_free_in() == 0.0  # nothing trains: a slot is free now
    first = jobs.TrainingJob(long_config(small_config), slots).start()
    wait_until(first.status, lambda status: status.state == "running")
    second = jobs.TrainingJob(small_config(), slots).start()
    wait_until(first.status, lambda status: status.epochs_done >= 3)
    while True:  # a snapshot of the waiting job taken between two of the running one's epochs
        running, waiting = first.status(), second.status()
        if first.status().result is running.result:
            break
    # The mean time of the last five epochs (the slow model's clock, as the estimate reads it) × the epochs left.
    seconds = [record.seconds for record in running.result.history["slow"]]
    per_epoch = (
        (seconds[-1] - seconds[-6]) / 5 if len(seconds) >= 6 else (seconds[-1] - seconds[0]) / (len(seconds) - 1)
    )
    assert waiting.state == "waiting" and waiting.queue_position == 0
    assert waiting.slot_free_in == pytest.approx(per_epoch * (500 - running.epochs_done), rel=1e-9)
    assert waiting.slot_free_in > 0 and running.slot_free_in is None  # only a waiting job is told
    first.stop()
    assert second.wait(60) and first.wait(60)
    assert slots.first_free_in() == 0.0


def test_the_first_look_waits_for_the_end_unless_the_job_must_queue_or_time_is_up(small_config):
    slots = jobs.JobSlots(1)
    short = jobs.TrainingJob(small_config(), slots).start()
    assert short.first_look(timeout=60).state == "finished"  # a short run: its end, not a partial one
    first = jobs.TrainingJob(long_config(small_config), slots).start()
    started = time.monotonic()
    assert first.first_look(timeout=0.0).active  # time is up at once: the run as it is, still training
    assert time.monotonic() - started < 1.0
    # With a grace, a look that finds no epoch yet waits for the first.
    look = first.first_look(timeout=0.0, grace=60)
    assert look.active and look.result is not None
    wait_until(first.status, lambda status: status.state == "running")  # it holds the only slot
    second = jobs.TrainingJob(small_config(), slots).start()
    queued = second.first_look(timeout=60)  # the only slot is taken: returns at once, waiting
    assert queued.state == "waiting" and queued.result is None
    first.stop()
    assert second.wait(60)


def test_stopping_a_waiting_job_trains_nothing(small_config):
    slots = jobs.JobSlots(1)
    first = jobs.TrainingJob(long_config(small_config), slots).start()
    second = jobs.TrainingJob(small_config(), slots).start()
    second.stop()
    assert second.wait(10)
    assert second.status().state == "stopped" and second.status().result is None
    first.stop()
    first.wait(60)


@pytest.mark.slow
def test_an_abandoned_job_stops_itself_keeps_its_epochs_and_frees_its_slot(small_config):
    slots = jobs.JobSlots(1)
    job = jobs.TrainingJob(long_config(small_config), slots, abandon_after_s=0.5).start()

    def watched():
        job.touch()
        return job.status().epochs_done >= 2

    wait_until(watched)  # someone looks until two epochs are done, then nobody does
    assert job.wait(60)
    status = job.status()
    assert status.state == "abandoned" and slots.running == 0
    assert status.result.stopped and 2 <= status.epochs_done < 500


@pytest.mark.slow
def test_touching_keeps_a_job_alive(small_config):
    job = jobs.TrainingJob(long_config(small_config), jobs.JobSlots(1), abandon_after_s=0.5).start()
    for _ in range(15):
        job.touch()
        threading.Event().wait(0.1)
    assert job.status().state == "running"
    job.stop()
    assert job.wait(60) and job.status().state == "stopped"


def test_settings_that_do_not_fit_the_data_fail_with_the_field_named(small_config):
    job = jobs.TrainingJob(small_config(batch_size=5000), jobs.JobSlots(1)).start()
    assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and status.result is None
    assert "batch_size must be from 1 to 800" in status.error


def test_job_limit_comes_from_the_environment():
    assert environment.job_limit({"KALIGN_MAX_JOBS": "3"}) == 3
    assert environment.job_limit({}) == max(1, devices.cpu_count() // 2)
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="KALIGN_MAX_JOBS must be a whole number of 1 or more"):
            environment.job_limit({"KALIGN_MAX_JOBS": bad})


@pytest.mark.slow
@pytest.mark.parametrize("limit", [1, 2])
def test_each_job_trains_on_its_share_of_the_cores_in_its_worker(small_config, limit):
    """cores // limit torch threads, set in the worker process; the server's own count is untouched
    (torch's setting is per thread, so setting it in the server never reached the jobs anyway)."""
    threads = torch.get_num_threads()
    slots = jobs.JobSlots(limit)
    assert slots.threads_per_job == max(1, devices.cpu_count() // limit)
    job = jobs.TrainingJob(small_config(), slots).start()
    assert job.wait(60) and job.status().state == "finished"
    assert job.worker.torch_threads == slots.threads_per_job
    assert torch.get_num_threads() == threads


def test_cache_is_keyed_by_the_whole_config_read_only_and_bounded(small_config):
    result = run_experiment(small_config())
    size = jobs.result_nbytes(result)
    cache = jobs.ResultCache(max_bytes=2 * size)
    cache.put(result)
    assert cache.get(small_config()) is result
    assert cache.get(small_config(seed=1)) is None
    with pytest.raises(ValueError, match="read-only"):
        result.kernels["slow"][0][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        result.tangent_kernels["regular"][-1][0, 0] = 1.0
    kernels = sum(k.nbytes for stacks in (result.kernels, result.tangent_kernels) for s in stacks.values() for k in s)
    assert size > kernels > 0  # the tangent kernels count too
    others = [dataclasses.replace(result, config=small_config(seed=s)) for s in (1, 2)]
    for other in others:
        cache.put(other)
    assert len(cache) == 2 and cache.get(small_config()) is None  # the oldest went first
    assert cache.get(small_config(seed=2)) is others[1]


def test_stopped_results_are_not_cached(small_config):
    result = run_experiment(small_config(), should_stop=lambda: True)
    cache = jobs.ResultCache()
    cache.put(result)
    assert result.stopped and len(cache) == 0


def test_shared_jobs_train_an_identical_config_once_until_the_last_watcher_leaves(small_config):
    shared = jobs.SharedJobs(jobs.JobSlots(1), jobs.ResultCache())
    job = shared.join(long_config(small_config), "a")
    assert shared.join(long_config(small_config), "b") is job
    other = shared.join(small_config(), "a")
    assert other is not job
    group = jobs.RunGroup([job, other])
    assert not group.done and group.results() is None
    shared.leave(job, "a")
    assert not job.done and job.status().state in jobs.ACTIVE_STATES  # "b" still wants it
    shared.leave(job, "b")
    assert job.wait(60) and job.status().state == "stopped"
    assert other.wait(60) and other.status().state == "finished"
    assert group.done and group.results() is None  # one run did not finish
    again = shared.join(long_config(small_config), "a")
    assert again is not job  # a stopped job is never joined
    shared.leave(again, "a")
    assert again.wait(60)
    finished = jobs.RunGroup([other.status().result, other])
    assert finished.results() == [other.status().result] * 2 and finished.jobs() == [other]


def test_a_fault_on_the_server_is_said_in_words_and_logged_in_full(small_config, monkeypatch, caplog):
    """A page never shows an exception's text (it may hold a server path): it says an error stopped
    the run, and the server's log has the exception with its traceback."""
    slots = jobs.JobSlots(1)

    def fault(*args, **kwargs):
        raise RuntimeError("boom in /srv/secret/path")

    monkeypatch.setattr(slots.workers, "train", fault)
    with caplog.at_level("ERROR", logger=jobs.log.name):
        job = jobs.TrainingJob(small_config(), slots).start()
        assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and status.error == jobs.SERVER_ERROR
    assert "/srv" not in status.error and "RuntimeError" not in status.error
    assert any(record.exc_info and "boom in /srv/secret/path" in str(record.exc_info[1]) for record in caplog.records)


@pytest.mark.parametrize(
    "error, shown",
    [
        (RuntimeError("boom in /srv/secret/path"), jobs.SERVER_ERROR),
        (ValueError("the sweep in /srv/secret/path keeps 'all'"), jobs.SERVER_ERROR),
        (jobs.ConfigError("epochs", "{epochs} must be from 1 to 3"), "epochs must be from 1 to 3"),
        (jobs.DataUnavailable("MNIST is not on disk in /srv/secret/path"), "full MNIST is not on this machine yet"),
    ],
    ids=["fault", "value-error-with-a-path", "settings", "no-data"],
)
def test_a_failed_sweep_says_why_in_words_without_server_paths(tmp_path, monkeypatch, caplog, error, shown):
    from kalign_core.sweep import runner as sweep

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(sweep, "run_sweep", fail)
    with caplog.at_level("ERROR", logger=jobs.log.name):
        job = jobs.SweepJob(None, tmp_path / "sweep").start()
        assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and status.error == shown and "/srv" not in status.error
    assert any(record.exc_info and record.exc_info[1] is error for record in caplog.records)


class FakePool:
    """A pool that trains nothing: the slots' bookkeeping alone. With `blocks`, it takes a sweep's
    blocks of trials, which wait for `go`."""

    threads = size = 1

    def __init__(self, blocks: bool):
        self.go = threading.Event()
        if blocks:
            self.run_block = self._run_block

    def warm(self):
        pass

    def capacity(self):
        return self.size

    def _run_block(self, configs, threads, keep, should_stop):
        self.go.wait(30)
        return [(position, {}) for position in range(len(configs))]


def test_a_sweep_block_takes_a_slot_in_turn_and_a_run_waiting_behind_it_says_so(small_config):
    pool = FakePool(blocks=True)
    slots = jobs.JobSlots(1, pool)
    runner = slots.block_runner()
    trained = []
    block = threading.Thread(target=lambda: trained.append(runner([{}, {}], 1, "lean", lambda: False)))
    block.start()
    wait_until(slots.sweep_blocks, lambda held: held == 1)
    assert runner([{}], 1, "lean", lambda: True) == []  # stopped while it waited: nothing trained
    job = jobs.TrainingJob(small_config(), slots)  # not started: its place in the queue alone
    waiting = threading.Thread(target=lambda: slots.acquire(job, lambda: False))
    waiting.start()
    wait_until(lambda: slots.position(job), lambda place: place == 0)
    status = job.status()
    assert (status.queue_position, status.slot_free_in, status.sweep_slots) == (0, None, 1)
    assert "a sweep's trials hold 1 slot and tell no time" in ui.slot_wait(status)
    pool.go.set()
    block.join(30)
    waiting.join(30)
    assert trained == [[(0, {}), (1, {})]] and slots.sweep_blocks() == 0 and slots.running == 1
    slots.release(job)


def test_slots_on_this_machine_leave_a_sweep_its_own_worker_processes():
    assert jobs.JobSlots(1, FakePool(blocks=False)).block_runner() is None
