"""No input reaches a user as a traceback: random URLs and random form values, then every page.

Hypothesis draws query-parameter dicts (known and unknown keys; numbers, extremes, text, digit lists)
and Train-form values (anything a number box, the digit picker or a select box can hold). Each session
then opens every page; none may show an exception, nor the app's apology (which would mean a page
failed and the guard caught it: a bug to fix, not a message to show). The combinations found by hand
are named cases below.
"""

import dataclasses
import json
import math
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from apptest import TINY, open_app, session_job
from kalign_app import measure_table, params
from kalign_core import ExperimentConfig, run_experiment, runs
from kalign_core.parametrization import PARAMETRIZATIONS
from kalign_core.results import MEASURES, MODEL_NAMES
from kalign_core.sweep.spec import ALL_PAIRS

PAGES = (
    "pages/train.py",
    "pages/lessons.py",
    "pages/kernels.py",
    "pages/runs.py",
    "pages/sweeps.py",
    "pages/width_lab.py",
    "pages/about.py",
)
APOLOGY = "Sorry, something went wrong"
FUZZ = settings(
    max_examples=int(os.environ.get("KALIGN_FUZZ_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

pytestmark = pytest.mark.usefixtures("fresh_server")

numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.sampled_from([0, 1, 2, 3, 4, 5, 199, 200, 201, 300, 500, 501, 799, 800, 801, 1000, 1001, 32768, 2**53]),
    st.floats(allow_nan=True, allow_infinity=True),
)
query_values = st.one_of(
    numbers.map(str),
    st.text(max_size=40),
    st.lists(st.integers(-3, 12), max_size=11).map(lambda ds: ",".join(map(str, ds))),
    st.sampled_from(["auto", "sample", "mnist", "cpu", "cuda", "cuda:1", "mps", "tpu", "", " ", "1e3", "0x10"]),
)
queries = st.dictionaries(
    st.sampled_from([*params.FIELD_LABELS, *params.PAGE_PARAMS, "bogus", "page"]), query_values, max_size=12
)


def assert_no_traceback(at: AppTest, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    shown = "\n".join(str(e.value) for e in at.error)
    assert APOLOGY not in shown and "Traceback" not in shown, (where, shown)


def visit_every_page(at: AppTest) -> None:
    for page in PAGES:
        at.switch_page(page).run()
        assert_no_traceback(at, page)


def stop_any_job(at: AppTest) -> None:
    """A fuzzed Train press may start a real run (up to width 32,768 × 500 epochs): end it now."""
    job = session_job(at)
    if job is not None:
        job.stop()
        assert job.wait(120)


@pytest.mark.slow
@FUZZ
@given(query=queries)
def test_any_url_opens_every_page_without_a_traceback(query):
    at = open_app(**query)
    assert_no_traceback(at, f"opening ?{query}")
    visit_every_page(at)
    params.config_from_settings(at.session_state["settings"])  # what the URL left is valid together


rates = st.one_of(st.floats(-1, 100), st.sampled_from([0.0, 1e-300, 1e300]))
# Per field: small valid values (so that Train gets pressed and trains quickly), and anything at all.
VALID = {
    "digits": st.lists(st.integers(0, 9), unique=True, min_size=2, max_size=4),
    "width": st.integers(1, 64),
    "epochs": st.integers(1, 3),
    "batch_size": st.integers(1, 800),
    "probe_size": st.integers(4, 200),
    "slow_lr": st.floats(0, 0.1),
    "regular_lr": st.floats(1e-4, 0.1),
    "seed": st.integers(0, 2**53 - 1),
    "source": st.just("sample"),
    "lazy_scale": st.one_of(st.none(), st.sampled_from([1.0, 10.0, 1000.0])),
    "linearized_twin": st.booleans(),
}
ANY = {
    "digits": st.lists(st.integers(0, 9), unique=True, max_size=10),
    **dict.fromkeys(["width", "epochs", "batch_size", "probe_size"], st.one_of(numbers, st.floats(-1e6, 1e6))),
    "slow_lr": rates,
    "regular_lr": rates,
    "seed": st.integers(-10, 2**53 - 1),
    "source": st.sampled_from(["auto", "mnist", "sample"]),
    "lazy_scale": st.one_of(st.none(), st.sampled_from([1.0, 2.0, 5.0, 20.0, 50.0, 100.0, 200.0, 500.0])),
    "linearized_twin": st.booleans(),
}


@st.composite
def form_values(draw) -> dict:
    """Valid settings with up to three fields set to anything."""
    wild = draw(st.sets(st.sampled_from(list(VALID)), max_size=3))
    return {field: draw(ANY[field] if field in wild else VALID[field]) for field in VALID}


def fill_form(at: AppTest, values: dict) -> AppTest:
    """Types `values` into the Train form; lazy_scale None is its switch off, a number its slider."""
    if "lazy_scale" in values:
        values = dict(values)
        alpha = values.pop("lazy_scale")
        at = at.toggle(key="train_lazy_scale_on").set_value(alpha is not None).run()
        if alpha is not None:
            at.select_slider(key="train_lazy_scale").set_value(alpha)
    for field, value in values.items():
        control = {"digits": at.multiselect, "source": at.selectbox, "linearized_twin": at.toggle}.get(
            field, at.number_input
        )
        if isinstance(value, float) and not math.isfinite(value):
            value = 0.0  # a browser's number box cannot hold NaN or ±inf
        control(key=f"train_{field}").set_value(value)
    return at.run()


@pytest.mark.slow
@FUZZ
@given(values=form_values())
def test_any_form_values_then_train_then_every_page_without_a_traceback(values):
    at = fill_form(open_app(**TINY), values)
    assert_no_traceback(at, f"form {values}")
    train = at.button(key="train")
    event("Train enabled" if not train.disabled else "Train disabled")
    if not train.disabled:
        at = train.click().run()
        assert_no_traceback(at, f"Train with {values}")
        stop_any_job(at)
    else:
        assert at.error, "Train is disabled without saying why"
    visit_every_page(at)
    stop_any_job(at)


# Settings valid one by one that clashed together and once replaced every page with a traceback.
KNOWN = [
    pytest.param({"probe_size": "1000", "epochs": "500"}, id="probe 1000 × 500 epochs"),
    pytest.param(
        {"probe_size": "300", "epochs": "500", "digits": "3,5,8", "source": "sample"}, id="probe 300 × 500 epochs"
    ),
    pytest.param({"batch_size": "5000", "source": "sample"}, id="batch larger than the sample"),
    pytest.param({"probe_size": "500", "source": "sample"}, id="probe larger than the sample's test digits"),
    pytest.param({"seed": str(2**60)}, id="seed beyond what a browser holds"),
    pytest.param({"regular_lr": "3.402823466385289e+38"}, id="rate overflowing float32 (found by the fuzzer)"),
    pytest.param(
        {"linearized_twin": "on", "width": "32768", "digits": "0,1,2,3,4,5,6,7,8,9", "source": "mnist"},
        id="linearized twin beyond its memory",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("query", KNOWN)
def test_known_clashing_links_open_every_page_with_a_warning(query):
    at = open_app(**query)
    assert_no_traceback(at, str(query))
    assert any("Ignored URL parameter" in str(w.value) for w in at.warning)
    visit_every_page(at)


def test_known_clash_typed_into_the_form_is_named_on_every_page_visit():
    at = fill_form(open_app(**{**TINY, "digits": "3,5,8"}), {"probe_size": 300, "epochs": 500})
    assert "Epochs 500 × Probe size 300 keep 344 MB" in "\n".join(str(e.value) for e in at.error)
    assert at.button(key="train").disabled
    visit_every_page(at)


LAB_WIDTHS = [2**k for k in range(5, 15)]
lab_values = st.fixed_dictionaries(
    {
        "parametrizations": st.lists(st.sampled_from(PARAMETRIZATIONS), unique=True),
        "widths": st.lists(st.sampled_from(LAB_WIDTHS), unique=True, max_size=4),
        "pair": st.sampled_from(ALL_PAIRS),
        "slow_lr": st.one_of(st.floats(0, 100), st.sampled_from([0.0, 1e-300])),
        "regular_lr": st.one_of(st.floats(1e-6, 100), st.sampled_from([1e-6, 100.0])),
        "epochs": st.integers(1, 500),
        "seeds": st.integers(1, 10),
        "name": st.text(max_size=30),
    }
)


@FUZZ
@given(values=lab_values)
def test_any_width_lab_settings_end_in_a_plan_or_words(values):
    """Whatever the Width lab's form holds, the page says what would run or what is wrong (Run is not
    pressed: the page's own test trains a tiny lab)."""
    at = open_app(**TINY).switch_page("pages/width_lab.py").run()
    for field, value in values.items():
        control = {"parametrizations": at.multiselect, "widths": at.multiselect, "pair": at.selectbox}
        control = {**control, "name": at.text_input}.get(field, at.number_input)
        control(key=f"lab_{field}").set_value(value)
    at.run()
    assert_no_traceback(at, f"width lab {values}")
    runnable = [b for b in at.button if b.key == "run_lab"]
    event("Run offered" if runnable else "refused")
    assert runnable or at.error or at.success, "the lab neither plans a sweep nor says why not"
    visit_every_page(at)


@pytest.fixture(scope="module")
def odd_runs():
    """Saved runs that test the Runs page's comparisons: a diverged one (non-finite values, its last
    kernels too), one with a lazy scale (a setting that is off in the others) and one saved before
    kalign measured lazy vs rich, without its kernels."""
    tiny = dict(width=16, epochs=2, batch_size=100, probe_size=40, source="sample", device="cpu")
    plain = run_experiment(ExperimentConfig(**tiny))
    unmeasured = dict.fromkeys((*MEASURES, "measure_note"))
    return {
        "diverged": run_experiment(ExperimentConfig(**{**tiny, "regular_lr": 1e4, "slow_lr": 1e4})),
        "lazy": run_experiment(ExperimentConfig(**{**tiny, "lazy_scale": 10.0, "seed": 3})),
        "old": dataclasses.replace(
            plain, history={m: [dataclasses.replace(r, **unmeasured) for r in plain.history[m]] for m in MODEL_NAMES}
        ),
    }


RUN_NAMES = ["current run", "diverged", "lazy", "old"]
runs_picks = st.fixed_dictionaries(
    {
        "overlay_runs": st.lists(st.sampled_from(RUN_NAMES), unique=True),
        "overlay_measure": st.sampled_from(list(measure_table.MEASURE_LABELS)),
        "overlay_setting": st.sampled_from(list(measure_table.SETTING_LABELS)),
        "pair_left": st.sampled_from(RUN_NAMES),
        "pair_right": st.sampled_from(RUN_NAMES),
        "pair_model": st.sampled_from(MODEL_NAMES),
    }
)


@FUZZ
@given(picks=runs_picks)
def test_any_runs_page_picks_end_in_charts_or_words(picks, odd_runs, earlier, tmp_path):
    """Whatever runs, measure, setting and pair are picked on the Runs page (diverged, lazy, unmeasured,
    without kernels), it draws or says why not."""
    for name, result in odd_runs.items():
        if not (tmp_path / "runs" / name).exists():
            runs.save_run(result, tmp_path / "runs" / name)
    (tmp_path / "runs" / "old" / runs.KERNELS_NPZ).unlink(missing_ok=True)
    at = open_app(earlier).switch_page("pages/runs.py").run()
    for key, value in picks.items():
        control = {"overlay_runs": at.multiselect, "pair_model": at.radio}.get(key, at.selectbox)
        control(key=key).set_value(value)
    at.run()
    assert_no_traceback(at, f"runs page {picks}")
    drawn = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    event(f"{len(drawn)} charts")
    assert (len([t for t in drawn if "(slow dotted" in t]) == 1) == bool(picks["overlay_runs"])
    kernels_drawn = len([t for t in drawn if "K − K₀" in t])
    assert kernels_drawn in (0, 2) and (kernels_drawn == 2 or at.info or at.caption)
