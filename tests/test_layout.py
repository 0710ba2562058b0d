"""The library has no user interface: importing it loads neither Streamlit nor Plotly, and no module
of kalign_core imports Streamlit (the app's side lives in kalign_app/, app.py and pages/)."""

import pathlib
import re
import subprocess
import sys

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
