"""The Width lab through AppTest: a tiny lab (ntk and μP, widths 32 and 64, one epoch, the bundled
sample) from the form to the log-log charts with their slopes and the coordinate check; its sweep
is a sweep folder like any other; bad settings are refused in words; presets fill the form and the
form lives in the URL, whose bad values and unknown presets are named in words (fuzzed).

`run_every` never fires in AppTest, so the test waits for the session's sweep job and reruns.
"""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from apptest import charts, open_app, texts
from kalign_app.width_lab_settings import (
    DEFAULTS,
    PRESETS,
    URL_PARAMS,
    WIDTHS,
    query_from_settings,
    settings_from_query,
    url_param,
)
from kalign_core.lessons import LESSONS
from kalign_core.sweep.spec import SUMMARY_CSV, read_summary_csv
from kalign_core.sweep.width_lab import COORDINATE_MEASURES, COORDINATE_TIMES, LAB_MEASURES, slope_text, width_lines

PAGE = "pages/width_lab.py"
LAB = "lab-ntk-mup-w32-64-8v9-lr0.5-5-s2-e1"

pytestmark = pytest.mark.usefixtures("fresh_server")


def open_lab(**query) -> AppTest:
    """A new session on the Width lab (with `query` in its URL), with a small probe and batch from
    the Train page's settings."""
    at = open_app(**query)
    at.session_state["settings"] = {**at.session_state["settings"], "probe_size": 40, "batch_size": 100}
    return at.switch_page(PAGE).run()


def form(at: AppTest) -> dict:
    """The lab form's values, as its settings hold them."""
    return {field: at.session_state[f"lab_{field}"] for field in DEFAULTS}


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
    for measure in COORDINATE_MEASURES.values():  # one line per t, in a panel per parametrization
        traces = shown[f"{measure.label} vs width, after t SGD steps"]["data"]
        names = [f"{p}, {t}" for p in ("ntk", "mup") for t in COORDINATE_TIMES.values()]  # the panel named too
        assert [t["name"].split(":")[0] for t in traces] == names
        assert [t["xaxis"] for t in traces] == ["x"] * 6 + ["x2"] * 6
        for trace, line in zip(traces, width_lines(summaries, measure)):
            assert trace["x"] == [32, 64] and trace["y"] == pytest.approx(line.means)

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


def test_a_preset_link_fills_the_form_and_the_form_stays_in_the_url():
    at = open_lab(preset="standard-gets-lazy")
    assert not at.exception and not at.warning
    wanted = PRESETS["standard-gets-lazy"].settings
    assert form(at) == {field: wanted[field] for field in DEFAULTS}
    assert at.query_params["preset"] == "standard-gets-lazy"
    assert "Standard gets lazy at fixed lr" in texts(at.caption)
    assert at.query_params["width"] == "2000"  # the Train page's settings stay beside it

    at.number_input(key="lab_epochs").set_value(4).run()  # no longer the preset: every setting
    assert "preset" not in at.query_params
    assert at.query_params[url_param("epochs")] == "4"
    assert at.query_params[url_param("widths")] == "64,256,1024,4096"
    again = open_lab(**dict(at.query_params))
    assert not again.exception and not again.warning and form(again) == form(at)


def test_choosing_a_preset_fills_the_form():
    at = open_lab()
    at.selectbox(key="lab_preset").set_value("coordinate-check").run()
    assert not at.exception
    wanted = PRESETS["coordinate-check"].settings
    assert form(at) == {field: wanted[field] for field in DEFAULTS}
    assert at.query_params["preset"] == "coordinate-check"
    at.number_input(key="lab_epochs").set_value(wanted["epochs"] + 1).run()  # no longer the preset
    assert at.selectbox(key="lab_preset").value is None and "preset" not in at.query_params
    at.number_input(key="lab_epochs").set_value(wanted["epochs"]).run()  # the preset again
    assert at.selectbox(key="lab_preset").value == "coordinate-check"


@pytest.mark.parametrize(
    "query, message",
    [
        ({"preset": "ntk-vs-mpu"}, "Unknown preset 'ntk-vs-mpu' in the link; the presets are ntk-vs-mup"),
        ({url_param("widths"): "0,64"}, "lab_widths='0,64': Hidden widths must be one or more of 32, 64,"),
        ({url_param("widths"): "100"}, "(powers of two)"),
        ({url_param("parametrizations"): "ntk,lazy"}, "Parametrizations must be one or more of standard, ntk, mup"),
        ({url_param("pair"): "3,3"}, "Digits must be two different digits from 0 to 9"),
        ({url_param("regular_lr"): "1e9"}, "Regular learning rate must be a number from 1e-06 to 100"),
        ({url_param("seeds"): "x"}, "Seeds must be a whole number from 1 to 10"),
    ],
)
def test_a_bad_link_is_named_in_words_and_leaves_the_defaults(query, message):
    at = open_lab(**query)
    assert not at.exception and not at.error
    assert message in texts(at.warning)
    assert form(at) == DEFAULTS
    assert [b for b in at.button if b.key == "run_lab"]  # the defaults can run


texts_in_links = st.one_of(st.text(max_size=30), st.sampled_from(["", ",", "64,64", "nan", "inf", "-1", "1e400"]))


@settings(max_examples=300, deadline=None)
@given(query=st.dictionaries(st.sampled_from(URL_PARAMS), texts_in_links))
def test_any_link_gives_settings_the_form_allows_or_words(query):
    settings_, preset, warnings = settings_from_query(query)
    assert set(settings_) == set(DEFAULTS)
    assert set(settings_["widths"]) <= set(WIDTHS) and settings_["widths"]
    assert 0 <= settings_["slow_lr"] <= 100 and 1e-6 <= settings_["regular_lr"] <= 100
    assert len(settings_["pair"]) == 2 and settings_["pair"][0] < settings_["pair"][1]
    for warning in warnings:  # each names a parameter of the link and repeats its value
        assert any(name in warning and repr(text[:40])[:10] in warning for name, text in query.items())
    assert (preset is None) == (query.get("preset") not in PRESETS)
    unknown = "preset" in query and query["preset"] not in PRESETS
    assert sum("Unknown preset" in w for w in warnings) == unknown
    assert settings_from_query(query_from_settings(settings_))[0] == settings_  # the URL it writes reads back


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.dictionaries(st.sampled_from(URL_PARAMS), texts_in_links, max_size=3))
def test_any_link_opens_the_lab_without_a_traceback(query):
    at = open_lab(**query)
    assert not at.exception
    assert "Traceback" not in texts(at.error)
    assert [b for b in at.button if b.key == "run_lab"] or at.error  # a plan, or what is wrong in words


def test_the_presets_lessons_link_to_exist():
    linked = [re.findall(r"preset=([\w-]+)", lesson.next_steps) for lesson in LESSONS]
    assert {"ntk-vs-mup", "coordinate-check"} <= {name for names in linked for name in names} <= set(PRESETS)
