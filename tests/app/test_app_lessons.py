"""The Lessons page through AppTest: every lesson listed with its question and a Run button; a run
trains in the job slots, then shows each expectation with its numbers, the charts and the next steps;
a link (?lesson=ID) shows its lesson first, with its results when this server already ran it; each
lesson keeps its last results when another runs; a class pressing the same lesson together trains it
once; Stop leaves the lesson's jobs."""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from apptest import TINY, charts, open_app, press_train, texts, wait_until
from kalign_app import jobs
from kalign_core.lessons import LESSONS, find_lesson
from kalign_core.results import MEASURE_LABELS

pytestmark = pytest.mark.usefixtures("fresh_server")

LESSONS_PAGE = "pages/lessons.py"


def open_lessons(**query) -> AppTest:
    at = open_app(**query)
    return at.switch_page(LESSONS_PAGE).run()


def lesson_group(at: AppTest, lesson_id: str) -> jobs.RunGroup:
    """This session's last runs of the lesson."""
    return at.session_state["lesson_runs"][lesson_id]


def in_order(at: AppTest) -> list[str]:
    """The page's headings and texts from top to bottom."""

    def walk(node):
        children = getattr(node, "children", None)
        if children:
            for child in children.values():
                yield from walk(child)
        elif node.type in ("subheader", "markdown"):
            yield str(node.value)

    return list(walk(at.main))


def headings(at: AppTest) -> list[str]:
    return [subheader.value for subheader in at.subheader]


def run_lesson(at: AppTest, lesson_id: str, wait: bool = True) -> AppTest:
    """Press the lesson's Run button; with `wait`, wait for its runs and rerun as the progress would."""
    at = at.button(key=f"run_{lesson_id}").click().run()
    if wait:
        for job in lesson_group(at, lesson_id).jobs():
            assert job.wait(120)
        at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_every_lesson_is_listed_with_its_question_and_a_run_button():
    at = open_lessons()
    assert not at.exception and not at.warning
    shown = texts(at.markdown)
    for lesson in LESSONS:
        assert lesson.question in shown and f"(?lesson={lesson.id})" in shown
        assert at.button(key=f"run_{lesson.id}").label == "Run this lesson"


def test_a_lesson_runs_in_the_job_slots_then_checks_its_claims_with_the_numbers():
    at = run_lesson(open_lessons(**TINY), "too-fast")
    assert at.query_params["lesson"] == "too-fast"  # the address is the lesson's link
    group = lesson_group(at, "too-fast")
    (job,) = group.jobs()
    assert job.worker is not None  # trained in a worker process, like Train's runs
    shown = texts(at.markdown)
    assert "(2 of 2 expectations hold)" in shown
    for expectation in find_lesson("too-fast").expectations(group.results()):
        assert f":green[✓] {expectation.text}" in shown and expectation.value in shown
    assert "diverged at epoch 1" in shown
    assert [title.split(" (")[0] for title in charts(at)] == ["Error", "Alignment ρ"]
    assert f"**Next:** {find_lesson('too-fast').next_steps}" in shown


@pytest.mark.slow
def test_a_scan_overlays_its_runs_and_a_kernel_lesson_shows_what_each_kernel_gained():
    at = run_lesson(open_lessons(**TINY), "easy-and-hard")
    overlay = charts(at)["Alignment ρ (slow dotted, regular solid)"]
    assert {trace["name"] for trace in overlay["data"]} >= {"0 vs 1 (easy) · regular", "4 vs 9 (hard) · regular"}
    at = run_lesson(at, "blocks-appear")
    kernels = {title.split(", ")[0]: spec for title, spec in charts(at).items()}
    assert {"target YYᵀ", "slow K − K₀", "regular K − K₀"} <= set(kernels)
    slow, regular = (kernels[f"{name} K − K₀"]["data"][0] for name in ("slow", "regular"))
    assert slow["zmax"] == regular["zmax"]  # one colour scale: the frozen kernel shows white
    assert "(3 of 3 expectations hold)" in texts(at.markdown)


@pytest.mark.slow
def test_the_lazy_lessons_show_how_far_each_run_moved_and_its_kernel_machines():
    at = run_lesson(open_lessons(**TINY), "lazy-dial")
    moved = charts(at)[MEASURE_LABELS["hidden_change"]]
    assert moved["layout"]["yaxis"]["type"] == "log"
    assert {trace["name"] for trace in moved["data"]} >= {"α 1 · regular", "α 100 · regular"}
    assert MEASURE_LABELS["tangent_distance"] in charts(at)
    at = run_lesson(at, "more-than-its-kernel")
    titles = {
        "rich (α off): networks and kernel machines (slow dotted)",
        "lazy (α 100): networks and kernel machines (slow dotted)",
    }
    assert titles <= set(charts(at))
    assert "(3 of 3 expectations hold)" in texts(at.markdown)


def test_the_infinite_width_lesson_shows_its_limit_beside_each_run():
    at = run_lesson(open_lessons(**TINY), "infinite-width")
    assert "(3 of 3 expectations hold)" in texts(at.markdown)
    machines = charts(at)["width 4096: networks and kernel machines (slow dotted)"]
    assert [trace["y"][-1] for trace in machines["data"]] == ["tangent Θ∞ (width → ∞)"] * 2


@pytest.mark.slow
def test_a_link_to_a_lesson_this_server_ran_shows_it_at_once_and_its_runs_open_like_any_other():
    run_lesson(open_lessons(**TINY), "random-features")
    student = open_lessons(lesson="random-features")
    assert not student.warning  # lesson is a parameter the app knows
    assert "(3 of 3 expectations hold)" in texts(student.markdown)
    shown = in_order(student)  # the linked lesson and its results first, then the others
    assert headings(student)[:3] == ["2. Random features", "The other lessons", "1. Slow vs regular"]
    results = next(i for i, text in enumerate(shown) if "(3 of 3 expectations hold)" in text)
    assert results < shown.index("The other lessons")
    assert not lesson_group(student, "random-features").jobs()  # nothing trained for this session
    student = student.button(key="open_kernels_random-features_0").click().run()
    assert not student.exception
    result = student.session_state["result"]
    assert result.config.slow_lr == 0.0 and student.query_params["slow_lr"] == "0.0"
    assert any("target YYᵀ" in title for title in charts(student))


@pytest.mark.slow
def test_running_another_lesson_keeps_the_earlier_ones_results_where_they_were():
    at = run_lesson(open_lessons(**TINY), "too-fast")
    at = run_lesson(at, "random-features")
    assert at.query_params["lesson"] == "random-features"  # the address is the lesson's link to share
    assert headings(at)[0] == "1. Slow vs regular"  # but the lessons stay in their order
    shown = texts(at.markdown)
    assert "(2 of 2 expectations hold)" in shown and "(3 of 3 expectations hold)" in shown
    assert lesson_group(at, "too-fast").results() is not None


LINKS = st.one_of(st.sampled_from([lesson.id for lesson in LESSONS]), st.text(max_size=30))


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wanted=LINKS)
@example(wanted="")
@example(wanted=" ")
@example(wanted=" width")
def test_a_lesson_link_lands_on_its_lesson_and_any_other_is_named(wanted):
    at = open_lessons(lesson=wanted)
    assert not at.exception
    known = {lesson.id: number for number, lesson in enumerate(LESSONS, 1)}
    if wanted in known:
        lesson = LESSONS[known[wanted] - 1]
        assert headings(at)[0] == f"{known[wanted]}. {lesson.title}" and not at.warning
    else:
        assert headings(at)[0] == f"1. {LESSONS[0].title}"
        assert ("there is no lesson" in texts(at.warning)) == bool(wanted)


def test_an_unknown_lesson_in_the_link_is_named_with_the_lessons_there_are():
    at = open_lessons(lesson="lazy")
    assert "Ignored URL parameter lesson: there is no lesson 'lazy'; the lessons are slow-vs-regular" in texts(
        at.warning
    )


@pytest.mark.slow
def test_a_class_pressing_the_same_lesson_together_trains_it_once(monkeypatch):
    monkeypatch.setenv("KALIGN_MAX_JOBS", "1")
    busy = press_train(open_app(**{**TINY, "epochs": "500"}))  # holds the only slot: the lessons queue
    first = run_lesson(open_lessons(**TINY), "width", wait=False)
    second = run_lesson(open_lessons(**TINY), "width", wait=False)
    joined = lesson_group(first, "width").jobs()
    assert joined == lesson_group(second, "width").jobs() and len(joined) == 2
    assert "width 64: waiting for a free slot" in texts(first.caption)
    second = second.button(key="stop_lesson").click().run()
    assert all(not job.done for job in lesson_group(first, "width").jobs())  # the first student still wants them
    first = first.button(key="stop_lesson").click().run()
    for job in lesson_group(first, "width").jobs():
        assert job.wait(60) and job.status().state == "stopped"
    first = first.run()
    assert "press **Run this lesson** again" in texts(first.info)
    assert "width 64 was stopped." in texts(first.warning)
    busy.button(key="stop_training").click().run()
    wait_until(lambda: busy.session_state["job"].done)
