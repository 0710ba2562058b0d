"""The server's settings, read from its environment in this one place (the library's own, the MNIST
folder KALIGN_DATA_DIR, is read by kalign_core.data)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

from kalign_core.devices import cpu_count


def default_source(environ: Mapping[str, str] = os.environ) -> str | None:
    """KALIGN_DEFAULT_SOURCE: the data source the forms start on (unchecked), None when unset."""
    return environ.get("KALIGN_DEFAULT_SOURCE")


def password(environ: Mapping[str, str] = os.environ) -> str | None:
    """KALIGN_PASSWORD: the password every browser session must give first, None when unset or empty
    (`password` in .streamlit/secrets.toml is the other place for it: see kalign_app/password.py)."""
    return environ.get("KALIGN_PASSWORD") or None


def job_limit(environ: Mapping[str, str] = os.environ, cores: int | None = None, threads: int = 2) -> int:
    """KALIGN_MAX_JOBS, or the cores (this machine's, or `cores` of a cluster) over `threads` per
    job, at least 1."""
    text = environ.get("KALIGN_MAX_JOBS", "").strip()
    if not text:
        return max(1, (cores or cpu_count()) // threads)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"KALIGN_MAX_JOBS must be a whole number of 1 or more (got {text!r})")
    return int(text)


def runs_base(environ: Mapping[str, str] = os.environ) -> pathlib.Path:
    """The server's runs folder: KALIGN_RUNS_DIR, or ./runs. Users may pick folders inside it only."""
    return pathlib.Path(environ.get("KALIGN_RUNS_DIR", "runs")).resolve()


def sweeps_base(environ: Mapping[str, str] = os.environ) -> pathlib.Path:
    """The server's sweeps folder: KALIGN_SWEEPS_DIR, or ./sweeps; each sweep is a folder in it."""
    return pathlib.Path(environ.get("KALIGN_SWEEPS_DIR", "sweeps")).resolve()


def ray_address(environ: Mapping[str, str] = os.environ) -> str | None:
    """KALIGN_RAY_ADDRESS: the Ray cluster the dashboard's runs train on ("local": one started on
    this machine); None when unset: runs train in this machine's worker processes."""
    return environ.get("KALIGN_RAY_ADDRESS", "").strip() or None
