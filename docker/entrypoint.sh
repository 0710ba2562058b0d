#!/bin/sh
# The image's command: the dashboard on every interface of the container, so that Caddy (compose.yaml)
# or a published port can reach it; who else can is Docker's choice. The app shows only its password
# prompt (KALIGN_PASSWORD) and, without a password, only how to set one. Arguments go to `streamlit run`.
set -eu
cd "$(dirname "$0")/.."
exec streamlit run app.py --server.address 0.0.0.0 --server.port 8501 --server.headless true "$@"
