"""Every dashboard page through Streamlit's AppTest: renders with and without a run, trains a tiny
config and checks the charts against the epochs, rejects bad input, keeps state across pages."""

import json

import pytest
from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest

from apptest import TINY, TRAIN_CHARTS, charts, finish, open_app, press_train, texts, wait_until
from kalign_app import ui
from kalign_core import ExperimentConfig, runs
from kalign_core.engine.training import run_experiment

pytestmark = pytest.mark.usefixtures("fresh_server")


ALIGNMENT_TITLE = "Alignment ρ (feature solid, Θ dashed)"


def points(spec: dict) -> dict[str, int]:
    """Points per trace of a chart, by trace name."""
    return {trace["name"]: len(trace["x"]) for trace in spec["data"]}


def feature_points(spec: dict) -> dict[str, int]:
    """Points of each model's feature-alignment curve."""
    counts = points(spec)
    return {name: counts[f"{name} features"] for name in ("slow", "regular")}


def trained(**overrides) -> AppTest:
    """A session that trained TINY, with `overrides`, to the end."""
    at = finish(press_train(open_app(**{**TINY, **overrides})))
    assert not at.exception
    return at


def test_train_page_without_a_run_shows_defaults_and_how_to_start(monkeypatch):
    monkeypatch.delenv("KALIGN_DEFAULT_SOURCE")
    at = open_app()
    assert not at.exception
    assert at.multiselect(key="train_digits").value == [8, 9]
    values = {n.key: n.value for n in at.number_input}
    assert values["train_width"] == 2000 and values["train_batch_size"] == 200
    assert values["train_slow_lr"] == 0.001 and values["train_regular_lr"] == 0.01
    assert at.selectbox(key="train_source").value == "auto"
    assert at.selectbox(key="train_device").options == ["auto", "cpu"]
    assert "press **Train**" in texts(at.info)
    assert not at.get("plotly_chart")
    # Once a training process has said which devices it has, the form says which one "auto" uses.
    wait_until(lambda: ui.job_slots().workers.devices())
    at.run()
    assert at.selectbox(key="train_device").options == ["auto", "cpu"]
    assert "'auto' trains on cpu here." in texts(at.caption)
    assert at.selectbox(key="train_device").value == "auto" and not at.button(key="train").disabled
    assert at.query_params["width"] == "2000"  # the settings are in the URL, ready to share


def test_tiny_run_draws_both_models_over_every_epoch():
    at = finish(press_train(open_app(**TINY)))  # it may end within the page run after Train
    assert not at.exception
    figures = charts(at)
    error, alignment = figures["Error (test solid, train dashed)"], figures[ALIGNMENT_TITLE]
    assert points(error) == {"slow test": 3, "slow train": 3, "regular test": 3, "regular train": 3}
    assert [t["line"]["dash"] for t in error["data"]] == ["solid", "dash", "solid", "dash"]
    curves = {t["name"]: t for t in alignment["data"] if not t["name"].startswith("chance")}
    assert points({"data": list(curves.values())}) == {
        "slow features": 3,
        "regular features": 3,
        "slow tangent": 3,
        "regular tangent": 3,
    }
    assert curves["slow features"]["x"] == [0, 1, 2]
    assert all(isinstance(y, float) for t in curves.values() for y in t["y"])
    assert {t["name"] for t in alignment["data"]} - set(curves) == {
        "chance, feature ρ (95 % of label shuffles)",
        "chance, tangent ρ (95 % of label shuffles)",
    }
    movement = figures["How far each model moved from its start"]
    assert movement["layout"]["yaxis"]["type"] == "log"
    assert points(movement)["regular hidden weights ‖ΔW‖/‖W₀‖"] == 3
    machines = figures["Test error: networks and kernel machines"]
    assert [t["y"] for t in machines["data"]] == [
        ["network", "feature K₀", "feature K (end)", "tangent Θ₀", "tangent Θ (end)"]
    ] * 2
    labels = [m.label for m in at.metric]
    assert labels == ["slow · test error", "slow · alignment ρ", "regular · test error", "regular · alignment ρ"]
    assert all("since init" in m.delta for m in at.metric)
    assert "test error ended at" in texts(at.markdown)
    assert "The hidden weights moved" in texts(at.markdown)
    assert "above chance (95 % of label shuffles give" in texts(at.markdown)
    assert "closer the slow model is to a random-features model" in texts(at.markdown)
    assert "not the lazy regime" in texts(at.markdown)
    assert "bundled MNIST sample" in texts(at.caption)
    assert not at.button(key="train").disabled


def test_the_lazy_scale_switch_and_slider_train_both_models_lazily():
    at = open_app(**TINY)
    assert not at.toggle(key="train_lazy_scale_on").value and not at.select_slider  # off by default
    at = at.toggle(key="train_lazy_scale_on").set_value(True).run()
    slider = at.select_slider(key="train_lazy_scale")
    assert slider.options[0] == "1" and slider.options[-1] == "1000"  # log steps 1 … 1000
    at = slider.set_value(10.0).run()
    assert at.session_state["settings"]["lazy_scale"] == 10.0
    at = press_train(at, wait=True)
    result = at.session_state["result"]
    assert result.config.lazy_scale == 10.0
    assert "with α = 10" in texts(at.markdown)
    assert "with the lazy scale α = 10 every weight moves about 1/α as far" in texts(at.markdown)
    at = at.toggle(key="train_lazy_scale_on").set_value(False).run()
    assert at.session_state["settings"]["lazy_scale"] is None and not at.select_slider


def test_the_linearized_twin_switch_trains_twins_and_charts_them_beside_the_networks():
    at = open_app(**TINY)
    assert not at.toggle(key="train_linearized_twin").value  # off by default
    at = press_train(at.toggle(key="train_linearized_twin").set_value(True).run(), wait=True)
    result = at.session_state["result"]
    assert result.config.linearized_twin
    twin = charts(at)["The network and its linearized twin (test error; gap, right)"]
    by_name = {trace["name"]: trace for trace in twin["data"]}
    regular = result.history["regular"]
    assert by_name["regular twin"]["y"] == [r.linear_test_error for r in regular]
    assert by_name["regular gap (right)"]["yaxis"] == "y2" and by_name["regular gap (right)"]["y"][0] is None  # 0
    assert by_name["regular gap (right)"]["y"][1:] == [r.linear_gap for r in regular[1:]]
    assert len(at.get("plotly_chart")) == TRAIN_CHARTS + 1
    assert "Measured against its linearized twin" in texts(at.markdown)


def test_a_link_with_a_lazy_scale_between_the_steps_keeps_it_selectable():
    at = open_app(**TINY, lazy_scale="37.5")
    assert at.toggle(key="train_lazy_scale_on").value
    assert at.select_slider(key="train_lazy_scale").value == 37.5
    assert not at.warning


def test_kernels_page_shows_tangent_kernels_their_change_and_class_block_means():
    at = trained()
    at.switch_page("pages/kernels.py").run()
    titles = list(charts(at))
    assert titles[:2] == ["target YYᵀ, ρ = 1", "target: class-block means"]
    assert any(t.startswith("slow ΦΦᵀ, ρ = ") for t in titles) and "regular: class-block means" in titles
    assert at.toggle(key="kernel_change").label == "Change since initialisation, K − K₀"
    at = at.radio(key="kernel_kind").set_value("tangent").run()
    assert any(t.startswith("regular Θ, ρ = ") for t in charts(at))
    assert at.toggle(key="kernel_change").label == "Change since initialisation, Θ − Θ₀"
    at = at.toggle(key="kernel_change").set_value(True).run()
    caption = texts(at.caption)
    assert "Θ − Θ₀ of both models share one colour scale" in caption and "K − K₀" not in caption
    assert "includes any change in the kernel's scale" in caption and "not its size" not in caption
    specs = charts(at)
    changes = [s for t, s in specs.items() if " − Θ₀, distance 1 − ρ(Θ, Θ₀) = " in t]
    assert len(changes) == 2 and changes[0]["data"][0]["zmax"] == changes[1]["data"][0]["zmax"]
    means = [specs[f"{name}: class-block means of the change"]["data"][0]["zmax"] for name in ("slow", "regular")]
    assert means[0] == means[1]  # the block means of the changes share one scale too
    assert not at.exception


def test_identical_config_comes_back_at_once_from_the_cache():
    first = trained()
    second = press_train(open_app(**TINY))  # another session, same settings
    assert "job" not in second.session_state
    assert "identical run had already finished" in texts(second.success)
    assert second.session_state["result"] is first.session_state["result"]
    assert feature_points(charts(second)[ALIGNMENT_TITLE]) == {"slow": 3, "regular": 3}


def test_invalid_input_names_the_field_trains_nothing_and_keeps_the_last_run():
    at = trained()
    before = at.session_state["result"]
    at.multiselect(key="train_digits").set_value([8])
    at.number_input(key="train_width").set_value(0)
    at.number_input(key="train_regular_lr").set_value(0.0)
    at = at.run()
    assert not at.exception
    assert at.button(key="train").disabled  # the problems are named as they are typed, before Train
    errors = texts(at.error)
    assert "Digits must be 2 to 10" in errors
    assert "Hidden width must be a whole number from 1 to 32,768 (got 0)" in errors
    assert "Regular learning rate must be a finite number greater than 0" in errors
    assert at.session_state["job"] is None
    assert at.session_state["result"] is before
    assert len(at.get("plotly_chart")) == TRAIN_CHARTS  # the earlier run is still drawn
    assert at.query_params["width"] == "32"  # the URL keeps the last valid settings


def test_query_parameters_fill_the_controls():
    at = open_app(digits="3,5,7", width="64", slow_lr="0", regular_lr="0.05", epochs="3", seed="7", source="sample")
    assert not at.exception and not at.warning
    assert at.multiselect(key="train_digits").value == [3, 5, 7]
    values = {n.key: n.value for n in at.number_input}
    assert values["train_width"] == 64 and values["train_slow_lr"] == 0.0
    assert values["train_regular_lr"] == 0.05 and values["train_epochs"] == 3 and values["train_seed"] == 7


def test_garbage_query_parameters_warn_and_keep_the_defaults():
    at = open_app(width="abc", digits="3", regular_lr="nan", device="tpu", bogus="1")
    assert not at.exception
    warnings = texts(at.warning)
    assert "unknown URL parameter(s) 'bogus'" in warnings
    assert "width='abc': width must be a whole number from 1 to 32,768" in warnings
    assert "digits='3'" in warnings and "regular_lr='nan'" in warnings and "device='tpu'" in warnings
    assert at.number_input(key="train_width").value == 2000
    assert at.multiselect(key="train_digits").value == [8, 9]


def test_stop_keeps_the_epochs_trained():
    at = press_train(open_app(**{**TINY, "epochs": "500", "width": "512"}))  # a minute of training: Stop comes first
    assert at.button(key="train").disabled  # one run at a time per session
    job = at.session_state["job"]
    wait_until(job.status, lambda status: status.epochs_done >= 2)
    at = at.button(key="stop_training").click().run()
    at = finish(at)
    assert not at.exception
    result = at.session_state["result"]
    assert result.stopped and result.epochs_done < 500
    assert f"Stopped after {result.epochs_done} of 500 epochs" in texts(at.info)
    alignment = charts(at)[ALIGNMENT_TITLE]
    assert feature_points(alignment) == {"slow": result.epochs_done + 1, "regular": result.epochs_done + 1}


@pytest.mark.slow
@pytest.mark.parametrize("ready", [False, True], ids=["workers starting", "workers ready"])
def test_the_charting_library_loads_while_a_first_run_waits_for_its_worker(monkeypatch, ready):
    """While the training processes start, the page that follows Train carries a hidden empty chart
    (the browser loads Plotly meanwhile); once they run, or once the session has drawn charts, not."""
    at = open_app(**{**TINY, "epochs": "500", "width": "512"})  # longer than the first look
    wait_until(lambda: ui.job_slots().workers.devices())  # a worker is up: the first epoch comes in time
    monkeypatch.setattr(ui, "workers_ready", lambda: ready)
    at = press_train(at)
    preload = [chart for chart in at.get("plotly_chart") if chart.key == "preload"]
    assert len(preload) == (0 if ready else 1) and not at.exception
    assert at.session_state["charts_drawn"]  # the live charts came with it
    at.session_state["job"].stop()
    at = finish(at)
    monkeypatch.setattr(ui, "workers_ready", lambda: False)
    again = press_train(at)
    assert not [chart for chart in again.get("plotly_chart") if chart.key == "preload"]
    again.session_state["job"].stop()
    finish(again)


@pytest.mark.slow
def test_a_full_server_shows_waiting_for_a_free_slot(monkeypatch):
    monkeypatch.setenv("KALIGN_MAX_JOBS", "1")
    busy = press_train(open_app(**{**TINY, "epochs": "500"}))
    waiting = press_train(open_app(**{**TINY, "seed": "1"}))
    assert "Waiting for a free slot: yours is next" in texts(waiting.info)
    waiting = waiting.button(key="stop_training").click().run()
    assert "Stopped before training began" in texts(finish(waiting).info)
    finish(busy.button(key="stop_training").click().run())


def test_a_diverged_model_is_marked_and_explained():
    at = trained(regular_lr="50", slow_lr="0", epochs="3")
    result = at.session_state["result"]
    epoch = result.diverged_at["regular"]
    assert epoch is not None
    assert f"The **regular** model diverged at epoch {epoch}" in texts(at.error)
    assert "Try a smaller regular learning rate" in texts(at.error)
    last = result.history["regular"][-1]
    assert last.epoch == epoch  # its last record is the end of the epoch it diverged in, as the message says
    assert f"Its cards (test error {last.test_error:.1f} %) measure the weights it ended that epoch with" in texts(
        at.error
    )
    alignment = charts(at)[ALIGNMENT_TITLE]
    marker = next(t for t in alignment["data"] if t["name"] == "regular features diverged")
    assert marker["x"] == [epoch] and marker["marker"]["symbol"] == "x"
    assert all(y is None or y == y for t in alignment["data"] for y in t["y"])  # gaps, never NaN


def test_pages_keep_settings_and_results_when_switching():
    at = trained()
    result = at.session_state["result"]
    at.switch_page("pages/kernels.py").run()
    assert not at.exception
    heatmaps = [json.loads(c.proto.spec)["data"][0] for c in at.get("plotly_chart")]
    assert [h["type"] for h in heatmaps] == ["heatmap"] * 6  # three kernels, each with its class-block means
    assert at.slider(key="kernel_epoch").max == 2
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[0].startswith("target") and "ρ = " in titles[2] and "ρ = " in titles[4]
    at.switch_page("pages/about.py").run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.number_input(key="train_width").value == 32
    assert at.session_state["result"] is result
    assert len(at.get("plotly_chart")) == TRAIN_CHARTS


@pytest.mark.parametrize("page", ["pages/kernels.py", "pages/runs.py"])
def test_pages_without_a_run_say_how_to_get_one(page):
    at = open_app()
    at.switch_page(page).run()
    assert not at.exception
    assert "No run yet" in texts(at.info)
    # The Runs page does not send its reader to the Runs page.
    assert ("on the Runs page" in texts(at.info)) == (page != "pages/runs.py")


def test_about_page_explains_alignment_with_references():
    at = open_app()
    at.switch_page("pages/about.py").run()
    assert not at.exception
    assert any(r"\rho(K, K')" in e.value for e in at.latex)
    references = texts(at.markdown)
    for author in ("Cortes", "Kornblith", "Chizat", "Atanasov", "Baratin"):
        assert author in references


def test_runs_page_saves_lists_and_overlays_runs(tmp_path):
    at = trained()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    assert "No saved runs yet." in texts(at.caption) and str(tmp_path) not in texts(at.caption)
    at.text_input(key="save_name").set_value("../../escape me")
    at = at.button(key="FormSubmitter:save_run-Save").click().run()
    assert not at.exception
    saved = tmp_path / "runs" / "escape-me"
    assert (saved / runs.RUN_JSON).is_file()  # the name was cleaned and stayed in the runs folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert at.dataframe[0].value["run"].tolist() == ["escape-me"]
    assert at.multiselect(key="overlay_runs").options == ["current run", "escape-me"]
    at = at.multiselect(key="overlay_runs").set_value(["current run", "escape-me"]).run()
    overlay = charts(at)["Alignment ρ(ΦΦᵀ, YYᵀ) (slow dotted, regular solid)"]
    assert points(overlay) == {f"{run} · {m}": 3 for run in ("current run", "escape-me") for m in ("slow", "regular")}
    at.selectbox(key="open_name").set_value("escape-me")
    at = at.button(key="open_saved").click().run()
    assert "Opened escape-me" in texts(at.success)
    assert str(tmp_path) not in texts(at.success) + texts(at.error)
    assert len(at.session_state["result"].kernels["slow"]) == 3


def test_runs_page_refuses_a_folder_outside_the_runs_folder(tmp_path):
    at = open_app()
    at.switch_page("pages/runs.py").run()
    at.text_input[0].set_value(str(tmp_path.parent)).run()
    assert not at.exception
    assert "Runs folder: runs folder must be" in texts(at.error)


def test_an_opened_run_puts_its_settings_in_the_form_and_the_url(tmp_path):
    """A run opened on the Runs page shows with its own settings, never beside the previous ones."""
    saved = run_experiment(
        ExperimentConfig(digits=(1, 7), width=24, epochs=1, batch_size=100, probe_size=20, seed=5, source="sample")
    )
    runs.save_run(saved, tmp_path / "runs" / "one-vs-seven")
    at = open_app(**TINY)  # 8 vs 9, width 32
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="open_name").set_value("one-vs-seven")
    at = at.button(key="open_saved").click().run()
    assert not at.exception
    assert at.query_params["digits"] == "1,7" and at.query_params["width"] == "24"
    at.switch_page("pages/train.py").run()
    assert at.multiselect(key="train_digits").value == [1, 7]
    assert at.number_input(key="train_width").value == 24 and at.number_input(key="train_seed").value == 5
    assert at.session_state["result"].config == saved.config


def test_a_link_whose_settings_have_finished_on_this_server_shows_the_run_at_once():
    first = trained()
    link = open_app(**TINY)  # a classmate opens the same link: no Train press
    assert "job" not in link.session_state
    assert link.session_state["result"] is first.session_state["result"]
    assert "this link's settings had already finished on this server" in texts(link.success)
    assert len(link.get("plotly_chart")) == TRAIN_CHARTS


def test_a_link_with_dropped_parameters_warns_instead_of_showing_a_cached_run():
    """Found in Chromium: with TINY already finished, TINY plus settings that clash together used to
    show TINY's run as "this link's" and drop the warning (showing the run cleared it)."""
    trained()
    link = open_app(**{**TINY, "probe_size": "1000", "epochs": "500"})
    assert "result" not in link.session_state
    assert "this link's settings had already finished" not in texts(link.success)
    assert "probe_size" in texts(link.warning) and "epochs" in texts(link.warning)


def test_no_change_is_said_in_words_without_a_red_arrow():
    at = trained(slow_lr="0")  # the slow model's features never move: its ρ stays exactly constant
    slow = next(m for m in at.metric if m.label == "slow · alignment ρ")
    assert slow.delta == "unchanged since init"
    assert slow.proto.color == Metric.MetricColor.GRAY and slow.proto.direction == Metric.MetricDirection.NONE


def test_the_parametrization_is_chosen_on_the_form_says_what_it_scales_and_trains_the_run():
    at = open_app(**TINY)
    choice = at.selectbox(key="train_parametrization")
    assert choice.value == "standard" and choice.options == ["standard (PyTorch)", "NTK", "μP (mean-field)"]
    at = choice.set_value("mup").run()
    assert at.session_state["settings"]["parametrization"] == "mup"
    assert any(c.value.startswith("μP (mean-field): the NTK network at width 256") for c in at.caption)
    at = press_train(at, wait=True)
    assert at.session_state["result"].config.parametrization == "mup" and not at.exception
    linked = open_app(**TINY, parametrization="ntk")
    assert linked.selectbox(key="train_parametrization").value == "ntk" and not linked.warning
    # Both have Θ∞: the reading says how far the run started from it (the standard run says why not).
    said = texts(at.markdown)
    assert "from its infinite-width limit Θ∞" in said and "its ridge machine scores" in said
    figures = charts(at)
    assert "Θ∞ (width → ∞, both models' start)" in {t["name"] for t in figures[ALIGNMENT_TITLE]["data"]}
    bars = figures["Test error: networks and kernel machines"]["data"]
    assert [t["y"][-1] for t in bars] == ["tangent Θ∞ (width → ∞)"] * 2
