"""The dashboard's side of kalign: what exists only for the web app (`streamlit run app.py`), standing
on the library `kalign_core`. `ui` is what the pages share in Streamlit; `figures` draws with Plotly;
`jobs`, `workers` and `params` know nothing of Streamlit but serve only the server: job slots, the
training processes, heartbeats and the results cache for browser tabs, the sweep job, form labels,
URL parameters and run-folder names typed in a browser. `browser` serves the app for real and
launches Chromium, for the browser tests, the benchmarks and scripts/screenshots.py; the app never
imports it."""
