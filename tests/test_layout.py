"""The library has no user interface: importing it loads neither Streamlit nor Plotly, every module
of kalign_core imports without them (what `pip install kalign` ships without the app extra), and
none imports them (the app's side lives in kalign_app/, app.py and pages/)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]


def test_importing_the_library_loads_no_user_interface():
    check = "import kalign_core, sys; assert 'streamlit' not in sys.modules and 'plotly' not in sys.modules"
    ran = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr


def test_no_library_module_imports_streamlit():
    importing = re.compile(r"^\s*(import|from)\s+streamlit\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "kalign_core").rglob("*.py"))
        if importing.search(path.read_text())
    ]
    assert offenders == []


def library_modules() -> list[str]:
    paths = sorted((ROOT / "kalign_core").rglob("*.py"))
    names = [".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for path in paths]
    return [name for name in names if not name.endswith("__main__")]  # that one runs the command line


@pytest.mark.slow
def test_every_library_module_imports_without_the_app_extras():
    check = f"""
import importlib, sys

class AppExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("plotly", "streamlit"):
            raise ModuleNotFoundError(f"{{name}} is an app extra")

sys.meta_path.insert(0, AppExtras())
for name in {library_modules()!r}:
    importlib.import_module(name)
"""
    ran = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr


def test_the_package_ships_every_library_module():
    """pyproject.toml's package list finds every folder of kalign_core that holds modules."""
    import setuptools

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(setuptools.find_packages(ROOT, include=found["include"]))
    folders = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "kalign_core").rglob("*.py")}
    assert folders <= shipped


def test_the_app_uses_only_streamlits_public_api():
    """Streamlit's internals (streamlit.runtime, its private modules) change without notice; the
    app, its pages, the benchmarks and scripts use `streamlit` and its testing API only."""
    private = re.compile(r"^\s*(import|from)\s+streamlit\.(?!testing\.v1\b)", re.M)
    folders = ("kalign_app", "pages", "benchmarks", "scripts")
    paths = [ROOT / "app.py", *(path for folder in folders for path in sorted((ROOT / folder).rglob("*.py")))]
    assert [str(path.relative_to(ROOT)) for path in paths if private.search(path.read_text())] == []
