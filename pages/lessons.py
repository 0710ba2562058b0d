"""Lessons page: guided experiments in one click; each states its claim and checks it on the runs it
just made, with the numbers, then says what to try next."""

import streamlit as st

from kalign_app import figures, navigation, ui
from kalign_core.lessons import LESSONS, find_lesson

navigation.require_app()

LINKED = "lessons_linked"  # the lesson in the address when this session first opened the page
STATE_WORDS = {
    "stopped": "was stopped",
    "abandoned": "was given up (the page stopped asking for it)",
    "failed": "failed",
}


def configs(lesson):
    """The lesson's runs on the data source and device of the Train page's settings."""
    settings = ui.settings()
    return lesson.configs_on(settings["source"], settings["device"])


def run_lesson(lesson) -> None:
    with ui.apology():
        st.query_params["lesson"] = lesson.id  # the address is now this lesson's link
        ui.start_lesson(lesson.id, configs(lesson))


def linked_lesson():
    """The lesson the link this page was opened with names (?lesson=ID), or None; an unknown one is
    named in a warning. Kept for the session: Run puts its lesson in the address (to share it), but
    must not move that lesson to the top under the visitor's eyes."""
    wanted = st.session_state.setdefault(LINKED, st.query_params.get("lesson"))
    if not wanted:
        return None
    try:
        return find_lesson(wanted)
    except ValueError as error:
        st.warning(f"Ignored URL parameter lesson: {error}.", icon=":material/link_off:")
        return None


@st.fragment(run_every=ui.PROGRESS_REFRESH_S)
def live_progress(lesson, group) -> None:
    if group.done:
        st.rerun()  # draw the finished lesson with the whole page
    with ui.apology():
        draw_progress(lesson, group)


def draw_progress(lesson, group) -> None:
    for label, status in zip(lesson.labels, group.statuses()):
        total = status.config.epochs
        if status.state == "waiting":
            st.caption(f"{label}: waiting for a free slot: {ui.slot_wait(status)}.")
        elif status.state == "running":
            st.progress(
                status.epochs_done / total,
                text=f"{label}: epoch {status.epochs_done}/{total} · {ui.time_left(status.seconds_left)}",
            )
        else:
            st.progress(
                1.0 if status.state == "finished" else status.epochs_done / total,
                text=f"{label}: {'done' if status.state == 'finished' else status.state}",
            )
    if st.button("Stop", icon=":material/stop:", key="stop_lesson"):
        ui.stop_lesson()
        st.caption("Stopping; a run another session also asked for goes on for it.")


def ended_otherwise(lesson, group) -> None:
    """Some run did not finish: say which and why; the checks need every run."""
    for label, status in zip(lesson.labels, group.statuses()):
        if status.state != "finished":
            why = f": {status.error}" if status.error else ""
            st.warning(f"{label} {STATE_WORDS.get(status.state, status.state)}{why}.", icon=":material/warning:")
    st.info("The lesson checks its claims once every run has finished: press **Run this lesson** again.")


def checked(lesson, results) -> None:
    expectations = lesson.expectations(results)
    held = sum(e.passed for e in expectations)
    st.markdown(f"**What this run shows** ({held} of {len(expectations)} expectations hold):")
    for expectation in expectations:
        mark = ":green[✓]" if expectation.passed else ":red[✗]"
        st.markdown(f"{mark} {expectation.text}  \n&nbsp;&nbsp;&nbsp;&nbsp;:gray[{expectation.value}]")
    for row, charts in enumerate(figures.lesson_figures(results, lesson.labels, lesson.charts)):
        for column, (index, chart) in zip(st.columns(len(charts)), enumerate(charts)):
            column.plotly_chart(chart, key=f"lesson_chart_{lesson.id}_{row}_{index}")
    st.markdown(f"**Next:** {lesson.next_steps}")
    st.caption("Open a run of this lesson like any other run:")
    for index, (label, result) in enumerate(zip(lesson.labels, results)):
        left, right = st.columns(2)
        note = f"From the lesson “{lesson.title}”: {label}."
        if left.button(f"{label} on Train", key=f"open_train_{lesson.id}_{index}", icon=":material/model_training:"):
            ui.show_run(result, note)
            st.switch_page(navigation.TRAIN)
        if right.button(f"{label} on Kernels", key=f"open_kernels_{lesson.id}_{index}", icon=":material/grid_on:"):
            ui.show_run(result, note)
            st.switch_page(navigation.KERNELS)


def lesson_outcome(lesson, group) -> None:
    if not group.done:
        live_progress(lesson, group)
        return
    results = group.results()
    if results is None:
        ended_otherwise(lesson, group)
    else:
        checked(lesson, results)
        source = results[0].source
        st.caption(
            f"Data: {'full MNIST' if source == 'mnist' else 'the bundled MNIST sample'} · "
            f"{sum(r.seconds for r in results):.1f} s of training"
        )


def draw_lesson(number: int, lesson, group, busy: bool) -> None:
    """The lesson's question and Run button, then its last runs' outcome in this session, if any."""
    with st.container(border=True, key=f"lesson_{lesson.id}"):
        st.subheader(f"{number}. {lesson.title}", anchor=lesson.id)
        st.markdown(f"**{lesson.question}**")
        st.caption(lesson.notes)
        left, right = st.columns([1, 3], vertical_alignment="center")
        left.button(
            "Run this lesson",
            key=f"run_{lesson.id}",
            type="primary",
            icon=":material/play_arrow:",
            disabled=busy,
            on_click=run_lesson,
            args=(lesson,),
            help="a lesson is running: stop it first" if busy else None,
        )
        right.markdown(f"[Link to this lesson](?lesson={lesson.id})")
        if group is not None:
            with ui.apology():
                lesson_outcome(lesson, group)


st.title("Lessons")
st.caption(
    "Guided experiments: each runs in one click, states what it expects and checks it on the runs it just "
    "made, with the numbers. The runs use the Train page's data source and device."
)
linked = linked_lesson()
groups = ui.lesson_runs()
if linked is not None and linked.id not in groups:
    ui.show_lesson_if_finished(linked.id, configs(linked))  # a link to a lesson this server already ran
busy = not all(group.done for group in groups.values())
ui.run_elsewhere()
numbered = list(enumerate(LESSONS, 1))
if linked is not None:  # what the link's visitor came for comes first, the rest in their order after it
    numbered.sort(key=lambda item: item[1].id != linked.id)
for position, (number, lesson) in enumerate(numbered):
    if linked is not None and position == 1:
        st.subheader("The other lessons")
    draw_lesson(number, lesson, groups.get(lesson.id), busy)
