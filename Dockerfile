# kalign's dashboard in a container: `docker compose up` (compose.yaml) serves it behind Caddy for TLS;
# docs/serving.md says how. The MNIST cache, the runs and the sweeps live in volumes under /data.
FROM python:3.11-slim

# torch's CPU build (a fraction of the size of PyPI's CUDA one); empty: PyPI's.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# true: also Ray, for the compose file's "ray" profile (sweeps on a Ray cluster).
ARG WITH_RAY=false

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KALIGN_DATA_DIR=/data/mnist \
    KALIGN_RUNS_DIR=/data/runs \
    KALIGN_SWEEPS_DIR=/data/sweeps

WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r requirements.txt \
    && if [ "$WITH_RAY" = true ]; then pip install "$(grep -E '^ray[<>=~ ]' requirements-dev.txt)"; fi

# A user of its own; the volumes' folders are its, so that named volumes start writable.
RUN useradd --create-home --uid 1000 kalign \
    && mkdir -p /data/mnist /data/runs /data/sweeps \
    && chown -R kalign:kalign /data

COPY .streamlit/config.toml .streamlit/config.toml
COPY app.py ./
COPY pages pages
COPY kalign_app kalign_app
COPY kalign_core kalign_core
COPY docker/entrypoint.sh docker/entrypoint.sh

USER kalign
VOLUME ["/data/mnist", "/data/runs", "/data/sweeps"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4)"
ENTRYPOINT ["/app/docker/entrypoint.sh"]
