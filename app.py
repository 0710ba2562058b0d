"""kalign's dashboard: `streamlit run app.py`. Pages live in pages/, one file each."""

import streamlit as st

from kalign_app import ui

st.set_page_config(page_title="kalign · kernel alignment lab", page_icon="🧠", layout="wide")
with ui.apology():
    ui.init_session()
page = st.navigation(
    [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", default=True),
        st.Page("pages/lessons.py", title="Lessons", icon=":material/school:"),
        st.Page("pages/kernels.py", title="Kernels", icon=":material/grid_on:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
        st.Page("pages/sweeps.py", title="Sweeps", icon=":material/apps:"),
        st.Page("pages/about.py", title="About", icon=":material/info:"),
    ]
)
with ui.apology():  # a failure anywhere in a page ends in words, never a traceback
    ui.show_url_warnings()
    ui.keep_job_alive()
    ui.mirror_settings_to_url()  # page switches drop the query string; put it back
    page.run()
    ui.warm_up_server()  # after the page: the first visitor's form never waits for it
