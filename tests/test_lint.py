"""The code passes ruff's lint rules and is formatted as ruff formats it (settings in pyproject.toml):
CI runs this through the README's test command."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_passes(command):
    ran = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, f"ruff {' '.join(command)} failed:\n{ran.stdout}\n{ran.stderr}"
