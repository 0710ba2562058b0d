"""A crash while writing a run leaves the old or the new version, never a half-written one: a
writer process saving two alternating versions is killed at random moments, then the run loads.
Every file kalign writes goes through one helper, `files.write_atomically`."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from kalign_core import ExperimentConfig, run_experiment
from kalign_core.files import write_atomically
from kalign_core.runs import load_run, save_run

WRITER = textwrap.dedent(
    """
    import sys, itertools
    from kalign_core.runs import load_run, save_run
    version = [load_run(sys.argv[1]), load_run(sys.argv[2])]
    print("ready", flush=True)
    for i in itertools.count():
        save_run(version[i % 2], sys.argv[3])
    """
)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    paths = []
    for seed in (0, 1):
        result = run_experiment(ExperimentConfig(width=16, epochs=1, seed=seed, source="sample", device="cpu"))
        paths.append(save_run(result, root / f"seed{seed}"))
    return paths


@pytest.mark.slow
def test_killed_writer_leaves_a_whole_version(two_versions, tmp_path):
    target = tmp_path / "run"
    save_run(load_run(two_versions[0]), target)
    seeds_seen = set()
    for attempt in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, *map(str, two_versions), str(target)],
            stdout=subprocess.PIPE,
            cwd=os.getcwd(),
        )
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.07 * attempt)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        loaded = load_run(target)  # must not raise: complete, consistent files
        assert len(loaded.kernels["slow"]) == len(loaded.history["slow"])
        seeds_seen.add(loaded.config.seed)
    assert seeds_seen <= {0, 1}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run"]
    assert all(name.startswith(".run.") for name in leftovers), leftovers


@pytest.mark.slow
def test_saved_run_survives_a_restart(two_versions):
    """A fresh interpreter (a restarted server) loads the run with its weights."""
    code = (
        f"from kalign_core.runs import load_run; r = load_run({str(two_versions[1])!r}); "
        "print(r.config.seed, *sorted(r.models))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "regular", "slow"]


def test_write_atomically_replaces_whole_files_like_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = write_atomically(tmp_path / "summary.csv", "first")
    assert path.read_text() == "first"
    write_atomically(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "summary.csv"]  # no temporary left
    assert path.stat().st_mode == plain.stat().st_mode  # readable as any file the user writes
