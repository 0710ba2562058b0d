"""The Width lab through AppTest: a tiny lab (ntk and μP, widths 32 and 64, one epoch, the bundled
sample) from the form to the log-log charts with their slopes and the coordinate check; its sweep
is a sweep folder like any other; bad settings are refused in words.

`run_every` never fires in AppTest, so the test waits for the session's sweep job and reruns.
"""

import pytest
from streamlit.testing.v1 import AppTest

from apptest import charts, open_app, texts
from kalign_core.sweep.spec import SUMMARY_CSV, read_summary_csv
from kalign_core.sweep.width_lab import LAB_MEASURES, slope_text, width_lines

PAGE = "pages/width_lab.py"
LAB = "lab-ntk-mup-w32-64-8v9-lr0.5-5-s2-e1"

pytestmark = pytest.mark.usefixtures("fresh_server")


def open_lab() -> AppTest:
    """A new session on the Width lab, with a small probe and batch from the Train page's settings."""
    at = open_app()
    at.session_state["settings"] = {**at.session_state["settings"], "probe_size": 40, "batch_size": 100}
    return at.switch_page(PAGE).run()


def test_a_tiny_lab_draws_each_measure_against_width_with_its_slopes(tmp_path):
    at = open_lab()
    at.multiselect(key="lab_widths").set_value([32, 64])
    at.number_input(key="lab_epochs").set_value(1)
    at.run()
    assert not at.exception and not at.error
    assert f"**8 trials** (1 pair × 2 widths × 1 ratio × 2 seeds × 2 parametrizations) into **{LAB}**" in texts(at.info)
    at.button(key="run_lab").click().run()
    assert not at.exception
    job = at.session_state["sweep_job"]
    assert job is not None and job.wait(180)
    at.run()
    assert not at.exception and not at.error
    assert "All 8 trials" in texts(at.success) and at.selectbox(key="lab_open").value == LAB

    summaries = read_summary_csv((tmp_path / "sweeps" / LAB / SUMMARY_CSV).read_text())
    assert sorted({(s.parametrization, s.width) for s in summaries}) == [
        ("mup", 32),
        ("mup", 64),
        ("ntk", 32),
        ("ntk", 64),
    ]
    shown = charts(at)
    hidden = shown[f"{LAB_MEASURES['hidden_change'].label} vs width"]
    assert hidden["layout"]["xaxis"]["type"] == "log" and hidden["layout"]["yaxis"]["type"] == "log"
    lines = width_lines(summaries, LAB_MEASURES["hidden_change"])
    assert [trace["name"].split(":")[0] for trace in hidden["data"]] == [
        "ntk · slow",
        "ntk · regular",
        "mup · slow",
        "mup · regular",
    ]
    for trace, line in zip(hidden["data"], lines):
        assert trace["x"] == [32, 64] and trace["y"] == pytest.approx(line.means)
        assert trace["error_y"]["array"] == pytest.approx(line.spreads)
        assert trace["line"]["dash"] == {"slow": "dot", "regular": "solid"}[line.model]
        assert slope_text(line) in texts(at.markdown)
    assert "(theory −½)" in hidden["data"][0]["name"] and "(theory 0)" in hidden["data"][2]["name"]
    assert "fitted slope" in texts(at.markdown) and "theory −½" in texts(at.markdown)
    for title in ("Mean |hidden pre-activation| vs width", "Mean |output| vs width"):
        assert [t["line"]["dash"] for t in shown[title]["data"]] == ["dash", "dot", "solid"] * 2
        assert all("theory" not in t["name"] for t in shown[title]["data"])

    at.selectbox(key="lab_measure").set_value("alignment_gain").run()  # may be negative: no log axis
    assert not at.exception
    gain = charts(at)[f"{LAB_MEASURES['alignment_gain'].label} vs width"]
    assert [t["name"].split(":")[0] for t in gain["data"]] == ["ntk", "mup"]
    at.selectbox(key="lab_measure").set_value("infinite_width_distance").run()  # the start's, shared by both
    assert not at.exception
    limit = charts(at)[f"{LAB_MEASURES['infinite_width_distance'].label} vs width"]
    assert [t["name"].split(":")[0] for t in limit["data"]] == ["ntk · init", "mup · init"]
    assert limit["data"][0]["y"] == pytest.approx(limit["data"][1]["y"])  # the same draws: the same distance

    at.switch_page("pages/sweeps.py").run()  # the lab's sweep is a sweep like any other
    assert not at.exception and at.selectbox(key="sweep_open").value == LAB


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lab_widths", [], "Hidden widths: choose at least one"),
        ("lab_parametrizations", [], "Parametrizations: choose at least one"),
        ("lab_slow_lr", 20.0, "Slow learning rate: at most the regular learning rate"),
        ("lab_name", "../..", "Sweep name: run name must contain letters or digits"),
    ],
)
def test_bad_settings_are_refused_in_words_and_nothing_can_run(field, value, message):
    at = open_lab()
    widget = at.text_input(key=field) if field == "lab_name" else None
    if widget is None:
        widget = at.number_input(key=field) if field == "lab_slow_lr" else at.multiselect(key=field)
    widget.set_value(value).run()
    assert not at.exception
    assert message in texts(at.error)
    assert not [b for b in at.button if b.key == "run_lab"]


def test_a_sweep_of_one_width_says_there_is_nothing_to_draw(tmp_path):
    at = open_lab()
    at.multiselect(key="lab_widths").set_value([32])
    at.number_input(key="lab_epochs").set_value(1)
    at.multiselect(key="lab_parametrizations").set_value(["mup"])
    at.number_input(key="lab_seeds").set_value(1).run()
    at.button(key="run_lab").click().run()
    assert at.session_state["sweep_job"].wait(120)
    at.run()
    assert not at.exception and not at.error
    assert "fewer than two widths" in texts(at.caption)
