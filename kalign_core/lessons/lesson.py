"""What a lesson is: its runs, the charts beside them, and the claims (`Expectation`s) it checks on
their results every time it runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..config import ExperimentConfig
from ..results import ExperimentResult

# Charts a lesson may add to its runs' error and alignment curves: K − K₀ heatmaps of its first run,
# how far the models moved (hidden weights, tangent kernel), each run's kernel machines, and each
# run's networks beside their linearized twins.
CHARTS = ("kernel change", "movement", "machines", "twin")


@dataclass(frozen=True)
class Expectation:
    """One claim of a lesson (`text`), whether the runs bear it out, and the numbers behind it.
    `slack` is how far the deciding number lies past the claim's bound, relative to the bound
    (0.5: half again the bound; negative: the claim fails); None for exact claims (0 or not)."""

    text: str
    passed: bool
    value: str
    slack: float | None = None


@dataclass(frozen=True)
class Lesson:
    """`configs` are the runs (one, or several for a small scan), `labels` name them for people;
    `check` turns their results, in the same order, into expectations. `notes` is what a student
    should know before looking; `charts` names the charts shown beside the curves (see CHARTS)."""

    id: str
    title: str
    question: str
    configs: list[ExperimentConfig]
    labels: list[str]
    check: Callable[[list[ExperimentResult]], list[Expectation]]
    next_steps: str
    notes: str = ""
    charts: tuple[str, ...] = ()

    def expectations(self, results: list[ExperimentResult]) -> list[Expectation]:
        """The lesson's claims, measured on `results` (one per config, in order, on any data source
        and device)."""
        if len(results) != len(self.configs) or any(
            dataclasses.replace(r.config, source=c.source, device=c.device) != c for c, r in zip(self.configs, results)
        ):
            raise ValueError(f"lesson {self.id!r} needs the results of its {len(self.configs)} run(s), in order")
        return self.check(results)

    def configs_on(self, source: str = "auto", device: str = "auto") -> list[ExperimentConfig]:
        """The lesson's runs on this data source ("auto", "mnist", "sample") and device."""
        return [dataclasses.replace(c, source=source, device=device) for c in self.configs]
