"""The password gate through AppTest: with KALIGN_PASSWORD (or `password` in the secrets file) every
page shows only the prompt until the session gives the password; a wrong one is refused, and each
try after it waits longer; the right one opens the page with the link's settings; the password is
never logged nor kept; a server reachable from other machines without a password shows nothing but how
to set one. The rules themselves (the waits, the server-wide count, the comparison) are tested
directly with a fake clock."""

import logging

import pytest
import streamlit as st
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs
from streamlit import config
from streamlit.testing.v1 import AppTest

from apptest import APP, TINY, texts
from kalign_app import navigation, password
from kalign_core.lessons import LESSONS

pytestmark = pytest.mark.usefixtures("fresh_server")

PASSWORD = "correct horse ☃ battery"
PAGES = ("pages/train.py", "pages/lessons.py", "pages/kernels.py", "pages/runs.py", "pages/sweeps.py")
PAGES += ("pages/width_lab.py", "pages/about.py")


@pytest.fixture
def with_password(monkeypatch):
    monkeypatch.setenv("KALIGN_PASSWORD", PASSWORD)


@pytest.fixture
def option():
    """Set Streamlit options for one test; they are put back afterwards."""
    saved = {}

    def set_option(name, value):
        saved.setdefault(name, config.get_option(name))
        config.set_option(name, value)

    yield set_option
    for name, value in saved.items():
        config.set_option(name, value)


def locked_app(page: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    if page is not None:
        at.switch_page(page)  # the page file runs alone first, as a fresh server's deep link does
    return at.run()


def give(at: AppTest, typed: str) -> AppTest:
    return at.text_input(key="password_typed").input(typed).run()


def assert_only_the_prompt(at: AppTest) -> None:
    assert not at.exception
    assert [field.label for field in at.text_input] == ["Password"]
    assert [title.value for title in at.title] == [navigation.APP_TITLE]
    assert not at.button and not at.number_input and not at.multiselect and not at.get("plotly_chart")


def test_without_a_password_the_app_opens_at_once():
    at = locked_app(**TINY)
    assert not at.exception and not at.text_input
    assert at.button(key="train").label == "Train"


@pytest.mark.usefixtures("with_password")
@pytest.mark.parametrize("page", [None, *PAGES])
def test_with_a_password_every_page_shows_only_the_prompt(page):
    at = locked_app(page, **TINY)
    assert_only_the_prompt(at)
    if page is not None:  # and after app.py has run in that session too
        assert_only_the_prompt(locked_app().switch_page(page).run())


@pytest.mark.usefixtures("with_password")
def test_a_wrong_password_is_refused_then_the_right_one_opens_the_form_with_the_links_settings():
    at = give(locked_app(**TINY), "correct horse")
    assert_only_the_prompt(at)
    assert "Wrong password. Your next try is checked after 1 s." in texts(at.error)
    assert at.text_input(key="password_typed").value == ""  # emptied for the next try
    at = give(at, PASSWORD)
    assert not at.exception and not at.text_input and not at.error
    assert at.button(key="train").label == "Train"
    assert at.session_state["settings"]["width"] == 32  # TINY's, from the address
    assert at.query_params["width"] == "32"
    at.switch_page("pages/kernels.py").run()  # the session stays open on every page
    assert [title.value for title in at.title] == ["Kernels"] and not at.text_input


@pytest.mark.usefixtures("with_password")
def test_the_browser_keeps_a_pass_cookie_that_lets_its_next_sessions_in_and_no_other(monkeypatch):
    at = give(locked_app(**TINY), PASSWORD)
    [script] = [element.proto.body for element in at.get("html")]
    token = password.pass_token(PASSWORD, password._server_key())
    assert f"document.cookie = '{password.COOKIE}={token}; path=/; SameSite=Strict'" in script
    assert PASSWORD not in script
    cookies = {}
    monkeypatch.setattr(password, "browser_cookie", lambda: cookies.get(password.COOKIE))
    cookies[password.COOKIE] = token  # a reload or another tab of that browser
    again = locked_app("pages/kernels.py")
    assert not again.exception and not again.text_input and not again.get("html")
    assert [title.value for title in again.title] == ["Kernels"]
    for other in (
        token[:-1] + ("0" if token[-1] != "0" else "1"),
        password.pass_token(PASSWORD, b"another server's key"),  # a restarted server: asks again
        password.pass_token(PASSWORD + "!", password._server_key()),  # the password changed
        "",
        "é" * 64,
    ):
        cookies[password.COOKIE] = other
        assert_only_the_prompt(locked_app(**TINY))


@pytest.mark.usefixtures("with_password")
def test_a_lesson_link_opens_its_lesson_after_the_password():
    lesson = LESSONS[-1]
    at = give(locked_app("pages/lessons.py", lesson=lesson.id), PASSWORD)
    at.switch_page("pages/lessons.py").run()
    assert not at.exception
    assert at.subheader[0].value == f"{len(LESSONS)}. {lesson.title}"


@pytest.mark.usefixtures("with_password")
def test_the_password_is_never_logged_nor_kept_in_the_session(caplog):
    caplog.set_level(logging.DEBUG)
    at = give(give(locked_app(), PASSWORD[::-1]), PASSWORD)
    assert "a wrong password (this session's wrong try 1)" in caplog.text
    assert "a session gave the password" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD[::-1] not in caplog.text
    assert not any(PASSWORD in str(value) for value in at.session_state.values())


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed=hs.text(max_size=60))
@example(typed=PASSWORD + " ")
@example(typed=PASSWORD.upper())
@example(typed=PASSWORD[:-1])
@example(typed="\x00" * 100_000)
def test_no_other_text_opens_the_app_and_none_shows_a_traceback(with_password, typed):
    password.server_wrong_tries.clear()  # each example is one session's first try
    at = give(locked_app(), typed)
    assert_only_the_prompt(at)
    assert bool(typed) == ("Wrong password" in texts(at.error))


def test_a_password_in_the_secrets_file_counts_and_the_environment_wins(tmp_path, option, monkeypatch):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('password = "from the file"\n')
    option("secrets.files", [str(secrets)])
    try:
        assert password.configured() == "from the file"
        monkeypatch.setenv("KALIGN_PASSWORD", PASSWORD)
        assert password.configured() == PASSWORD
        monkeypatch.delenv("KALIGN_PASSWORD")
        assert_only_the_prompt(give(locked_app(), PASSWORD))
    finally:
        st.secrets._reset()  # Streamlit keeps the file it read; forget it for the other tests


def test_a_secrets_file_that_cannot_be_read_keeps_the_app_shut(tmp_path, option):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("password = \n")
    option("secrets.files", [str(secrets)])
    at = locked_app()
    assert not at.exception and not at.text_input and not at.button
    assert "password setting cannot be read" in texts(at.error)


@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.168.1.20", "::", "class.example.org"])
def test_a_server_other_machines_reach_shows_nothing_without_a_password(option, monkeypatch, address):
    option("server.address", address)
    at = locked_app(**TINY)
    assert not at.exception and not at.text_input and not at.button
    assert "can be reached from other machines" in texts(at.error) and "KALIGN_PASSWORD" in texts(at.error)
    monkeypatch.setenv("KALIGN_PASSWORD", PASSWORD)
    assert_only_the_prompt(locked_app(**TINY))


@pytest.mark.parametrize(
    ("address", "reachable"),
    [("localhost", False), ("127.0.0.1", False), ("127.0.1.1", False), ("::1", False), ("[::1]", False)]
    + [("0.0.0.0", True), ("", True), (None, True), ("10.0.0.5", True), ("myhost", True)],
)
def test_which_addresses_other_machines_reach(address, reachable):
    assert password.reachable_from_other_machines(address) is reachable


def test_the_comparison_takes_any_text():
    assert password.matches(PASSWORD, PASSWORD)
    assert not password.matches(PASSWORD, PASSWORD + "x") and not password.matches("", PASSWORD)
    assert password.matches("\udcff", "\udcff")  # an environment that is not UTF-8 decodes to surrogates


def test_each_wrong_try_doubles_the_wait_up_to_half_a_minute_and_a_busy_server_waits_everyone():
    waits = [password.wait_before_try(n, server_busy=False) for n in range(8)]
    assert waits == [0, 1, 2, 4, 8, 16, 30, 30]
    assert [password.wait_before_try(n, server_busy=True) for n in (0, 1, 4)] == [5, 5, 8]


def test_the_server_counts_wrong_tries_per_minute_and_warns_once(caplog):
    now = [0.0]
    tries = password.WrongTries(limit=3, clock=lambda: now[0])
    for _ in range(2):
        tries.record()
    assert not tries.busy()
    tries.record()
    assert tries.busy()
    now[0] = 30.0
    tries.record()  # still busy: warned once this minute
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "3 wrong passwords in the last minute (the limit is 3)" in caplog.text
    now[0] = 61.0  # the first three are over a minute old
    assert not tries.busy()
