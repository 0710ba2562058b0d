"""The dashboard's runs on a Ray cluster (KALIGN_RAY_ADDRESS): the library's numbers, Stop, and a
lost actor ending only its run, with its slot freed."""

import os
import signal

import pytest
import torch

from apptest import wait_until
from kalign_app import environment, jobs
from kalign_core import run_experiment
from kalign_core.devices import torch_threads

if os.environ.get("CI") == "true":
    import ray  # CI installs ray: these tests must run there
else:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_slots():
    """The server's slots with KALIGN_RAY_ADDRESS=local: a Ray started here, with this machine's CPUs."""
    previous = os.environ.get("KALIGN_RAY_ADDRESS")
    os.environ["KALIGN_RAY_ADDRESS"] = "local"
    try:
        slots = jobs.server_slots()
    finally:
        if previous is None:
            del os.environ["KALIGN_RAY_ADDRESS"]
        else:
            os.environ["KALIGN_RAY_ADDRESS"] = previous
    yield slots
    slots.workers.close()
    ray.shutdown()


def test_the_ray_address_comes_from_the_environment():
    assert environment.ray_address({"KALIGN_RAY_ADDRESS": " local "}) == "local"
    assert environment.ray_address({"KALIGN_RAY_ADDRESS": ""}) is None
    assert environment.ray_address({}) is None


def test_a_run_on_ray_gives_the_library_s_numbers_with_its_epochs_streamed(ray_slots, small_config):
    config = small_config(epochs=3)
    assert type(ray_slots.workers).__name__ == "RayPool"
    cpus = int(ray.cluster_resources()["CPU"])
    assert ray_slots.limit == environment.job_limit(cores=cpus, threads=ray_slots.threads_per_job)
    seen = []
    job = jobs.TrainingJob(config, ray_slots).start()
    while job.status().active:
        seen.append(job.status().epochs_done)
        job.wait(0.05)
    status = job.status()
    assert status.state == "finished" and status.epochs_done == 3
    assert job.worker.pid != os.getpid() and job.worker.torch_threads == ray_slots.threads_per_job
    with torch_threads(ray_slots.threads_per_job):
        alone = run_experiment(config)
    for name in ("slow", "regular"):
        assert status.result.curve(name, "alignment") == alone.curve(name, "alignment")
        assert status.result.curve(name, "test_error") == alone.curve(name, "test_error")
        for ours, theirs in zip(status.result.models[name].parameters(), alone.models[name].parameters()):
            assert torch.equal(ours, theirs)
    assert ray_slots.running == 0


def test_stop_reaches_a_run_on_ray(ray_slots, small_config):
    job = jobs.TrainingJob(small_config(epochs=500), ray_slots).start()
    wait_until(job.status, lambda s: s.epochs_done >= 1, timeout=120)
    job.stop()
    assert job.wait(60)
    status = job.status()
    assert status.state == "stopped" and 1 <= status.epochs_done < 500
    assert ray_slots.running == 0


def test_a_lost_actor_ends_only_its_run_in_words_and_frees_its_slot(ray_slots, small_config):
    job = jobs.TrainingJob(small_config(epochs=500), ray_slots).start()
    wait_until(job.status, lambda s: s.epochs_done >= 1, timeout=120)
    os.kill(job.worker.pid, signal.SIGKILL)  # its actor's process, as a lost node would end it
    assert job.wait(60)
    status = job.status()
    assert status.state == "failed" and status.error == jobs.WORKER_DIED
    assert ray_slots.running == 0
    again = jobs.TrainingJob(small_config(), ray_slots).start()  # a new actor takes the slot
    assert again.wait(120) and again.status().state == "finished"
