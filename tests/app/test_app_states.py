"""States a user must not be confused by. Offline (a name that cannot be looked up: what a machine
without internet sees), pages say so in words, with no raw error text and no server path, while the
server's log keeps the details, without a traceback. While a run trains, a page that shows the current
run says exactly that, once, and never "No run yet"."""

import logging
import multiprocessing
import socket
import threading
import urllib.error

import pytest
from streamlit.testing.v1 import AppTest

from apptest import TINY, TINY_CONFIG, open_app, press_train, texts, wait_until
from kalign_app import ui, workers
from kalign_core import data
from kalign_core.data import DataUnavailable, load_digits

pytestmark = pytest.mark.usefixtures("fresh_server")

OFFLINE = urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
RAW = ("urlopen", "Errno", "Traceback", "/root", "/tmp")
SHOWN = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success")


def page_text(at: AppTest) -> str:
    """Everything the page says in words."""
    return "\n".join(texts(getattr(at, kind)) for kind in SHOWN)


def assert_words_only(shown: str) -> None:
    assert not [raw for raw in RAW if raw in shown], shown
    assert str(data.default_data_dir()) not in shown, shown


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Downloads fail as they do without internet; the retry pause and the arrays' cache start empty."""

    def no_internet(root):
        raise OFFLINE

    monkeypatch.setattr(data, "_download_mnist", no_internet)
    monkeypatch.setattr(data, "_last_failed_download", -float("inf"))
    data._mnist_arrays.cache_clear()
    yield tmp_path / "mnist"
    data._mnist_arrays.cache_clear()


@pytest.mark.parametrize(
    "error, words",
    [
        (str(OFFLINE), "no internet connection"),
        ("<urlopen error [Errno -3] Temporary failure in name resolution>", "no internet connection"),
        ("<urlopen error timed out>", "the download timed out"),
        ("<urlopen error [Errno 111] Connection refused>", "MNIST's download servers could not be reached"),
        ("HTTP Error 503: Service Unavailable", "MNIST's download servers could not be reached"),
        ("File not found or corrupted.", "the downloaded files were damaged (checksum mismatch)"),
        ("[Errno 28] No space left on device", "kalign could not write the files to its data folder"),
        ("[Errno 13] Permission denied: '/root/.cache/kalign'", "kalign could not write the files to its data folder"),
        ("something nobody foresaw", "the download failed"),
    ],
)
def test_a_failed_download_is_told_in_words(error, words):
    assert data.download_failure_words(error) == words


def test_offline_the_error_keeps_the_details_and_gives_words_for_a_page(offline):
    for attempt, details in (("downloading", "Name or service not known"), ("in the retry pause", "a download failed")):
        with pytest.raises(DataUnavailable) as raised:
            load_digits((8, 9), source="mnist", root=offline)
        assert details in str(raised.value) and str(offline) in str(raised.value), attempt
        assert "no internet connection" in raised.value.words, attempt
        assert_words_only(raised.value.words)
        assert str(offline) not in raised.value.words
    fallback = load_digits((8, 9), source="auto", root=offline)
    assert fallback.source == "sample" and str(offline) not in fallback.note
    assert fallback.note.startswith("full MNIST is not on this machine yet")


def test_a_worker_without_data_sends_words_for_the_page_and_the_details_for_the_log(offline):
    here, there = multiprocessing.Pipe()
    config = TINY_CONFIG.to_dict() | {"source": "mnist", "device": "cpu"}
    workers._train(there, threading.Event(), (config, str(offline)))
    messages = []
    while here.poll():
        messages.append(workers._receive(here))
    kind, message, details = messages[-1]
    assert kind == "failed" and "no internet connection" in message and str(offline) not in message
    assert "Name or service not known" in details and "Traceback" not in details


def test_offline_the_train_page_says_no_internet_and_the_log_keeps_the_details(offline, monkeypatch, caplog):
    monkeypatch.setenv("KALIGN_DEFAULT_SOURCE", "auto")  # the server fetches MNIST in the background
    caplog.set_level(logging.WARNING, logger="kalign")
    at = open_app()
    fetch = ui._mnist_fetch(str(data.default_data_dir()))
    wait_until(lambda: "could not be downloaded" in fetch.status())
    at = at.run()
    shown = page_text(at)
    assert "Full MNIST could not be downloaded (no internet connection)" in shown
    assert_words_only(shown)
    logged = caplog.text
    assert "Name or service not known" in logged and str(data.default_data_dir()) in logged
    assert "Traceback" not in logged


def test_offline_the_sweeps_plan_for_full_mnist_says_no_internet_in_words(offline, caplog):
    caplog.set_level(logging.WARNING, logger="kalign")
    at = open_app(**{**TINY, "source": "mnist"}).switch_page("pages/sweeps.py").run()
    assert not at.exception
    assert "no internet connection" in texts(at.error)
    assert_words_only(texts(at.error))  # (the page names its sweeps folder on purpose: it is where sweeps go)
    assert "Name or service not known" in caplog.text and "Traceback" not in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("page", ["pages/kernels.py", "pages/runs.py"])
@pytest.mark.parametrize("before", ["no run yet", "an earlier run"])
def test_while_a_run_trains_a_page_says_so_once(page, before, earlier):
    at = press_train(open_app(earlier if before == "an earlier run" else None, **{**TINY, "epochs": "500"}))
    try:
        at.switch_page(page).run()
        assert not at.exception
        assert "No run yet" not in page_text(at)
        (message,) = [info.value for info in at.info if "run" in info.value]
        assert message.startswith("A run is training: this page shows it as soon as it finishes")
        assert ("until then, the previous run" in message) == (before == "an earlier run")
    finally:
        at.switch_page("pages/train.py").run()
        at.button(key="stop_training").click().run()
        wait_until(lambda: at.session_state["job"].done)
