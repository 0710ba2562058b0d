"""ExperimentConfig: every invalid field is a ValueError naming the field and its allowed range."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from kalign_core import ExperimentConfig, available_devices, run_experiment
from kalign_core.config import ConfigError

# (field, bad value, words of the allowed range the message must show)
INVALID = [
    ("digits", (8,), "2 to 10 distinct"),
    ("digits", (), "2 to 10 distinct"),
    ("digits", (8, 8), "repeats"),
    ("digits", (3, 10), "0 to 9"),
    ("digits", (-1, 2), "0 to 9"),
    ("digits", ("a", "b"), "0 to 9"),
    ("digits", ("8", "9"), "0 to 9"),
    ("digits", (8.0, 9.0), "whole numbers"),
    ("digits", (True, False), "whole numbers"),
    ("digits", 7, "2 to 10 distinct"),
    ("digits", None, "2 to 10 distinct"),
    ("width", 0, "from 1 to"),
    ("width", -5, "from 1 to"),
    ("width", 2.5, "from 1 to"),
    ("width", 10**6, "from 1 to"),
    ("width", "100", "from 1 to"),
    ("width", True, "from 1 to"),
    ("width", math.nan, "from 1 to"),
    ("slow_lr", -0.1, "0 or more"),
    ("slow_lr", math.nan, "finite"),
    ("slow_lr", math.inf, "finite"),
    ("slow_lr", "0.1", "finite"),
    ("slow_lr", None, "finite"),
    ("slow_lr", True, "finite"),
    ("regular_lr", 0, "greater than 0"),
    ("regular_lr", 3.402823466385289e38, "at most 1,000,000"),  # once overflowed float32 inside the SGD step
    ("slow_lr", 1e7, "at most 1,000,000"),
    ("regular_lr", 0.0, "greater than 0"),
    ("regular_lr", -1.0, "greater than 0"),
    ("regular_lr", math.nan, "finite"),
    ("regular_lr", -math.inf, "finite"),
    ("regular_lr", "fast", "finite"),
    ("epochs", 0, "from 1 to"),
    ("epochs", -1, "from 1 to"),
    ("epochs", 10**6, "from 1 to"),
    ("epochs", 1.5, "from 1 to"),
    ("batch_size", 0, "from 1 to"),
    ("batch_size", -10, "from 1 to"),
    ("batch_size", 10**7, "from 1 to"),
    ("probe_size", 0, "from 4 to"),
    ("probe_size", 3, "from 4 to"),
    ("probe_size", 10**6, "from 4 to"),
    ("seed", -1, "from 0 to"),
    ("seed", 1.5, "from 0 to"),
    ("source", "web", "auto, mnist, sample"),
    ("source", "", "auto, mnist, sample"),
    ("source", None, "auto, mnist, sample"),
    ("device", "gpu", "'auto', 'cpu'"),
    ("device", "cuda:x", "'auto', 'cpu'"),
    ("device", "", "'auto', 'cpu'"),
    ("device", 3, "'auto', 'cpu'"),
    ("device", None, "'auto', 'cpu'"),
    ("lazy_scale", 0.5, "off or a number from 1 to 1,000"),
    ("lazy_scale", 1001, "off or a number from 1 to 1,000"),
    ("lazy_scale", float("inf"), "off or a number from 1 to 1,000"),
    ("lazy_scale", True, "off or a number from 1 to 1,000"),
    ("lazy_scale", "10", "off or a number from 1 to 1,000"),
    ("linearized_twin", "yes", "must be on or off (got 'yes')"),
    ("linearized_twin", 1, "must be on or off (got 1)"),
    ("linearized_twin", None, "must be on or off (got None)"),
]


@pytest.mark.parametrize("field, value, allowed", INVALID, ids=[f"{f}={v!r}" for f, v, _ in INVALID])
def test_invalid_field_is_a_value_error_naming_field_and_range(field, value, allowed):
    with pytest.raises(ValueError) as raised:
        ExperimentConfig(**{field: value})
    message = str(raised.value)
    assert message.startswith(field), message
    assert allowed in message, message


@pytest.mark.parametrize(
    "field, value",
    [
        ("slow_lr", 0),  # the random-features limit
        ("slow_lr", 0.0),
        ("digits", tuple(range(10))),
        ("digits", [3, 1]),
        ("width", 1),
        ("width", 16_384),
        ("width", np.int64(64)),
        ("regular_lr", 1),
        ("regular_lr", np.float32(0.5)),
        ("probe_size", 4),
        ("device", "cuda:1"),  # a well-formed name; whether it exists is checked at run time
    ],
)
def test_valid_edge_values_are_accepted_and_normalised(field, value):
    config = ExperimentConfig(**{field: value})
    got = getattr(config, field)
    if field == "digits":
        assert got == tuple(value)
    else:
        assert got == value and type(got) is type(ExperimentConfig.__dataclass_fields__[field].default)


@pytest.mark.parametrize("value", [1, 10, np.float32(2.5), 1000.0])
def test_a_lazy_scale_from_1_to_1000_is_a_float(value):
    assert ExperimentConfig(lazy_scale=value).lazy_scale == float(value)
    assert type(ExperimentConfig(lazy_scale=value).lazy_scale) is float


def test_defaults_are_the_notebooks():
    config = ExperimentConfig()
    assert (config.digits, config.width, config.slow_lr, config.regular_lr, config.batch_size) == (
        (8, 9),
        2000,
        0.001,
        0.01,
        200,
    )


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExperimentConfig().width = 3


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_an_unavailable_device_is_a_value_error_from_run_experiment(device):
    wanted = "cuda:0" if device == "cuda" else device
    if wanted in available_devices():
        pytest.skip(f"{device} exists on this machine")
    with pytest.raises(ValueError, match=f"device {device!r} is not available"):
        run_experiment(ExperimentConfig(device=device, width=8, epochs=1, source="sample"))


def test_auto_device_picks_cuda_then_mps_then_cpu():
    config = ExperimentConfig(width=8, epochs=1, batch_size=400, probe_size=20, source="sample")
    expected = "cuda:0" if torch.cuda.is_available() else available_devices()[0]
    assert run_experiment(config).device == expected


def test_dict_round_trip_through_json():
    config = ExperimentConfig(
        digits=(1, 7, 3),
        width=64,
        slow_lr=0.0,
        regular_lr=0.2,
        batch_size=32,
        epochs=3,
        seed=9,
        device="cpu",
        probe_size=30,
        source="sample",
    )
    d = config.to_dict()
    assert d["digits"] == [1, 7, 3]
    assert ExperimentConfig.from_dict(json.loads(json.dumps(d))) == config


def test_from_dict_missing_keys_take_defaults():
    assert ExperimentConfig.from_dict({"width": 10}) == ExperimentConfig(width=10)


def test_from_dict_rejects_unknown_keys_and_non_objects():
    with pytest.raises(ValueError, match="unknown config field.*hidden_lr"):
        ExperimentConfig.from_dict({"width": 10, "hidden_lr": 0.1})
    with pytest.raises(ValueError, match="JSON object"):
        ExperimentConfig.from_dict([("width", 10)])
    with pytest.raises(ValueError, match="^epochs"):
        ExperimentConfig.from_dict({"epochs": 0})


def test_public_api_is_importable_from_the_package():
    import kalign_core

    public = [
        "ExperimentConfig",
        "run_experiment",
        "load_digits",
        "centered_alignment",
        "feature_alignment",
        "save_run",
        "load_run",
    ]
    assert all(callable(getattr(kalign_core, name)) for name in public)


def test_a_linearized_twin_beyond_its_memory_names_the_settings_and_the_limit():
    """All of full MNIST (70,000 digits) at width 4,096 keeps 1,094 MB of initial features; 3,834 fits."""
    config = ExperimentConfig(digits=tuple(range(10)), width=4096, linearized_twin=True)
    with pytest.raises(ConfigError) as raised:
        config.check_fits(60_000, 10_000)
    assert raised.value.fields == ("linearized_twin", "width")
    assert str(raised.value) == (
        "linearized_twin keeps the initial features of all 70,000 digits at width 4,096: 1,094 MB, above its limit "
        "of 1,024 MB; lower the width, choose fewer digits or turn the twin off"
    )
    dataclasses.replace(config, width=3834).check_fits(60_000, 10_000)
    dataclasses.replace(config, linearized_twin=False).check_fits(60_000, 10_000)
