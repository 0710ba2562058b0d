"""The password gate, Streamlit's pattern for apps without single sign-on. With KALIGN_PASSWORD set (or
`password` in .streamlit/secrets.toml), a browser session sees only a password prompt until it has
given the password. A server that other
machines can reach (server.address not a loopback address) and that has no password shows nothing
but how to set one: kalign refuses to serve a network without a password.

A session that gives the password hands its browser a cookie for the browser's session (until it
closes), so that a reload or another tab is let in without asking again. The cookie is an HMAC of the
password's digest under a random key of this server process: it says nothing of the password, and
opens only this server, with this password, until the server restarts.

Guessing is slowed without locking anyone out. A session waits before each try after a wrong one,
longer each time (1, 2, 4 … 30 s); and while the whole server has seen WRONG_PER_MINUTE wrong tries in
the last minute (many sessions guessing at once), every try waits at least BUSY_DELAY_S, which the
server logs as a warning. The right password is never refused, only delayed. Passwords are compared
in constant time, and never logged nor kept in the session."""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time

import streamlit as st

from kalign_app import environment

log = logging.getLogger(__name__)

MAX_DELAY_S = 30.0
BUSY_DELAY_S = 5.0
WRONG_PER_MINUTE = 30
WINDOW_S = 60.0
_TYPED = "password_typed"  # the prompt's field, emptied by each try
_GIVEN = "password_given"  # this session gave the right password
_WRONG = "password_wrong_tries"  # this session's wrong tries since it last gave the right one
_TOKEN = "password_pass_token"  # the pass cookie this session's browser is to get (it typed the password)
COOKIE = "kalign_pass"
HOW_TO_SET = "set KALIGN_PASSWORD (or `password` in .streamlit/secrets.toml) and restart the server"


class SecretsUnreadable(Exception):
    """A secrets file exists but Streamlit cannot read it: it may hold the password, so stay shut."""


def configured() -> str | None:
    """The server's password: KALIGN_PASSWORD, else `password` in Streamlit's secrets, else None."""
    from_environment = environment.password()
    if from_environment is not None:
        return from_environment
    if not st.secrets.load_if_toml_exists():
        if any(os.path.isfile(path) for path in st.get_option("secrets.files")):
            raise SecretsUnreadable  # Streamlit logged why when the server started
        return None
    value = st.secrets.get("password")
    return None if value is None or str(value) == "" else str(value)


def reachable_from_other_machines(address: str | None) -> bool:
    """Whether a server bound to `address` (server.address; empty: every interface) can be reached
    from other machines. A host name other than localhost counts as reachable."""
    if not address:
        return True
    if address == "localhost":
        return False
    try:
        return not ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return True


def matches(typed: str, wanted: str) -> bool:
    """In constant time: neither the length nor the first wrong character shows in how long it takes."""
    digest = [hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() for text in (typed, wanted)]
    return hmac.compare_digest(*digest)


def wait_before_try(wrong_tries: int, server_busy: bool) -> float:
    """Seconds a session waits before its next try is checked, after `wrong_tries` wrong ones."""
    own = 0.0 if wrong_tries == 0 else min(MAX_DELAY_S, 2.0 ** (wrong_tries - 1))
    return max(own, BUSY_DELAY_S if server_busy else 0.0)


class WrongTries:
    """The wrong tries of every session in the last WINDOW_S seconds."""

    def __init__(self, limit: int = WRONG_PER_MINUTE, clock=time.monotonic):
        self._limit = limit
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self._warned_at: float | None = None
        self._lock = threading.Lock()

    def _recent(self, now: float) -> int:
        while self._times and now - self._times[0] > WINDOW_S:
            self._times.popleft()
        return len(self._times)

    def record(self) -> None:
        with self._lock:
            now = self._clock()
            self._times.append(now)
            count = self._recent(now)
            if count >= self._limit and (self._warned_at is None or now - self._warned_at > WINDOW_S):
                self._warned_at = now
                log.warning(
                    "%d wrong passwords in the last minute (the limit is %d): someone may be guessing; "
                    "every try now waits at least %g s",
                    count,
                    self._limit,
                    BUSY_DELAY_S,
                )

    def busy(self) -> bool:
        with self._lock:
            return self._recent(self._clock()) >= self._limit


@st.cache_resource
def server_wrong_tries() -> WrongTries:
    return WrongTries()


@st.cache_resource
def _server_key() -> bytes:
    return secrets.token_bytes(32)


def pass_token(wanted: str, key: bytes) -> str:
    """The cookie's value for the password `wanted` under a server's `key`."""
    digest = hashlib.sha256(wanted.encode("utf-8", "surrogatepass")).digest()
    return hmac.new(key, digest, hashlib.sha256).hexdigest()


def browser_cookie() -> str | None:
    """The pass cookie the browser sent when this session connected (none without a browser, as in
    AppTest)."""
    kept = st.context.cookies.get(COOKIE)
    return kept if isinstance(kept, str) else None


def admitted() -> bool:
    """Whether this session may see the app: it gave the password, or its browser did earlier in
    its session (the cookie)."""
    if st.session_state.get(_GIVEN):
        return True
    try:
        wanted = configured()
    except SecretsUnreadable:
        return False
    if wanted is None:
        return not reachable_from_other_machines(st.get_option("server.address"))
    kept = browser_cookie()
    if kept is not None and hmac.compare_digest(kept.encode(), pass_token(wanted, _server_key()).encode()):
        st.session_state[_GIVEN] = True
        log.info("a session came back with its browser's pass cookie")
        return True
    return False


def hand_over_cookie() -> None:
    """In a session that typed the password: its browser keeps the pass cookie for its own session
    (no expiry date). A script, since Streamlit sets no cookies of its own; on every run of that
    session, since a run cut short by a rerun may never reach the browser."""
    token = st.session_state.get(_TOKEN)
    if token is None:
        return
    st.html(
        f"<script>document.cookie = '{COOKIE}={token}; path=/; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
        unsafe_allow_javascript=True,
    )


def _check() -> None:
    """The prompt's callback: one try, after this session's wait."""
    typed = st.session_state.get(_TYPED, "")
    st.session_state[_TYPED] = ""  # the typed text is not kept, and the field is empty for the next try
    if not typed:
        return
    wrong = st.session_state.get(_WRONG, 0)
    time.sleep(wait_before_try(wrong, server_wrong_tries().busy()))
    try:
        wanted = configured()
    except SecretsUnreadable:
        return
    if wanted is not None and matches(typed, wanted):
        st.session_state[_GIVEN] = True
        st.session_state[_TOKEN] = pass_token(wanted, _server_key())
        st.session_state.pop(_WRONG, None)
        log.info("a session gave the password")
    else:
        st.session_state[_WRONG] = wrong + 1
        server_wrong_tries().record()
        log.info("a wrong password (this session's wrong try %d)", wrong + 1)


@functools.cache
def _log_error_once(message: str) -> None:
    log.error(message)


def show_gate(title: str) -> None:
    """What a session that may not see the app sees instead, under `title`: the prompt, or why there
    is none."""
    st.title(title)
    try:
        wanted = configured()
    except SecretsUnreadable:
        _log_error_once("the secrets file cannot be read: every page shows only that (Streamlit logged why)")
        st.error("This server's password setting cannot be read, so it shows nothing. The server's log says why.")
        return
    if wanted is None:
        address = st.get_option("server.address") or "every network interface"
        _log_error_once(f"serving on {address} without a password: every page shows only how to set one")
        st.error(
            f"This server can be reached from other machines (server.address: {address}) but has no password, "
            f"so it shows nothing. Whoever runs it: {HOW_TO_SET}, or serve on localhost only.",
            icon=":material/lock:",
        )
        return
    st.write("This server asks for a password. Whoever runs it can give it to you.")
    st.text_input("Password", type="password", key=_TYPED, on_change=_check)
    wrong = st.session_state.get(_WRONG, 0)
    if wrong:
        wait = wait_before_try(wrong, server_wrong_tries().busy())
        st.error(f"Wrong password. Your next try is checked after {wait:g} s.", icon=":material/lock:")
