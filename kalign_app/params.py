"""What users type, checked: form settings and URL query parameters to an ExperimentConfig, and run
names that cannot leave the runs folder. Every problem becomes a message naming the field and the
allowed values; nothing here raises on bad user input except with such a message.

"Settings" are the form's values as a dict keyed by ExperimentConfig's field names (digits a list).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping

from kalign_app import environment, width_lab_settings
from kalign_core.config import SETTINGS, ConfigError, ExperimentConfig, Setting
from kalign_core.data import digit_counts
from kalign_core.devices import check_device

# The form's label for each ExperimentConfig field.
FIELD_LABELS = {name: setting.label for name, setting in SETTINGS.items()}
# The URL parameter naming the session's run while it trains (a reload finds it again by it).
RUN_PARAM = "run"
# Query parameters that a page reads for itself (not settings): kept in the URL, never warned about.
# A running sweep's id (Sweeps page, Width lab), so that a reload finds it again.
SWEEP_PARAM = "sweep_run"
PAGE_PARAMS = ("lesson", RUN_PARAM, SWEEP_PARAM, *width_lab_settings.URL_PARAMS)
# How a URL says an optional setting (the lazy scale) is off (None); config_to_params writes the first.
_OFF_WORDS = ("off", "", "none")
# How a URL says a switch (the linearized twin) is on or off; config_to_params writes the first.
_SWITCH_WORDS = {True: ("on", "true", "yes", "1"), False: ("off", "false", "no", "0")}
_SHOWN_CHARS = 40  # how much of a bad URL value a message repeats
RUN_NAME_MAX = 64


class SettingsError(ValueError):
    """One or more invalid settings: `problems` are ConfigErrors, each naming the fields at fault."""

    def __init__(self, problems: list[ConfigError]):
        self.problems = problems
        super().__init__("; ".join(self.messages()))

    @property
    def fields(self) -> set[str]:
        return {field for problem in self.problems for field in problem.fields}

    def messages(self, names: Mapping[str, str] = FIELD_LABELS) -> list[str]:
        """Each problem in words, its settings called by `names` (the form's labels by default)."""
        return [capitalised(problem.describe(names)) for problem in self.problems]


def field_error(name: str, value) -> ConfigError | None:
    """Why `value` is not allowed for config field `name` on its own, or None when it is."""
    try:
        dataclasses.replace(ExperimentConfig(), **{name: value})
        if name == "device":
            check_device(value)  # a well-formed name may still be absent from this machine
    except ConfigError as error:
        return error
    return None


def config_from_settings(settings: Mapping) -> ExperimentConfig:
    """The config for these settings, checked field by field, then together (e.g. epochs × probe
    size), then against the digits the data source has; SettingsError lists every problem found."""
    problems = [error for name in SETTINGS if (error := field_error(name, settings[name]))]
    if problems:
        raise SettingsError(problems)
    try:
        config = ExperimentConfig(**settings)
        config.check_fits(*digit_counts(config.digits, config.source))
    except ConfigError as error:
        raise SettingsError([error]) from None
    return config


def default_settings(environ: Mapping[str, str] = os.environ) -> tuple[dict, list[str]]:
    """ExperimentConfig's defaults, with the data source from KALIGN_DEFAULT_SOURCE when set."""
    settings = ExperimentConfig().to_dict()
    source = environment.default_source(environ)
    if source is None:
        return settings, []
    problem = field_error("source", source)
    if problem:
        return settings, [f"KALIGN_DEFAULT_SOURCE ignored: {problem}"]
    return {**settings, "source": source}, []


def settings_from_config(config: ExperimentConfig) -> dict:
    """The form's settings for a run's config (a device this machine lacks becomes "auto")."""
    settings = config.to_dict()
    if field_error("device", config.device):
        settings["device"] = "auto"
    return settings


def config_to_params(config: ExperimentConfig) -> dict[str, str]:
    """The config as URL query parameters (all fields, so a link means the same on any server)."""
    return {name: _text(SETTINGS[name], value) for name, value in config.to_dict().items()}


def _text(setting: Setting, value) -> str:
    if setting.kind is bool:
        return _SWITCH_WORDS[value][0]
    if setting.many:
        return ",".join(map(str, value))
    return _OFF_WORDS[0] if value is None else str(value)


def settings_from_params(params: Mapping[str, str], settings: Mapping) -> tuple[dict, list[str]]:
    """`settings` with each valid query parameter applied, and a warning for each one ignored:
    first those invalid on their own, then those that clash with the others (e.g. epochs=500 with
    probe_size=1000); the rest are kept."""
    updated, warnings = dict(settings), []
    unknown = sorted(set(params) - set(SETTINGS) - set(PAGE_PARAMS))
    if unknown:
        warnings.append(
            f"Ignored unknown URL parameter(s) {', '.join(_shown(k) for k in unknown)}; "
            f"known ones are {', '.join(SETTINGS)}."
        )
    applied = []
    for name in SETTINGS:
        if name not in params:
            continue
        value = _parse(name, params[name])
        problem = field_error(name, value)
        if problem:
            warnings.append(f"Ignored URL parameter {name}={_shown(params[name])}: {_clipped(problem.describe())}")
        else:
            updated[name] = list(value) if SETTINGS[name].many else value
            applied.append(name)
    while applied:
        try:
            config_from_settings(updated)
            break
        except SettingsError as error:
            clashing = [name for name in applied if name in error.fields]
            if not clashing:
                break  # the settings it came with are at fault, not the URL
            for name in clashing:
                updated[name] = settings[name]
                applied.remove(name)
            shown = ", ".join(f"{name}={_shown(params[name])}" for name in clashing)
            warnings.append(f"Ignored URL parameter(s) {shown}: {'; '.join(p.describe() for p in error.problems)}")
    return updated, warnings


def _parse(name: str, text: str):
    """The typed value for a query parameter, or the text itself when it does not parse (the
    config's check then reports it with the allowed range)."""
    setting, text = SETTINGS[name], text.strip()
    try:
        if setting.many:
            return [setting.kind(part) for part in text.split(",")]
        if setting.optional and text.lower() in _OFF_WORDS:
            return None
        if setting.kind is bool:
            return next((value for value, words in _SWITCH_WORDS.items() if text.lower() in words), text)
        return setting.kind(text)
    except ValueError:
        return text


def capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _clipped(message: str) -> str:
    """A message that repeats a huge value, cut after the part that states the allowed range."""
    return message if len(message) <= 4 * _SHOWN_CHARS else message[: 4 * _SHOWN_CHARS] + "…)"


def run_name(text: str) -> str:
    """A folder name for a saved run: letters, digits, '.', '_' and '-' only, never starting with a
    dot, so it cannot name a parent, a hidden or an absolute path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip(".-")[:RUN_NAME_MAX]
    if not name:
        raise ValueError(
            f"run name must contain letters or digits (A-Z, a-z, 0-9, '.', '_', '-'; "
            f"up to {RUN_NAME_MAX} characters) (got {_shown(text)})"
        )
    return name


def runs_folder(text: str, base: pathlib.Path) -> pathlib.Path:
    """The folder `text` names, which must be `base` or inside it (relative paths are within `base`)."""
    base = base.resolve()
    folder = (base / text.strip()).resolve()
    if folder != base and base not in folder.parents:
        raise ValueError(f"runs folder must be {base} or a folder inside it (got {_shown(text)})")
    return folder


def run_path(folder: pathlib.Path, text: str) -> pathlib.Path:
    """Where run `text` lives in `folder`; a link there is refused so writes stay in the folder."""
    path = folder / run_name(text)
    if path.is_symlink():
        raise ValueError(f"run name {path.name!r} is a link in {folder}; choose another name")
    return path
