"""The app's pages in one place: their files, titles and icons, the menu app.py draws, and the rule
that every page runs inside app.py.

The page files stay in the top-level pages/ folder. Streamlit documents that such a folder is the
app's navigation until any session calls `st.navigation`, after which it is ignored for every
session; so the one request that can arrive before that (a fresh server's first visitor following a
link to, say, /kernels) runs that page file alone, as does each run of Streamlit's AppTest (it
starts every run in that mode). `require_app` leaves that mode, with Streamlit's public API only.

Both ways in pass through `menu`, which keeps a session that has not given the server's password (see
kalign_app/password.py) on the password prompt, whatever page its link names."""

from __future__ import annotations

import streamlit as st

from kalign_app import password

APP_TITLE = "kalign · kernel alignment lab"
TRAIN = "pages/train.py"
LESSONS = "pages/lessons.py"
KERNELS = "pages/kernels.py"
RUNS = "pages/runs.py"
SWEEPS = "pages/sweeps.py"
WIDTH_LAB = "pages/width_lab.py"
ABOUT = "pages/about.py"
_MENU = (
    (TRAIN, "Train", ":material/model_training:"),
    (LESSONS, "Lessons", ":material/school:"),
    (KERNELS, "Kernels", ":material/grid_on:"),
    (RUNS, "Runs", ":material/folder_open:"),
    (SWEEPS, "Sweeps", ":material/apps:"),
    (WIDTH_LAB, "Width lab", ":material/stacked_line_chart:"),
    (ABOUT, "About", ":material/info:"),
)
# Set by app.py's menu and taken by the page it runs: a page that finds none ran without app.py.
_APP_RAN = "navigation_app_ran"


def menu(position: str = "sidebar"):
    """`st.navigation` of the app's pages (Train first); the page to run. A session that may not see
    the app gets the password prompt instead, and the script stops there."""
    pages = [st.Page(path, title=title, icon=icon, default=path == TRAIN) for path, title, icon in _MENU]
    if not password.admitted():
        st.navigation(pages, position="hidden")  # the linked page and its query string wait for the password
        password.show_gate(APP_TITLE)
        st.stop()
    password.hand_over_cookie()
    st.session_state[_APP_RAN] = True
    return st.navigation(pages, position=position)


def require_app() -> None:
    """Call first on every page. A page that runs without app.py (see above) declares the app's
    pages with `st.navigation`, which ends the pages/-folder mode for all sessions. A new session,
    which app.py has not set up, then reruns through app.py; one set up already (an AppTest's) runs
    this page again inside that navigation, so that its widgets keep their identity, and stops."""
    if st.session_state.pop(_APP_RAN, False):
        return
    page = menu(position="hidden")
    if "settings" not in st.session_state:
        st.rerun()
    page.run()
    st.stop()
