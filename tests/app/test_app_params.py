"""What users type: form settings, URL query parameters, run names and runs folders."""

import pytest

from kalign_app import params
from kalign_core import ExperimentConfig

DEFAULTS = ExperimentConfig().to_dict()


def test_config_round_trips_through_query_parameters():
    config = ExperimentConfig(
        digits=(3, 5, 7), width=64, slow_lr=0.0, regular_lr=2.5e-3, epochs=3, seed=11, probe_size=60, source="sample"
    )
    query = params.config_to_params(config)
    assert query["digits"] == "3,5,7" and all(isinstance(v, str) for v in query.values())
    settings, warnings = params.settings_from_params(query, DEFAULTS)
    assert warnings == []
    assert params.config_from_settings(settings) == config


@pytest.mark.parametrize("lazy_scale", [None, 1.0, 37.5, 1000.0])
def test_the_lazy_scale_round_trips_through_query_parameters_off_included(lazy_scale):
    config = ExperimentConfig(lazy_scale=lazy_scale, source="sample")
    query = params.config_to_params(config)
    assert query["lazy_scale"] == ("off" if lazy_scale is None else str(lazy_scale))
    settings, warnings = params.settings_from_params(query, {**DEFAULTS, "lazy_scale": 5.0})
    assert warnings == [] and params.config_from_settings(settings) == config


@pytest.mark.parametrize("text", ["", "off", "OFF", " none "])
def test_an_empty_or_off_lazy_scale_in_the_url_is_off(text):
    settings, warnings = params.settings_from_params({"lazy_scale": text}, {**DEFAULTS, "lazy_scale": 5.0})
    assert warnings == [] and settings["lazy_scale"] is None


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("digits", "8", "digits must be 2 to 10 distinct whole numbers from 0 to 9"),
        ("digits", "8,8", "repeats a digit"),
        ("digits", "8,x", "digits must be 2 to 10"),
        ("digits", "8,12", "digits must be 2 to 10"),
        ("width", "0", "width must be a whole number from 1 to 32,768 (got 0)"),
        ("width", "1.5", "width must be a whole number from 1 to 32,768 (got '1.5')"),
        ("width", "9" * 30, "width must be a whole number from 1 to 32,768"),
        ("slow_lr", "-1", "slow_lr must be a finite number 0 or more"),
        ("regular_lr", "0", "regular_lr must be a finite number greater than 0"),
        ("regular_lr", "inf", "regular_lr must be a finite number greater than 0"),
        ("regular_lr", "fast", "regular_lr must be a finite number greater than 0 and at most 1,000,000 (got 'fast')"),
        ("epochs", "0", "epochs must be a whole number from 1"),
        ("batch_size", "-5", "batch_size must be a whole number from 1"),
        ("probe_size", "2", "probe_size must be a whole number from 4"),
        ("source", "web", "source must be one of auto, mnist, sample"),
        ("device", "tpu", "device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'"),
        ("device", "cuda:7", "is not available here"),
        ("lazy_scale", "0.5", "lazy_scale must be off or a number from 1 to 1,000 (got 0.5)"),
        ("lazy_scale", "lazy", "lazy_scale must be off or a number from 1 to 1,000 (got 'lazy')"),
        ("lazy_scale", "nan", "lazy_scale must be off or a number from 1 to 1,000"),
    ],
)
def test_bad_query_parameter_is_ignored_with_a_warning_naming_it(name, text, expected):
    settings, warnings = params.settings_from_params({name: text}, DEFAULTS)
    assert settings == DEFAULTS
    assert len(warnings) == 1 and warnings[0].startswith(f"Ignored URL parameter {name}=")
    assert expected in warnings[0]


def test_unknown_query_parameters_are_named_and_long_values_shortened():
    settings, warnings = params.settings_from_params({"bogus": "1", "width": "x" * 500}, DEFAULTS)
    assert settings == DEFAULTS
    assert "unknown URL parameter(s) 'bogus'" in warnings[0]
    assert len(warnings[1]) < 250 and "…" in warnings[1]


def test_form_settings_report_every_bad_field_with_its_label():
    settings = {**DEFAULTS, "digits": [4], "width": -3, "regular_lr": 0.0}
    with pytest.raises(params.SettingsError) as caught:
        params.config_from_settings(settings)
    assert caught.value.fields == {"digits", "width", "regular_lr"}
    messages = caught.value.messages()
    assert messages[0].startswith("Digits must be 2 to 10")
    assert messages[1] == "Hidden width must be a whole number from 1 to 32,768 (got -3)"
    assert messages[2].startswith("Regular learning rate must be a finite number greater than 0")
    assert not any("_" in message for message in messages)  # the form's labels, never code names


@pytest.mark.parametrize(
    "clash, fields, expected",
    [
        (
            {"epochs": 500, "probe_size": 300},
            {"epochs", "probe_size"},
            "Epochs 500 × Probe size 300 keep 344 MB of kernels (they grow with the probe size squared); the limit is "
            "256 MB: lower either",
        ),
        (
            {"batch_size": 801, "source": "sample"},
            {"batch_size"},
            "Batch size must be from 1 to 800, the training digits available (got 801)",
        ),
        (
            {"probe_size": 201, "source": "sample"},
            {"probe_size"},
            "Probe size must be from 4 to 200, the held-out digits available (got 201)",
        ),
        (
            {"digits": list(range(10)), "probe_size": 5, "source": "sample"},
            {"probe_size"},
            "Probe size must be from 10 to 1,000",
        ),
    ],
)
def test_settings_valid_alone_but_not_together_are_named_in_words(clash, fields, expected):
    with pytest.raises(params.SettingsError) as caught:
        params.config_from_settings({**DEFAULTS, **clash})
    assert caught.value.fields == fields
    assert caught.value.messages()[0].startswith(expected)


def test_clashing_query_parameters_are_ignored_and_the_rest_kept():
    query = {"probe_size": "1000", "epochs": "500", "width": "64", "source": "sample"}
    settings, warnings = params.settings_from_params(query, DEFAULTS)
    assert settings == {**DEFAULTS, "width": 64, "source": "sample"}
    assert warnings == [
        "Ignored URL parameter(s) epochs='500', probe_size='1000': epochs 500 × probe_size 1000 keep "
        "3,822 MB of kernels (they grow with the probe size squared); the limit is 256 MB: lower either"
    ]
    params.config_from_settings(settings)  # what is kept trains

    settings, warnings = params.settings_from_params({"batch_size": "5000", "source": "sample"}, DEFAULTS)
    assert settings == {**DEFAULTS, "source": "sample"}
    assert "batch_size must be from 1 to 800, the training digits available (got 5000)" in warnings[0]


def test_default_source_comes_from_the_environment_when_valid():
    assert params.default_settings({"KALIGN_DEFAULT_SOURCE": "sample"}) == ({**DEFAULTS, "source": "sample"}, [])
    settings, warnings = params.default_settings({"KALIGN_DEFAULT_SOURCE": "floppy"})
    assert settings == DEFAULTS and "KALIGN_DEFAULT_SOURCE ignored: source must be one of" in warnings[0]


@pytest.mark.parametrize(
    "text, name",
    [
        ("lesson 1", "lesson-1"),
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path", "abs-path"),
        (".hidden", "hidden"),
        ("ok_name-2.v1", "ok_name-2.v1"),
        ("x" * 100, "x" * params.RUN_NAME_MAX),
    ],
)
def test_run_names_cannot_leave_the_runs_folder(text, name):
    assert params.run_name(text) == name


@pytest.mark.parametrize("text", ["", "   ", "..", "/", "***"])
def test_run_names_without_letters_are_refused(text):
    with pytest.raises(ValueError, match="run name must contain letters or digits"):
        params.run_name(text)


def test_runs_folder_must_be_inside_the_base(tmp_path):
    base = tmp_path / "runs"
    assert params.runs_folder(str(base), base) == base.resolve()
    assert params.runs_folder("lesson1", base) == (base / "lesson1").resolve()
    assert params.runs_folder(str(base / "a" / "b"), base) == (base / "a" / "b").resolve()
    for outside in ("..", str(tmp_path), "/etc", "lesson1/../../x"):
        with pytest.raises(ValueError, match="runs folder must be"):
            params.runs_folder(outside, base)


def test_run_path_refuses_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    assert params.run_path(tmp_path, "fresh run") == tmp_path / "fresh-run"
    with pytest.raises(ValueError, match="is a link"):
        params.run_path(tmp_path, "linked")


@pytest.mark.parametrize("linearized_twin", [False, True])
def test_the_linearized_twin_round_trips_through_query_parameters_as_on_or_off(linearized_twin):
    config = ExperimentConfig(linearized_twin=linearized_twin, source="sample")
    query = params.config_to_params(config)
    assert query["linearized_twin"] == ("on" if linearized_twin else "off")
    settings, warnings = params.settings_from_params(query, {**DEFAULTS, "linearized_twin": not linearized_twin})
    assert warnings == [] and params.config_from_settings(settings) == config


def test_a_url_twin_beyond_its_memory_is_ignored_with_its_width_and_the_rest_kept():
    settings, warnings = params.settings_from_params(
        {"linearized_twin": "on", "width": "32768", "epochs": "3"}, {**DEFAULTS, "source": "mnist"}
    )
    assert settings == {**DEFAULTS, "source": "mnist", "epochs": 3}
    [warning] = warnings
    assert warning.startswith("Ignored URL parameter(s) width='32768', linearized_twin='on': linearized_twin keeps")
    assert "above its limit of 1,024 MB" in warning
