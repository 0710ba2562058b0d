"""What a run produces: each model's records per epoch and the run's result, as plain data.

Nothing here imports torch, so the app's server (which only draws: training runs in worker
processes) can hold and show results without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

import numpy as np

from .config import ExperimentConfig

if TYPE_CHECKING:
    from .model import MLP

MODEL_NAMES = ("slow", "regular")
# A model has diverged when a batch loss exceeds this multiple of its initial loss (or is not finite).
DIVERGENCE_FACTOR = 10.0
# EpochRecord's lazy-vs-rich measures (measures/tracking.py computes them).
MEASURES = (
    "tangent_alignment",
    "feature_distance",
    "tangent_distance",
    "hidden_change",
    "readout_change",
    "pattern_stability",
)
# The coordinate check's sizes (engine/coordinate_check.py), of the start both models share and of each
# model at the end, and of each model after each of its first COORDINATE_STEPS SGD steps.
COORDINATES = ("mean_abs_hidden", "mean_abs_output")
COORDINATE_MODELS = ("init", *MODEL_NAMES)
COORDINATE_STEPS = 4


def coordinate_step(model: str, step: int) -> str:
    """The coordinate check's name for `model` after SGD step `step`, e.g. "regular_step2"."""
    return f"{model}_step{step}"


COORDINATE_KEYS = (
    *COORDINATE_MODELS,
    *(coordinate_step(m, t) for m in MODEL_NAMES for t in range(1, COORDINATE_STEPS + 1)),
)

# EpochRecord's linearized-twin fields (engine/twin.py), None in runs without a twin.
LINEAR_MEASURES = ("linear_test_error", "linear_gap")


def _measure(label: str, log: bool = False, required: bool = False):
    """An EpochRecord field that is a measure, with what it is called (`log`: drawn on a log axis)."""
    metadata = {"label": label, "log": log}
    return field(metadata=metadata) if required else field(default=None, metadata=metadata)


@dataclass(frozen=True)
class EpochRecord:
    """One model after `epoch` epochs (0 = at initialisation). Errors in percent.

    train_error and loss at epoch 0 are measured on the whole training set; after that they are the
    running means over the epoch's batches (what the training loop already computes, for free).
    With a lazy scale α the errors and loss are those of the trained predictor α·(f − f₀).

    Lazy vs rich, on the probe against the model at initialisation (exactly 0, 0, 0, 0, 0 and 1 at
    epoch 0; None, with `measure_note` saying why, where undefined, and in runs saved before kalign
    measured them): `tangent_alignment` ρ(Θ, YYᵀ) of the tangent kernel; `feature_distance`
    1 − ρ(ΦΦᵀ, Φ₀Φ₀ᵀ); `tangent_distance` 1 − ρ(Θ, Θ₀); `hidden_change` and `readout_change`
    ‖W − W₀‖_F / ‖W₀‖_F of the hidden and readout weight matrices; `pattern_stability` the share of
    (probe digit, hidden unit) ReLU on/off states unchanged.

    With a linearized twin (config.linearized_twin; None otherwise, and in runs saved before kalign
    trained it): `linear_test_error` the twin's test error % and `linear_gap`
    ‖g − g_lin‖_F / ‖g_lin − g₀‖_F over the test digits, how far the network is from its twin
    relative to how far the twin moved (0 at epoch 0; None, with `linear_note` saying why, where
    undefined).
    """

    epoch: int
    train_error: float = _measure("Train error %", required=True)
    test_error: float = _measure("Test error %", required=True)
    loss: float = _measure("Loss (mean cross-entropy)", required=True)
    alignment: float | None = _measure("Alignment ρ(ΦΦᵀ, YYᵀ)", required=True)
    alignment_note: str | None = None
    seconds: float = 0.0
    tangent_alignment: float | None = _measure("Tangent alignment ρ(Θ, YYᵀ)")
    feature_distance: float | None = _measure("Feature kernel distance 1 − ρ(K, K₀)", log=True)
    tangent_distance: float | None = _measure("Tangent kernel distance 1 − ρ(Θ, Θ₀)", log=True)
    hidden_change: float | None = _measure("Hidden-weight change ‖W − W₀‖ / ‖W₀‖", log=True)
    readout_change: float | None = _measure("Readout-weight change ‖A − A₀‖ / ‖A₀‖", log=True)
    pattern_stability: float | None = _measure("ReLU pattern stability")
    measure_note: str | None = None
    linear_test_error: float | None = _measure("Linearized twin's test error %")
    linear_gap: float | None = _measure("Gap from the linearized twin ‖g − g_lin‖ / ‖g_lin − g₀‖")
    linear_note: str | None = None


# What each per-epoch measure of an EpochRecord is called, in its order, and those drawn on a log
# axis: how far a model moved from its start is exactly 0 at epoch 0 and decades apart between a slow
# and a regular model.
MEASURE_LABELS = {f.name: f.metadata["label"] for f in fields(EpochRecord) if "label" in f.metadata}
LOG_MEASURES = tuple(f.name for f in fields(EpochRecord) if f.metadata.get("log"))


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    source: str
    device: str
    history: dict[str, list[EpochRecord]]
    # Centered probe kernels (m×m float32, probe sorted by class): kernels[name][epoch].
    kernels: dict[str, list[np.ndarray]]
    target_kernel: np.ndarray
    probe_labels: np.ndarray
    diverged_at: dict[str, int | None]
    stopped: bool = False
    seconds: float = 0.0
    models: dict[str, MLP] = field(default_factory=dict)
    # Why the data loader fell back to the bundled sample (empty when it did not).
    source_note: str = ""
    # What decides the run's bits besides its config (see `run_provenance`); empty for runs saved
    # before kalign recorded it.
    provenance: dict = field(default_factory=dict)
    # Centered tangent kernels Θ on the probe, like `kernels` (empty for saved runs: not saved).
    tangent_kernels: dict[str, list[np.ndarray]] = field(default_factory=lambda: {n: [] for n in MODEL_NAMES})
    # Test error % of kernel ridge machines (see measures/kernel_machines.py) with each model's kernels at
    # initialisation and at the last epoch: kernel_machine_errors[name]["init" | "final"]["feature" |
    # "tangent"] (None where a kernel is not finite). "final" appears when the run ends.
    kernel_machine_errors: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    # The central 95 % of ρ(K₀, P·YYᵀ·Pᵀ) over 200 label shuffles of the probe, for the initial
    # feature and tangent kernels (shared by both models): alignment_null["feature" | "tangent"] = (low, high).
    alignment_null: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The infinite-width tangent kernel Θ∞ of the run's parametrization on the probe (see
    # measures/infinite_width.py), shared by both models, which start from the same weights:
    # infinite_width["alignment"] ρ(Θ∞, YYᵀ); ["distance"] the initial tangent kernel Θ₀'s distance to Θ∞,
    # √(2(1 − ρ(Θ₀, Θ∞))); ["machine"] the test error % of Θ∞'s ridge machine (when the run ends, beside
    # `kernel_machine_errors`); None where undefined, and ["note"] why Θ∞ is missing (the standard
    # parametrization has none). Empty for runs saved before kalign measured it.
    infinite_width: dict[str, float | str | None] = field(default_factory=dict)
    # The epochs `kernels[name]` holds when not every one: a lean sweep trial (lean_runs.py) keeps
    # the first and the last. Empty: kernels[name][epoch] for every epoch recorded.
    kernel_epochs: dict[str, list[int]] = field(default_factory=dict)
    # The coordinate check of a sweep trial: coordinate_sizes[key]["mean_abs_hidden" | "mean_abs_output"]
    # for each of COORDINATE_KEYS it reached (None where not finite). Empty for other runs, and
    # trials saved before; trials saved before the per-step sizes have init/slow/regular only.
    coordinate_sizes: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return max(len(h) for h in self.history.values()) - 1

    def kept_epochs(self, name: str) -> list[int]:
        """The epochs of `name`'s kernels, in the order `kernels[name]` holds them."""
        return self.kernel_epochs.get(name) or list(range(len(self.kernels[name])))

    def alignment_change(self, name: str) -> float | None:
        """Final minus initial alignment ρ of one model; None where either is undefined."""
        first, last = self.history[name][0].alignment, self.history[name][-1].alignment
        return None if first is None or last is None else last - first

    def curve(self, name: str, metric: str) -> list:
        """One metric of one model over epochs, e.g. curve("regular", "alignment")."""
        return [getattr(record, metric) for record in self.history[name]]

    def copy(self) -> ExperimentResult:
        """A snapshot whose containers no longer grow with the run (records and arrays are shared)."""
        return replace(
            self,
            history={k: list(v) for k, v in self.history.items()},
            kernels={k: list(v) for k, v in self.kernels.items()},
            tangent_kernels={k: list(v) for k, v in self.tangent_kernels.items()},
            diverged_at=dict(self.diverged_at),
            models=dict(self.models),
            kernel_machine_errors={k: dict(v) for k, v in self.kernel_machine_errors.items()},
        )
