"""Runs found again by their id (a reload, a second tab), one run at a time per student, and the
browser named by Streamlit's XSRF cookie."""

import binascii
import os

import pytest

from kalign_app import students
from kalign_app.run_registry import AlreadyRunning, RunNotFound, RunRegistry


class FakeRun:
    """A run that ends when told to and counts its heartbeats."""

    def __init__(self):
        self.done = False
        self.touches = 0

    def touch(self):
        self.touches += 1


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_run_is_found_again_by_its_unguessable_id():
    registry = RunRegistry()
    runs = [FakeRun() for _ in range(50)]
    ids = [registry.start(f"student {i}", lambda _, run=run: run) for i, run in enumerate(runs)]
    assert len(set(ids)) == 50 and all(len(run_id) >= 20 for run_id in ids)
    assert all(set(run_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") for run_id in ids)
    entry = registry.find(ids[7])
    assert entry.run is runs[7] and entry.student == "student 7" and entry.lesson is None
    lesson = FakeRun()
    lesson_id = registry.start("student 50", lambda _: lesson, lesson="too-fast")
    assert registry.find(lesson_id).lesson == "too-fast" and registry.find(lesson_id).run is lesson


def test_the_start_gets_the_runs_own_id():
    registry = RunRegistry()
    given = []
    run_id = registry.start("a", lambda run_id: given.append(run_id) or FakeRun())
    assert given == [run_id]


def test_one_run_at_a_time_per_student_and_nothing_starts_when_refused():
    registry = RunRegistry()
    first = FakeRun()
    first_id = registry.start("a", lambda _: first)
    started = []
    with pytest.raises(AlreadyRunning) as refused:
        registry.start("a", lambda _: started.append(1) or FakeRun(), lesson="too-fast")
    assert refused.value.run_id == first_id and refused.value.entry.run is first
    assert "one at a time" in str(refused.value)
    assert started == [] and len(registry) == 1
    assert registry.active("a") == (first_id, registry.find(first_id))
    registry.start("b", lambda _: FakeRun())  # another student is not held up
    first.done = True
    assert registry.active("a") is None
    second_id = registry.start("a", lambda _: FakeRun())  # once it has ended, the next starts
    assert registry.active("a")[0] == second_id


def test_an_unknown_id_says_so_in_words():
    registry = RunRegistry()
    with pytest.raises(RunNotFound) as missing:
        registry.find("no-such-run-id-at-all")
    message = str(missing.value)
    assert message.startswith("The run in this link (run=no-such-run-…) is not on this server")
    assert "10 minutes" in message and "press Train" in message


def test_an_ended_run_is_kept_for_a_while_then_forgotten():
    clock = Clock()
    registry = RunRegistry(keep_ended_s=60.0, clock=clock)
    run = FakeRun()
    run_id = registry.start("a", lambda _: run)
    clock.now += 3600.0
    assert registry.find(run_id).run is run  # still training: never forgotten
    run.done = True
    assert registry.find(run_id).run is run  # just ended: a reload still shows it
    clock.now += 59.0
    assert registry.find(run_id).run is run
    clock.now += 2.0
    with pytest.raises(RunNotFound):
        registry.find(run_id)
    assert len(registry) == 0


def masked(token: bytes, mask: bytes, timestamp: str = "1796359442") -> str:
    """Tornado's version-2 XSRF cookie for `token` under `mask` (the browser gets a new mask each visit)."""
    hidden = bytes(byte ^ mask[i % 4] for i, byte in enumerate(token))
    return f"2|{binascii.b2a_hex(mask).decode()}|{binascii.b2a_hex(hidden).decode()}|{timestamp}"


def test_a_browser_is_named_by_the_token_under_its_xsrf_cookies_mask():
    token, other = os.urandom(16), os.urandom(16)
    visits = [{students.XSRF_COOKIE: masked(token, os.urandom(4))} for _ in range(3)]  # reloads, tabs
    names = {students.browser_id(cookies) for cookies in visits}
    assert len(names) == 1 and None not in names
    assert students.browser_id({students.XSRF_COOKIE: masked(other, os.urandom(4))}) not in names
    assert token.hex() not in names.pop()  # only a digest of the token is kept
    # Measured in Chromium: a reload and a second tab of one browser, then another browser.
    chromium = [
        "2|b7696c6c|7d50a2e5c13ee10ec3466e6caccffc7d|1796359442",
        "2|dc8d6691|16b4a818aadaebf3a8a26491c72bf680|1796359442",
        "2|6c6949f2|a650877b1a3ec49018464bf277cfd9e3|1796359442",
        "2|1ce8b2a3|a78f1a3955366bb11b2d6bd106491ed6|1796359444",
    ]
    seen = [students.browser_id({students.XSRF_COOKIE: cookie}) for cookie in chromium]
    assert seen[0] == seen[1] == seen[2] != seen[3]


@pytest.mark.parametrize("cookie", ["", "2|zz|not hex|1", "plain-token", "2||abcd|1", "1|2|3"])
def test_without_a_usable_xsrf_cookie_the_browser_is_unknown_or_named_by_the_value(cookie):
    name = students.browser_id({students.XSRF_COOKIE: cookie} if cookie else {})
    if cookie:
        assert name == students.browser_id({students.XSRF_COOKIE: cookie}) and name.startswith("browser-")
    else:
        assert name is None and students.browser_id({}) is None
