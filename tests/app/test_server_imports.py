"""The app's server only draws: training runs in worker processes, so the modules a page needs load
without torch (seconds on a small machine), and a newcomer's form is not kept waiting for it."""

import subprocess
import sys

import pytest

from apptest import ROOT


def test_the_server_draws_the_train_page_without_importing_torch():
    modules = (
        "kalign_app.ui, kalign_app.params, kalign_app.jobs, kalign_app.wording, kalign_app.figures, kalign_core.results"
    )
    check = f"import sys; import {modules}; assert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_library_still_offers_its_names_at_the_top_level():
    check = (
        "import kalign_core as k; k.ExperimentConfig(); "
        "assert k.run_experiment.__module__ == 'kalign_core.engine.training'"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
