"""benchmarks/run.py runs end to end and prints every row of its table, so the benchmark cannot rot.
No timing is asserted: the speed targets live in the benchmark's own table, not in tests."""

import functools
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
RUN = ROOT / "benchmarks" / "run.py"

ROWS = [
    "1. Training, `run_experiment`, alignment on",
    "1. Reference pipeline",
    "1. Bare matmul bound",
    "1. Engine ÷ reference",
    "1. Engine ÷ matmul bound",
    "1. Reference ÷ matmul bound",
    "1. The linearized twins' cost",
    "2. Tracking share of epoch time",
    "2. Once per run: ρ's null bands",
    "2. All per-epoch evaluation",
    "3. `feature_alignment` ÷ one float32 ΦᵀΦ",
    "3. Peak extra memory",
    "3. Agreement with naive float64 (explicit H)",
    "3. Agreement with naive float64 (float64 kernels)",
    "3. Speed-up over explicit-H centering",
    "5. Press Train → epoch-0 charts",
    "5. Train page rerun",
    "5. Kernels page rerun when the epoch slider moves",
    "5. Heatmap payload per figure",
]
TABLES = ["Epoch time vs hidden width", "Epoch time vs number of digits", "`feature_alignment` time vs m"]


@functools.cache
def load_run_module():
    sys.path.insert(0, str(RUN.parent))
    spec = importlib.util.spec_from_file_location("benchmark_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_run_prints_every_row_and_writes_nothing():
    before = (ROOT / "BENCHMARKS.md").read_bytes() if (ROOT / "BENCHMARKS.md").exists() else None
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--no-write", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.match(r"\d\. ", cells[0]):
            table[cells[0]] = cells[1:]
    for row in ROWS:
        matches = [cells for name, cells in table.items() if name.startswith(row)]
        assert matches, f"missing row {row!r}"
        for result, target, status in matches:
            assert re.search(r"\d", result), (row, result)  # a measured figure, not a placeholder
            assert status in ("", "met", "**missed**", "m ≤ d: m×m is the smaller Gram"), (row, status)
            assert bool(target) == bool(status), (row, target, status)
    for title in TABLES:
        assert title in done.stdout
    after = (ROOT / "BENCHMARKS.md").read_bytes() if (ROOT / "BENCHMARKS.md").exists() else None
    assert after == before


def test_writing_one_device_section_keeps_the_other(tmp_path):
    run = load_run_module()
    path = tmp_path / "BENCHMARKS.md"
    run.write_markdown(path, "<!-- section:cuda -->\nGPU figures\n<!-- /section:cuda -->", "cuda")
    run.write_markdown(path, "<!-- section:cpu -->\nold CPU figures\n<!-- /section:cpu -->", "cpu")
    run.write_markdown(path, "<!-- section:cpu -->\nnew CPU figures\n<!-- /section:cpu -->", "cpu")
    text = path.read_text()
    assert text.startswith(run.HEADER)
    assert "new CPU figures" in text and "GPU figures" in text and "old CPU" not in text
    assert text.index("new CPU figures") < text.index("GPU figures")


def test_benchmark_digits_have_mnist_sizes_and_real_pixels():
    run = load_run_module()
    data = run.mnist_sized((8, 9))
    assert len(data.train_y) == 5851 + 5949 and len(data.test_y) == 974 + 1009
    assert data.train_x.shape[1] == 784 and 0.0 <= data.train_x.min() and data.train_x.max() <= 1.0
    sample = run.load_digits((8, 9), "sample")
    # The first copy of each class is the sample itself, unshifted.
    first_eights = data.train_x[data.train_y == 0][: (sample.train_y == 0).sum()]
    assert (first_eights == sample.train_x[sample.train_y == 0]).all()
