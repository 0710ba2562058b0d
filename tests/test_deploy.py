"""The container files, checked without Docker (no Docker daemon runs where kalign is developed, nor
in CI): the Dockerfile copies what the app runs (every page draws from a tree built from its COPY
lines alone) and nothing secret, and installs requirements.txt; its entrypoint starts the app on
every interface; compose.yaml requires a password, keeps the data in volumes where the image says,
publishes the app on this machine only and serves it to the class through Caddy, and its "ray" profile
starts a head, workers and sweeps that reach that head."""

import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
PAGES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "pages").glob("*.py"))


def instructions(name: str) -> list[str]:
    """The arguments of each Dockerfile instruction `name`, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{name} ")]


def copies() -> list[tuple[str, str]]:
    """(source, destination in /app) of each COPY."""
    pairs = []
    for arguments in instructions("COPY"):
        *sources, destination = arguments.split()
        pairs += [(source, destination) for source in sources]
    return pairs


def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with Ray (requirements-dev.txt)")
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def image_environment() -> dict[str, str]:
    return dict(re.findall(r"\b(KALIGN_\w+)=(\S+)", " ".join(instructions("ENV"))))


def test_the_image_copies_files_that_exist_and_never_a_secret():
    sources = [source for source, _ in copies()]
    assert all((ROOT / source).exists() for source in sources), sources
    assert not any("secrets" in source or source in (".", ".streamlit", ".env") for source in sources)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".streamlit/secrets.toml" in ignored and ".env" in ignored


def test_the_image_installs_the_apps_requirements_and_ray_only_as_the_dev_requirements_pin_it():
    install = " ".join(instructions("RUN"))
    assert 'pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r requirements.txt' in install
    ray_line = re.search(r"grep -E '([^']+)' requirements-dev\.txt", install).group(1)
    assert [line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if re.match(ray_line, line)] == [
        "ray>=2.9"
    ]
    assert instructions("FROM") == ["python:3.11-slim"] and instructions("USER") == ["kalign"]


@pytest.mark.slow
def test_every_page_draws_from_the_images_files_alone(tmp_path):
    """The app tree built from the COPY lines, run with no checkout on the path: each page opens."""
    app = tmp_path / "app"
    for source, destination in copies():
        target = app / (pathlib.Path(source).name if destination.endswith("/") else destination)
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copyfile
        target.parent.mkdir(parents=True, exist_ok=True)
        copy(ROOT / source, target)
    check = f"""
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=120).run()
for page in {PAGES!r}:
    at.switch_page(page).run()
    assert not at.exception and at.title, (page, at.exception)
"""
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environ.update({"KALIGN_DEFAULT_SOURCE": "sample", "KALIGN_RUNS_DIR": str(tmp_path / "runs")})
    ran = subprocess.run(
        [sys.executable, "-c", check], cwd=app, env=environ, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-3000:]


def test_the_entrypoint_starts_the_app_on_every_interface_with_the_callers_arguments(tmp_path):
    """The entrypoint, run with a stub `streamlit` that reports how it was started."""
    stub = tmp_path / "streamlit"
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps({'cwd': os.getcwd(), 'args': sys.argv[1:], 'password': os.environ.get('KALIGN_PASSWORD')}))\n"
    )
    stub.chmod(0o755)
    environ = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "KALIGN_PASSWORD": "for the class"}
    ran = subprocess.run(
        [str(ENTRYPOINT), "--server.port", "9000"], cwd=tmp_path, env=environ, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    started = json.loads(ran.stdout)
    assert started["cwd"] == str(ROOT) and started["password"] == "for the class"
    assert started["args"] == ["run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"] + [
        "--server.headless",
        "true",
        "--server.port",
        "9000",
    ]
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    assert instructions("ENTRYPOINT") == ['["/app/docker/entrypoint.sh"]']
    assert ("docker/entrypoint.sh", "docker/entrypoint.sh") in copies() and instructions("WORKDIR") == ["/app"]


def test_compose_requires_a_password_and_keeps_the_data_where_the_image_looks():
    app = compose()["services"]["app"]
    assert app["environment"]["KALIGN_PASSWORD"].startswith("${KALIGN_PASSWORD:?")
    volumes = dict(volume.split(":")[::-1] for volume in app["volumes"])
    folders = image_environment()
    assert {folders[name] for name in ("KALIGN_DATA_DIR", "KALIGN_RUNS_DIR", "KALIGN_SWEEPS_DIR")} == set(volumes)
    assert set(re.findall(r"VOLUME \[(.*)\]", DOCKERFILE)[0].replace('"', "").split(", ")) == set(volumes)
    assert app["ports"] == ["127.0.0.1:8501:8501"]  # plain HTTP stays on this machine


def test_compose_serves_the_class_through_caddy():
    caddy = compose()["services"]["caddy"]
    assert caddy["image"] == "caddy:2" and {"80:80", "443:443"} <= set(caddy["ports"])
    assert re.fullmatch(r"caddy reverse-proxy --from \$\{KALIGN_SITE:\?[^}]+\} --to app:8501", caddy["command"])


def test_the_ray_profile_starts_a_head_workers_and_sweeps_that_reach_it():
    services = compose()["services"]
    ray = {name: service for name, service in services.items() if service.get("profiles") == ["ray"]}
    assert set(ray) == {"ray-head", "ray-worker", "sweep"}
    head = ray["ray-head"]["entrypoint"]
    port = next(arg.split("=")[1] for arg in head if arg.startswith("--port="))
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head
    assert f"--address=ray-head:{port}" in ray["ray-worker"]["entrypoint"]
    sweep = ray["sweep"]["entrypoint"]
    assert sweep[:4] == ["python", "-m", "kalign_core", "sweep"]
    assert sweep[sweep.index("--backend") + 1] == "ray" and sweep[sweep.index("--address") + 1] == f"ray-head:{port}"
    assert all(service["build"]["args"] == {"WITH_RAY": "true"} for service in ray.values())
    assert all(service.get("profiles") is None for name, service in services.items() if name not in ray)
