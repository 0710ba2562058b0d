"""kalign's dashboard: `streamlit run app.py`. Pages live in pages/, one file each; kalign_app/navigation.py
lists them."""

import streamlit as st

from kalign_app import navigation, ui

st.set_page_config(page_title=navigation.APP_TITLE, page_icon="🧠", layout="wide")
page = navigation.menu()  # a server with a password shows only its prompt until this session gives it
with ui.apology():
    ui.init_session()
with ui.apology():  # a failure anywhere in a page ends in words, never a traceback
    ui.show_url_warnings()
    ui.keep_job_alive()
    ui.mirror_settings_to_url()  # page switches drop the query string; put it back
    page.run()
    ui.warm_up_server()  # after the page: the first visitor's form never waits for it
