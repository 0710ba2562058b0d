"""The dashboard's runs and page sweeps on a Ray cluster (KALIGN_RAY_ADDRESS): the library's numbers,
Stop, and a lost actor ending only its run, with its slot freed."""

import os
import signal
from dataclasses import replace

import pytest
import torch

from apptest import open_app, texts, wait_until
from kalign_app import environment, jobs, ray_pool
from kalign_core import run_experiment
from kalign_core.devices import torch_threads
from kalign_core.sweep.options import SweepOptions
from kalign_core.sweep.runner import run_sweep
from kalign_core.sweep.spec import SweepSpec

if os.environ.get("CI") == "true":
    import ray  # CI installs ray: these tests must run there
else:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_slots():
    """The server's slots with KALIGN_RAY_ADDRESS=local: a Ray started here with 4 CPUs (two slots of
    2 threads, whatever this machine has: the runs here are tiny)."""
    previous = os.environ.get("KALIGN_RAY_ADDRESS")
    os.environ["KALIGN_RAY_ADDRESS"] = "local"
    ray_pool.connect("local", local_cpus=4)
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


def test_a_page_sweep_trains_its_blocks_in_the_ray_slots_with_the_library_s_numbers(
    ray_slots, small_config, tmp_path, monkeypatch, keep_torch_threads
):
    spec = SweepSpec(small_config(epochs=1), pairs=((0, 1), (2, 3), (4, 5)), seeds=(0, 1))
    options = SweepOptions(workers=2, threads_per_trial=1)
    blocks = []
    trained_on_ray = ray_slots.workers.run_block
    monkeypatch.setattr(ray_slots.workers, "run_block", lambda *args: blocks.append(args[0]) or trained_on_ray(*args))
    job = jobs.SweepJob(spec, tmp_path / "ray", options, run_block=ray_slots.block_runner()).start()
    assert job.wait(180) and job.status().state == "finished", job.status().error
    assert len(blocks) == 2 and sum(map(len, blocks)) == 6 and ray_slots.running == 0
    here = run_sweep(spec, tmp_path / "here", replace(options, in_process=True))

    def numbers(summaries):
        return sorted((replace(s, seconds=0.0) for s in summaries), key=lambda s: s.trial_id)

    assert numbers(job.status().summaries) == numbers(here.summaries)


def test_stop_reaches_a_page_sweep_in_the_ray_slots_and_keeps_its_folder(ray_slots, small_config, tmp_path):
    spec = SweepSpec(small_config(epochs=500), pairs=((0, 1),))
    job = jobs.SweepJob(spec, tmp_path, SweepOptions(workers=1), run_block=ray_slots.block_runner()).start()
    wait_until(lambda: ray_slots.running, lambda running: running == 1, timeout=120)
    job.stop()
    assert job.wait(60) and job.status().state == "stopped"
    assert ray_slots.running == 0 and (tmp_path / "sweep.json").exists()


def test_the_width_lab_on_ray_trains_its_sweep_in_the_job_slots(ray_slots, fresh_server, monkeypatch, tmp_path):
    monkeypatch.setenv("KALIGN_RAY_ADDRESS", "local")
    monkeypatch.setattr(jobs, "server_slots", lambda: ray_slots)  # the cluster's slots, as the server has them
    blocks = []
    trained_on_ray = ray_slots.workers.run_block
    monkeypatch.setattr(ray_slots.workers, "run_block", lambda *args: blocks.append(args[0]) or trained_on_ray(*args))
    at = open_app()
    at.session_state["settings"] = {**at.session_state["settings"], "probe_size": 40, "batch_size": 100}
    at.switch_page("pages/width_lab.py").run()
    at.multiselect(key="lab_widths").set_value([32, 64])
    at.number_input(key="lab_epochs").set_value(1)
    at.multiselect(key="lab_parametrizations").set_value(["mup"])
    at.number_input(key="lab_seeds").set_value(1).run()
    assert "job slot of the Ray cluster" in texts(at.info)
    at.button(key="run_lab").click().run()
    assert at.session_state["sweep_job"].wait(180)
    at.run()
    assert not at.exception and not at.error
    assert "All 2 trials" in texts(at.success)
    assert sum(map(len, blocks)) == 2 and ray_slots.running == 0


def test_a_lost_actor_ends_a_page_sweep_in_words_and_keeps_what_it_saved(ray_slots, small_config, tmp_path):
    ray_slots.workers.warm()
    pids = ray_slots.workers.pids  # the slots' actors, one of which the sweep's block takes
    spec = SweepSpec(small_config(epochs=500), pairs=((0, 1),))
    job = jobs.SweepJob(spec, tmp_path, SweepOptions(workers=1), run_block=ray_slots.block_runner()).start()
    wait_until(lambda: ray_slots.running, lambda running: running == 1, timeout=120)
    for pid in pids:  # as a lost node would end them
        os.kill(pid, signal.SIGKILL)
    assert job.wait(60)
    assert job.status().state == "failed" and job.status().error == jobs.SWEEP_WORKER_DIED
    assert ray_slots.running == 0 and (tmp_path / "sweep.json").exists()
