"""Shared fixtures: the bundled 8-vs-9 sample and a small, fast experiment config."""

import pytest

from kalign_core import ExperimentConfig, load_digits


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
