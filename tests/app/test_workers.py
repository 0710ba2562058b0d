"""Training in worker processes: a killed worker fails only its own job and is replaced, workers
are reused, results travel back in pieces that add up to the whole, and cores are counted the way
a container sees them."""

import logging
import os
import signal

import numpy as np
import pytest
import torch

import kalign_core
from apptest import assert_same_training, wait_until
from kalign_app import jobs, workers
from kalign_core import devices, run_experiment
from kalign_core.devices import torch_threads
from kalign_core.results import MODEL_NAMES


@pytest.mark.slow
def test_a_killed_worker_fails_its_job_in_words_and_is_replaced(small_config, caplog):
    slots = jobs.JobSlots(2)
    doomed = jobs.TrainingJob(small_config(epochs=500), slots).start()
    bystander = jobs.TrainingJob(small_config(epochs=200, seed=1), slots).start()
    wait_until(lambda: doomed.status().epochs_done >= 1 and bystander.worker is not None)
    assert bystander.status().state == "running"
    killed = doomed.worker.pid
    with caplog.at_level(logging.ERROR, logger="kalign_app.jobs"):
        os.kill(killed, signal.SIGKILL)
        assert doomed.wait(60)
    status = doomed.status()
    assert status.state == "failed" and not status.active
    assert status.error == jobs.WORKER_DIED
    assert "stopped unexpectedly (killed, out of memory, or its machine lost); press Train to try again" in status.error
    assert f"training process {killed} ended with exit code -9" in caplog.text  # the details are in the log

    # The other session's job, training beside it, did not notice.
    assert bystander.wait(120) and bystander.status().state == "finished"
    with torch_threads(slots.threads_per_job):
        assert_same_training(bystander.status().result, run_experiment(small_config(epochs=200, seed=1)))

    # The next job trains on a replacement, to the same numbers as alone.
    after = jobs.TrainingJob(small_config(seed=2), slots).start()
    assert after.wait(120) and after.status().state == "finished"
    assert after.worker.pid != killed and killed not in slots.workers.pids
    with torch_threads(slots.threads_per_job):
        assert_same_training(after.status().result, run_experiment(small_config(seed=2)))
    assert slots.running == 0


def test_workers_are_started_once_and_reused(small_config):
    """A rebuilt server state (Streamlit's resource cache cleared) finds the same warm workers."""
    first = jobs.JobSlots(1)
    job = jobs.TrainingJob(small_config(), first).start()
    assert job.wait(60)
    again = jobs.JobSlots(1)
    assert again.workers is first.workers and again.workers.pids == [job.worker.pid]
    second = jobs.TrainingJob(small_config(seed=5), again).start()
    assert second.wait(60) and second.worker.pid == job.worker.pid


@pytest.mark.slow
def test_closing_a_pool_ends_its_idle_workers(small_config):
    pool = workers.WorkerPool(1, 1)
    result = pool.train(small_config(), lambda info: None, lambda live: None, lambda: False)
    assert result.epochs_done == small_config().epochs
    [pid] = pool.pids
    pool.close()
    assert pool.pids == []
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(pid, 0)


@pytest.mark.slow
def test_the_pool_says_which_devices_its_workers_train_on(small_config):
    """The server learns the devices from its workers (it never imports torch itself)."""
    pool = workers.WorkerPool(1, 1)
    assert pool.devices() is None  # nobody started yet
    pool.warm()
    assert wait_until(pool.devices) == kalign_core.available_devices()
    # Still known while every worker trains (the form keeps offering them).
    seen = []
    pool.train(small_config(), lambda info: seen.append(pool.devices()), lambda live: None, lambda: False)
    assert seen == [kalign_core.available_devices()]
    pool.close()


def process_ended(pid: int) -> bool:
    """Whether the process has ended (a zombie not yet reaped counts)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_a_worker_that_dies_before_it_is_ready_is_replaced_not_raised(small_config):
    pool = workers.WorkerPool(1, 1)
    pool.warm()
    [pid] = pool.pids
    os.kill(pid, signal.SIGKILL)  # before it said "ready" (it imports torch first)
    wait_until(lambda: process_ended(pid))
    assert pool.devices() is None  # the form keeps its fallback; nothing raised
    result = pool.train(small_config(), lambda info: None, lambda live: None, lambda: False)
    assert result.epochs_done == small_config().epochs and pool.pids != [pid]
    assert pool.devices() == kalign_core.available_devices()
    pool.close()


def test_an_error_in_the_run_leaves_the_worker_serving(small_config):
    slots = jobs.JobSlots(1)
    bad = jobs.TrainingJob(small_config(batch_size=5000), slots).start()
    assert bad.wait(60) and bad.status().state == "failed"
    assert "batch_size must be from 1 to 800" in bad.status().error
    good = jobs.TrainingJob(small_config(), slots).start()
    assert good.wait(60) and good.status().state == "finished"
    assert good.worker.pid == bad.worker.pid


@pytest.mark.parametrize("overrides", [{}, {"slow_lr": 10.0}], ids=["both-train", "slow-diverges"])
def test_epoch_tails_add_up_to_the_whole_result(small_config, overrides):
    """What a worker sends after each epoch (only what is new) rebuilds each epoch's snapshot, also
    when a diverged model's history ends early."""
    snapshots, sent, rebuilt = [], {}, None

    def on_epoch(live):
        nonlocal rebuilt
        snapshots.append(live.copy())
        rebuilt = workers.extend(rebuilt, workers.tail(live, sent))
        sent.update({name: len(records) for name, records in live.history.items()})
        assert rebuilt.history == snapshots[-1].history
        assert all(
            len(rebuilt.kernels[n]) == len(snapshots[-1].kernels[n]) == len(rebuilt.tangent_kernels[n])
            for n in MODEL_NAMES
        )
        assert rebuilt.alignment_null == live.alignment_null  # the live chart's chance band from epoch 0

    result = run_experiment(small_config(epochs=3, **overrides), on_epoch=on_epoch)
    whole = workers.extend(rebuilt, workers.tail(result, sent))
    assert whole.history == result.history and whole.diverged_at == result.diverged_at
    assert whole.models is result.models
    for name in MODEL_NAMES:
        for ours, theirs in zip(whole.kernels[name], result.kernels[name], strict=True):
            np.testing.assert_array_equal(ours, theirs)
        for ours, theirs in zip(whole.tangent_kernels[name], result.tangent_kernels[name], strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert (
        whole.kernel_machine_errors == result.kernel_machine_errors and "final" in whole.kernel_machine_errors["slow"]
    )
    assert whole.alignment_null == result.alignment_null and set(whole.alignment_null) == {"feature", "tangent"}
    assert len(snapshots[1].history["regular"]) == 2  # earlier snapshots did not grow with the run


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "membership", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),
        ({"cpu.max": "250000 100000\n"}, "0::/\n", 2.5),
        # a limit set on a parent cgroup holds for its children; the smallest wins
        ({"kalign/cpu.max": "max 100000\n", "cpu.max": "150000 100000\n"}, "0::/kalign\n", 1.5),
        ({"kalign/cpu.max": "100000 100000\n", "cpu.max": "300000 100000\n"}, "0::/kalign\n", 1.0),
        # a container shown its host's cgroup path reads its own root
        ({"cpu.max": "200000 100000\n"}, "0::/docker/abc\n", 2.0),
        # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/\n", 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpu,cpuacct:/\n", None),
        ({}, "1:name=systemd:/\n", None),
    ],
)
def test_cgroup_cpu_quota(tmp_path, files, membership, quota):
    for name, text in files.items():
        write(tmp_path / "cgroup" / name, text)
    write(tmp_path / "self-cgroup", membership)
    assert devices.cgroup_cpu_quota(tmp_path / "cgroup", tmp_path / "self-cgroup") == quota


def test_cores_are_capped_by_the_quota(monkeypatch):
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: 1.5)
    assert devices.cpu_count() == 1
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: 512.0)
    assert devices.cpu_count() == affinity
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: None)
    assert devices.cpu_count() == affinity


def test_the_server_keeps_its_own_torch_threads():
    threads = torch.get_num_threads()
    jobs.JobSlots(devices.cpu_count())
    assert torch.get_num_threads() == threads
