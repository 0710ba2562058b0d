"""The Width lab's form settings: their allowed values, defaults, the named presets a teacher links to,
and the lab's URL query parameters (`/width_lab?preset=ntk-vs-mup`, or every setting as `lab_*`).
A bad URL value or an unknown preset becomes a message naming the parameter and the allowed values,
and the setting keeps its default. Nothing here imports Streamlit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kalign_core.config import MAX_EPOCHS, ConfigError, check_digits, check_int
from kalign_core.parametrization import PARAMETRIZATIONS

WIDTHS = tuple(2**k for k in range(5, 15))  # 32 … 16,384, log-spaced
MAX_SEEDS = 10
MAX_RATE = 100.0  # the form's learning-rate inputs
MIN_REGULAR_RATE = 1e-6
DEFAULTS = {
    "parametrizations": ["ntk", "mup"],
    "widths": [64, 256, 1024],
    "pair": (8, 9),
    # Rates at which ntk and μP learned 3 vs 5 of the sample within two epochs at batch 50.
    "slow_lr": 0.5,
    "regular_lr": 5.0,
    "epochs": 2,
    "seeds": 2,
}
# What the form calls each setting.
LABELS = {
    "parametrizations": "Parametrizations",
    "widths": "Hidden widths",
    "pair": "Digits",
    "slow_lr": "Slow learning rate",
    "regular_lr": "Regular learning rate",
    "epochs": "Epochs",
    "seeds": "Seeds",
}
PRESET_PARAM = "preset"


def url_param(field: str) -> str:
    """The URL query parameter of a lab setting, e.g. lab_widths (apart from the Train page's)."""
    return f"lab_{field}"


URL_PARAMS = (PRESET_PARAM, *(url_param(field) for field in LABELS))


@dataclass(frozen=True)
class Preset:
    title: str
    about: str  # what to look at, for the class
    settings: Mapping


PRESETS = {
    "ntk-vs-mup": Preset(
        "NTK vs μP, 64–4096",
        "The same networks under the two scalings at widths 64 to 4096: under ntk the hidden weights of the "
        "wider networks move less (theory: slope −½), under μP about as much at every width (slope 0).",
        {**DEFAULTS, "widths": [64, 256, 1024, 4096], "epochs": 3},
    ),
    "standard-gets-lazy": Preset(
        "Standard gets lazy at fixed lr",
        "PyTorch's own parametrization at the Train page's learning rates, the same at every width: the wider "
        "the network, the less its hidden weights move relative to their size.",
        {
            **DEFAULTS,
            "parametrizations": ["standard"],
            "widths": [64, 256, 1024, 4096],
            "slow_lr": 0.001,
            "regular_lr": 0.01,
            "epochs": 5,
        },
    ),
    "coordinate-check": Preset(
        "Coordinate check",
        "μP's coordinate check over one epoch for all three parametrizations: look at the sizes after the first "
        "SGD steps (t = 1 … 4) against width below the charts; flat lines pass the check.",
        {**DEFAULTS, "parametrizations": list(PARAMETRIZATIONS), "widths": [64, 256, 1024, 4096], "epochs": 1},
    ),
}


def _allowed(field: str) -> str:
    """The allowed values of a setting, in words."""
    return {
        "parametrizations": f"one or more of {', '.join(PARAMETRIZATIONS)}, separated by commas",
        "widths": f"one or more of {', '.join(map(str, WIDTHS))} (powers of two), separated by commas",
        "pair": "two different digits from 0 to 9, separated by a comma",
        "slow_lr": f"a number from 0 to {MAX_RATE:g}",
        "regular_lr": f"a number from {MIN_REGULAR_RATE:g} to {MAX_RATE:g}",
        "epochs": f"a whole number from 1 to {MAX_EPOCHS}",
        "seeds": f"a whole number from 1 to {MAX_SEEDS}",
    }[field]


def _parse(field: str, text: str):
    """The setting's value for URL text; ValueError when it is not one the form allows."""
    parts = [part.strip() for part in text.split(",")]
    if field == "parametrizations" and parts and set(parts) <= set(PARAMETRIZATIONS):
        return [p for p in PARAMETRIZATIONS if p in parts]
    if field == "widths" and parts and all(p.isdigit() and int(p) in WIDTHS for p in parts):
        return sorted({int(p) for p in parts})
    if field == "pair":
        try:
            pair = check_digits([int(p) for p in parts])
        except (ConfigError, ValueError):
            raise ValueError(text) from None
        if len(pair) == 2:
            return tuple(sorted(pair))
    if field in ("slow_lr", "regular_lr"):
        low = 0.0 if field == "slow_lr" else MIN_REGULAR_RATE
        value = float(text)  # ValueError when not a number
        if low <= value <= MAX_RATE:
            return value
    if field in ("epochs", "seeds"):
        value = int(text)
        try:
            check_int(field, value, 1, MAX_EPOCHS if field == "epochs" else MAX_SEEDS)
        except ConfigError:
            raise ValueError(text) from None
        return value
    raise ValueError(text)


def settings_from_query(query: Mapping[str, str]) -> tuple[dict, str | None, list[str]]:
    """The lab's settings for a URL's query: the defaults, then the preset it names, then each lab_*
    parameter; the preset applied (None if none) and a message for each value ignored."""
    settings, warnings, preset = dict(DEFAULTS), [], None
    name = query.get(PRESET_PARAM)
    if name is not None:
        if name in PRESETS:
            preset = name
            settings.update(PRESETS[name].settings)
        else:
            warnings.append(
                f"Unknown preset {_shown(name)} in the link; the presets are {', '.join(PRESETS)}. "
                "The lab's default settings are filled in."
            )
    for field, label in LABELS.items():
        text = query.get(url_param(field))
        if text is None:
            continue
        try:
            settings[field] = _parse(field, text)
        except (ValueError, OverflowError):
            warnings.append(
                f"Ignored URL parameter {url_param(field)}={_shown(text)}: {label} must be {_allowed(field)}."
            )
    return settings, preset, warnings


def query_from_settings(settings: Mapping) -> dict[str, str]:
    """The lab's URL parameters for its settings: the preset's name when they are exactly a preset's,
    else every setting (so a link opens the same form)."""
    chosen = {field: settings[field] for field in LABELS}
    for name, preset in PRESETS.items():
        if {field: preset.settings[field] for field in LABELS} == chosen:
            return {PRESET_PARAM: name}
    return {url_param(field): _text(value) for field, value in chosen.items()}


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _shown(text: str) -> str:
    """A URL value as a message repeats it: quoted, and cut short when long."""
    return repr(text[:40] + "…" if len(text) > 40 else text)
