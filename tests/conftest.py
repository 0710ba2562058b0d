"""Shared fixtures: the bundled 8-vs-9 sample, a small, fast experiment config, and a fresh app server."""

import socket

import pytest
import streamlit as st
import torch
from torchvision.datasets import MNIST

from apptest import TINY_CONFIG
from kalign_core import ExperimentConfig, load_digits, run_experiment


@pytest.fixture(scope="session", autouse=True)
def own_data_folder(tmp_path_factory):
    """No test reads or writes the user's MNIST cache: KALIGN_DATA_DIR is an empty folder of the
    test session's own (inherited by the training processes), so a test that fakes a download can
    never leave fake digits where the app would train on them. Nor does any test reach the network:
    MNIST's mirrors point at a closed local port (a background fetch that an "auto" page starts
    retries against it, not against the internet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KALIGN_DATA_DIR", str(tmp_path_factory.mktemp("kalign-data")))
        patch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{closed_port}/"])
        yield


@pytest.fixture(scope="session")
def sample_89():
    return load_digits((8, 9), source="sample")


@pytest.fixture
def small_config():
    """ExperimentConfig for a seconds-long CPU run on the sample; keyword arguments override."""

    def make(**overrides) -> ExperimentConfig:
        settings = dict(width=32, epochs=2, batch_size=100, probe_size=40, device="cpu", source="sample")
        return ExperimentConfig(**{**settings, **overrides})

    return make


@pytest.fixture
def keep_torch_threads():
    """Torch's thread count is restored after the test (job slots cap it)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_server(tmp_path, monkeypatch, keep_torch_threads):
    """New job slots and caches, the runs and sweeps folders in tmp_path, the server's default job limit."""
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setenv("KALIGN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("KALIGN_SWEEPS_DIR", str(tmp_path / "sweeps"))
    monkeypatch.setenv("KALIGN_DEFAULT_SOURCE", "sample")
    monkeypatch.delenv("KALIGN_MAX_JOBS", raising=False)
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(scope="module")
def earlier():
    """A finished tiny run a session already shows; no bad input may replace or change it."""
    return run_experiment(TINY_CONFIG)
