"""kalign's benchmark: the speed figures of issue 4, measured side by side in one process.

    python benchmarks/run.py                 # full run (about 6 min on 2 cores), writes BENCHMARKS.md
    python benchmarks/run.py --quick         # the same figures at fewer repeats and sizes (< 2 min)
    python benchmarks/run.py --no-write      # print the table only
    python benchmarks/run.py --device cuda --markdown-out gpu.md

Shared machines are noisy and noise only ever adds time, so every figure is the best of several
repeats, and every target is a ratio of two figures measured in the same process, interleaved.
BENCHMARKS.md keeps one section per device kind: a CPU run leaves the CUDA section alone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import measure_dashboard  # noqa: E402
from kalign_core import (  # noqa: E402
    DigitData,
    ExperimentConfig,
    feature_alignment,
    load_digits,
    resolve_device,
)
from kalign_core.engine import training, trial  # noqa: E402
from kalign_core.engine.batched import TrialBlock  # noqa: E402
from kalign_core.measures.alignment import GRAM_CHUNK_ROWS  # noqa: E402
from kalign_core.measures.kernel_machines import MAX_POINTS, MachinePoints  # noqa: E402
from kalign_core.measures.tracking import Tracker  # noqa: E402
from reference import ReferencePair  # noqa: E402

BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
# Real MNIST's training and test digits per class, 0..9.
MNIST_TRAIN = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
# Shifts (dx, dy) of up to two pixels, the unshifted image first: 25 variants of each real digit.
SHIFTS = sorted(((dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)), key=lambda s: (max(map(abs, s)), s))
DIGIT_ORDER = (8, 9, 7, 6, 5, 4, 3, 2, 1, 0)  # n digits = the first n of these, so 2 means 8 vs 9

TARGETS = {"reference": 2.5, "bound": 0.80, "overhead": 0.10, "alignment": 1.5, "agreement": 1e-6, "twin": 1.0}


@dataclass(frozen=True)
class Scale:
    """How much of everything one mode measures."""

    rounds: int  # side-by-side repeats of engine, reference and bound
    epochs: int  # epochs per run_experiment in each round
    data_fraction: float  # of MNIST's per-digit counts
    width: int
    alignment_features: int
    alignment_m: tuple[int, ...]
    explicit_h_m: tuple[int, ...]  # sizes for the O(m³) explicit-H float64 formula
    kernel_float64_m: tuple[int, ...]  # larger sizes checked against an O(m²) float64 kernel formula
    alignment_repeats: int
    widths: tuple[int, ...]
    digit_counts: tuple[int, ...]
    growth_epochs: int
    dashboard: dict[str, str]  # the Train form's settings as URL parameters; {} = the defaults


SCALES = {
    "full": Scale(
        rounds=4,
        epochs=3,
        data_fraction=1.0,
        width=2000,
        alignment_features=2000,
        alignment_m=(1000, 2000, 4000, 10_000, 20_000, 50_000),
        explicit_h_m=(1000, 2000, 4000),
        kernel_float64_m=(10_000,),
        alignment_repeats=3,
        widths=(250, 500, 1000, 2000, 4000, 8000, 16_384),
        digit_counts=(2, 3, 5, 7, 10),
        growth_epochs=2,
        dashboard={},
    ),
    "quick": Scale(
        rounds=2,
        epochs=2,
        data_fraction=1.0,
        width=2000,
        alignment_features=2000,
        alignment_m=(1000, 2000, 10_000),
        explicit_h_m=(1000, 2000),
        kernel_float64_m=(),
        alignment_repeats=2,
        widths=(250, 1000, 4000),
        digit_counts=(2, 5, 10),
        growth_epochs=1,
        dashboard={},
    ),
    # For the test that keeps this script from rotting: every code path at tiny sizes.
    "smoke": Scale(
        rounds=1,
        epochs=1,
        data_fraction=0.02,
        width=64,
        alignment_features=64,
        alignment_m=(100, 300),
        explicit_h_m=(100,),
        kernel_float64_m=(300,),
        alignment_repeats=1,
        widths=(16, 64),
        digit_counts=(2, 3),
        growth_epochs=1,
        dashboard={"width": "32", "epochs": "2", "batch_size": "100", "probe_size": "40"},
    ),
}


# ---------------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


class EpochClock:
    """An on_epoch callback that notes when each epoch ended, and how much of it was spent in the
    probe metrics (feature alignment, the tangent kernel and the lazy-vs-rich measures, the centered
    kernels) and in the whole per-epoch evaluation; `once` sums what runs once per run (the null
    bands and the kernel machines), outside every epoch.

    `between(result)` runs inside the callback, between two epochs, outside the epochs' times: the
    throughput benchmark times one bare-matmul epoch there, so that both meet the same noise.
    """

    def __init__(self, between=None):
        self.ends, self.starts, self.probe, self.evaluation, self.once = [], [], [], [], []
        self._probe = self._evaluation = self._once = 0.0
        self.between = between

    def __call__(self, result) -> None:
        self.ends.append(time.perf_counter())
        self.probe.append(self._probe)
        self.evaluation.append(self._evaluation)
        self.once.append(self._once)
        self._probe = self._evaluation = self._once = 0.0
        if self.between:
            self.between(result)
        self.starts.append(time.perf_counter())

    def _timing(self, fn, counter: str):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:  # these return host values, so the device work is done by now
                setattr(self, counter, getattr(self, counter) + time.perf_counter() - start)

        return wrapper

    @contextlib.contextmanager
    def instrument(self):
        with (
            mock.patch.object(Tracker, "measure", self._timing(Tracker.measure, "_probe")),
            mock.patch.object(TrialBlock, "_measure_null_bands", self._timing(TrialBlock._measure_null_bands, "_once")),
            mock.patch.object(trial, "machine_errors", self._timing(trial.machine_errors, "_once")),
            mock.patch.object(MachinePoints, "grams", self._timing(MachinePoints.grams, "_once")),
            mock.patch.object(TrialBlock, "_record", self._timing(TrialBlock._record, "_evaluation")),
        ):
            yield

    def epochs(self) -> list[tuple[float, float, float]]:
        """(seconds, probe-metric seconds, evaluation seconds) of each epoch after epoch 0, without
        the once-per-run work that ran in its time (the null bands run in epoch 0's)."""
        return [
            (self.ends[i] - self.starts[i - 1] - self.once[i], self.probe[i], self.evaluation[i])
            for i in range(1, len(self.ends))
        ]


def engine_epochs(
    config: ExperimentConfig, data: DigitData, between=None, once: list | None = None
) -> list[tuple[float, float, float]]:
    """Each epoch's (seconds, probe-metric seconds, evaluation seconds); the run's once-per-run
    seconds are appended to `once`."""
    clock = EpochClock(between)
    with clock.instrument():
        training.run_experiment(config, data, on_epoch=clock)
    if once is not None:  # the kernel machines run after the last callback
        once.append(sum(clock.once) + clock._once)
    return clock.epochs()


# ---------------------------------------------------------------------------------- data


def _shift(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return padded[:, 2 + dy : 30 + dy, 2 + dx : 30 + dx]


def mnist_sized(digits: tuple[int, ...], fraction: float = 1.0) -> DigitData:
    """Real MNIST's per-digit train/test counts (times `fraction`), made of the bundled sample's real
    digits (400 train and 100 test per class) and copies of them shifted by up to two pixels."""
    sample = load_digits(digits, "sample")

    def grow(x, y, counts):
        xs, ys = [], []
        for c, digit in enumerate(digits):
            images = x[y == c].reshape(-1, 28, 28)
            n = max(1, round(counts[digit] * fraction))
            variants = [_shift(images, *SHIFTS[i]) for i in range(math.ceil(n / len(images)))]
            xs.append(np.concatenate(variants)[:n].reshape(n, -1))
            ys.append(np.full(n, c, dtype=np.int64))
        return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)

    return DigitData(
        *grow(sample.train_x, sample.train_y, MNIST_TRAIN),
        *grow(sample.test_x, sample.test_y, MNIST_TEST),
        digits=tuple(digits),
    )


# ---------------------------------------------------------------------------------- the matmul bound


def _layouts(o, b):
    """Per product: candidate operand layouts, each computing the same product (or its transpose)."""
    return {
        "hidden forward": {
            "X·Wᵀ": lambda: torch.mm(o["x"][:b], o["w"].T, out=o["bw"][:b]),
            "X·W'": lambda: torch.mm(o["x"][:b], o["wt"], out=o["bw"][:b]),
            "W·Xᵀ": lambda: torch.mm(o["w"], o["x"][:b].T, out=o["wb"][:, :b]),
            "W'ᵀ·Xᵀ": lambda: torch.mm(o["wt"].T, o["x"][:b].T, out=o["wb"][:, :b]),
        },
        "hidden weight gradient": {
            "Gᵀ·X": lambda: torch.mm(o["g"][:b].T, o["x"][:b], out=o["wi"]),
            "G'·X": lambda: torch.mm(o["gt"][:, :b], o["x"][:b], out=o["wi"]),
            "Xᵀ·G": lambda: torch.mm(o["x"][:b].T, o["g"][:b], out=o["iw"]),
            "Xᵀ·G'ᵀ": lambda: torch.mm(o["x"][:b].T, o["gt"][:, :b].T, out=o["iw"]),
        },
        "readout forward": {"H·Vᵀ": lambda: torch.mm(o["h"][:b], o["v"].T, out=o["bk"][:b])},
        "readout weight gradient": {"Dᵀ·H": lambda: torch.mm(o["d"][:b].T, o["h"][:b], out=o["kw"])},
        "readout input gradient": {"D·V": lambda: torch.mm(o["d"][:b], o["v"], out=o["bw2"][:b])},
    }


class MatmulBound:
    """Issue 4's yardstick: per batch of B and per model, the hidden forward (2·B·784·w), the hidden
    weight gradient (2·B·784·w) and three readout products (2·B·w·k each), each run by torch.mm
    in whichever operand layout is fastest at its shape here (calibrated first)."""

    def __init__(self, n: int, batch: int, width: int, k: int, inputs: int, device: torch.device, repeats: int):
        self.batches = [min(batch, n - start) for start in range(0, n, batch)]
        self.flops = 2 * sum(2 * 2 * b * inputs * width + 3 * 2 * b * width * k for b in self.batches)
        shapes = dict(
            x=(batch, inputs),
            w=(width, inputs),
            wt=(inputs, width),
            g=(batch, width),
            gt=(width, batch),
            h=(batch, width),
            v=(k, width),
            d=(batch, k),
            bw=(batch, width),
            wb=(width, batch),
            wi=(width, inputs),
            iw=(inputs, width),
            bk=(batch, k),
            kw=(k, width),
            bw2=(batch, width),
        )
        # Each model has its own operands, as two models' weights would be.
        self.operands = [{name: torch.rand(s, device=device) for name, s in shapes.items()} for _ in range(2)]
        self.chosen, self.rates = {}, {}
        for product, candidates in _layouts(self.operands[0], batch).items():
            times = {layout: math.inf for layout in candidates}
            for _ in range(repeats):  # round robin, so that every layout meets the same noise
                for layout, fn in candidates.items():
                    times[layout] = min(times[layout], timed(fn, device))
            layout = min(times, key=times.get)
            product_flops = 2 * batch * (inputs * width if product.startswith("hidden") else width * k)
            self.chosen[product] = layout
            self.rates[product] = product_flops / times[layout]
        self.plan = {
            b: [[_layouts(o, b)[product][layout] for product, layout in self.chosen.items()] for o in self.operands]
            for b in set(self.batches)
        }

    def epoch(self) -> None:
        for b in self.batches:
            for model_products in self.plan[b]:
                for product in model_products:
                    product()


# ---------------------------------------------------------------------------------- 1, 2: training


def measure_training(scale: Scale, device: torch.device) -> dict:
    data = mnist_sized((8, 9), scale.data_fraction)
    n = len(data.train_y)
    config = ExperimentConfig(
        digits=(8, 9),
        width=scale.width,
        batch_size=200,
        epochs=scale.epochs,
        device=str(device),
        probe_size=min(200, len(data.test_y)),
    )
    bound = MatmulBound(n, config.batch_size, config.width, data.n_classes, data.train_x.shape[1], device, 10)
    reference = ReferencePair(config, data, device)
    engine, bound_times, reference_times, reference_training, once, twinned = [], [], [], [], [], []
    for _ in range(scale.rounds):
        # A bare-matmul epoch between every two engine epochs, so that both meet the same noise.
        engine += engine_epochs(
            config, data, between=lambda _: bound_times.append(timed(bound.epoch, device)), once=once
        )
        reference_training.append(timed(reference.epoch, device))
        reference_times.append(reference_training[-1] + timed(reference.evaluate, device))
        twinned += engine_epochs(replace(config, linearized_twin=True), data)
    epoch_times = [e[0] for e in engine]
    return dict(
        n=n,
        n_test=len(data.test_y),
        config=config,
        bound=bound,
        engine=min(epoch_times),
        engine_median=statistics.median(epoch_times),
        bound_epoch=min(bound_times),
        bound_median=statistics.median(bound_times),
        reference=min(reference_times),
        reference_median=statistics.median(reference_times),
        reference_training=min(reference_training),
        reference_training_median=statistics.median(reference_training),
        # Median of the epochs' shares: a process preempted in one epoch's tracking (a shared machine)
        # would otherwise set the whole figure; the mean is shown beside it.
        probe_share=statistics.median(e[1] / e[0] for e in engine),
        probe_share_mean=sum(e[1] for e in engine) / sum(epoch_times),
        probe_seconds=statistics.median(e[1] for e in engine),
        once_seconds=min(once),
        evaluation_share=sum(e[2] for e in engine) / sum(epoch_times),
        twin_epoch=min(e[0] for e in twinned),
        twin_epoch_median=statistics.median(e[0] for e in twinned),
        # Training steps alone: an epoch less its evaluation (test errors, the probe's measures, and
        # with twins their scores).
        training=min(e[0] - e[2] for e in engine),
        twin_training=min(e[0] - e[2] for e in twinned),
    )


# ---------------------------------------------------------------------------------- 3: alignment at scale


class TensorCensus(TorchDispatchMode):
    """Notes the shape of every tensor any torch operation makes while active."""

    def __init__(self):
        super().__init__()
        self.largest = (0,)
        self.largest_square = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                if t.numel() > math.prod(self.largest):
                    self.largest = tuple(t.shape)
                if t.ndim == 2 and t.shape[0] == t.shape[1]:
                    self.largest_square = max(self.largest_square, t.shape[0])
        return out


# Run in a fresh process, so that memory the allocator kept from earlier work cannot hide the peak.
_CPU_MEMORY_PROBE = """
import ctypes, ctypes.util, pathlib, re, sys, torch
sys.path.insert(0, sys.argv[1])
from kalign_core import feature_alignment
m, d, k = map(int, sys.argv[2:5])
phi, y = torch.rand(m, d), torch.randint(k, (m,))
feature_alignment(phi[: d + 1], y[: d + 1])  # loads the code it runs (MKL's kernels count as resident)
ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)  # and hands back what that freed
def kb(key):
    return int(re.search(rf"^{key}:\\s+(\\d+) kB", pathlib.Path("/proc/self/status").read_text(), re.M).group(1))
pathlib.Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark VmHWM to VmRSS
before = kb("VmRSS")
feature_alignment(phi, y)
print((kb("VmHWM") - before) * 1024)
"""


def peak_extra_bytes(m: int, d: int, k: int, device: torch.device) -> int | None:
    """Peak memory of `feature_alignment` above what was in use before it: the allocator's peak
    on CUDA; on a Linux CPU, the resident high-water mark of a fresh process."""
    if device.type == "cuda":
        phi, y = torch.rand(m, d, device=device), torch.randint(k, (m,), device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        feature_alignment(phi, y)
        return torch.cuda.max_memory_allocated(device) - before
    if not pathlib.Path("/proc/self/clear_refs").exists():
        return None
    probe = [sys.executable, "-c", _CPU_MEMORY_PROBE, str(ROOT), str(m), str(d), str(k)]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    return int(done.stdout.split()[-1]) if done.returncode == 0 else None


def counted_bytes(m: int, d: int) -> int:
    """What feature_alignment holds at its peak, by its algorithm: the centered float32 features,
    and for the smaller Gram (side min(m, d)) one chunk's float32 product and its float64 copy,
    plus a float64 accumulator when the longer side takes more than one chunk."""
    one_chunk = max(m, d) <= GRAM_CHUNK_ROWS
    return 4 * m * d + (4 + 8 + (0 if one_chunk else 8)) * min(m, d) ** 2


def naive_alignment(phi: torch.Tensor, y: torch.Tensor, k: int, explicit_h: bool) -> float:
    """ρ by its definition in float64 on m×m kernels: centered by an explicit H = I − 11ᵀ/m (the
    notebook's O(m³) way) or by subtracting row and column means (O(m²))."""
    phi, targets = phi.double(), F.one_hot(y, k).double()
    m = phi.shape[0]

    def centered(kernel):
        if explicit_h:
            h = torch.eye(m, dtype=torch.float64, device=phi.device) - 1.0 / m
            return h @ kernel @ h
        return kernel - kernel.mean(dim=0) - kernel.mean(dim=1, keepdim=True) + kernel.mean()

    kc, lc = centered(phi @ phi.T), centered(targets @ targets.T)
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def measure_alignment(scale: Scale, device: torch.device) -> list[dict]:
    d, k = scale.alignment_features, 10
    generator = torch.Generator().manual_seed(0)
    rows = []
    for m in scale.alignment_m:
        y = torch.randint(k, (m,), generator=generator)
        # Nonnegative features with some class signal, like ReLU features of digits.
        phi = torch.rand(m, d, generator=generator) + 0.3 * F.one_hot(y, k).float() @ torch.rand(
            k, d, generator=generator
        )
        phi, y = phi.to(device), y.to(device)
        gram = torch.empty(d, d, device=device)
        fa_time = mm_time = math.inf
        for _ in range(scale.alignment_repeats):  # alternated, so that both meet the same noise
            fa_time = min(fa_time, timed(lambda phi=phi, y=y: feature_alignment(phi, y), device))
            mm_time = min(mm_time, timed(lambda phi=phi, gram=gram: torch.mm(phi.T, phi, out=gram), device))
        census = TensorCensus()
        with census:
            rho = feature_alignment(phi, y)
        row = dict(
            m=m,
            d=d,
            seconds=fa_time,
            mm_seconds=mm_time,
            rho=rho,
            largest=census.largest,
            largest_square=census.largest_square,
            peak=peak_extra_bytes(m, d, k, device),
        )
        if m in scale.explicit_h_m or m in scale.kernel_float64_m:
            explicit = m in scale.explicit_h_m
            start = time.perf_counter()
            exact = naive_alignment(phi, y, k, explicit_h=explicit)
            sync(device)
            row["naive"] = "explicit H" if explicit else "float64 kernels"
            row["naive_seconds"] = time.perf_counter() - start
            row["error"] = abs(rho - exact) / abs(exact)
        rows.append(row)
        del phi, gram
    return rows


# ---------------------------------------------------------------------------------- 4: cost growth


def measure_growth(scale: Scale, device: torch.device) -> tuple[list, list]:
    base = dict(batch_size=200, epochs=scale.growth_epochs, device=str(device))

    def seconds(config, data):
        return min(e[0] for e in engine_epochs(config, data))

    data_89 = mnist_sized((8, 9), scale.data_fraction)
    probe = min(200, len(data_89.test_y))
    by_width = [
        (w, seconds(ExperimentConfig(digits=(8, 9), width=w, probe_size=probe, **base), data_89)) for w in scale.widths
    ]
    by_digits = []
    for count in scale.digit_counts:
        digits = DIGIT_ORDER[:count]
        data = mnist_sized(digits, scale.data_fraction)
        config = ExperimentConfig(digits=digits, width=scale.width, probe_size=min(200, len(data.test_y)), **base)
        by_digits.append((count, len(data.train_y), seconds(config, data)))
    return by_width, by_digits


# ---------------------------------------------------------------------------------- report


def machine(device: torch.device) -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        names = re.findall(r"^model name\s*:\s*(.+)$", pathlib.Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else cpu
    lines = [
        f"CPU: {cpu}, {os.cpu_count()} cores, torch using {torch.get_num_threads()} threads",
        f"torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}, {platform.system()}",
    ]
    if device.type == "cuda":
        lines.append(f"device: {device} ({torch.cuda.get_device_name(device)})")
    else:
        lines.append(f"device: {device}")
    return lines


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def build_rows(train: dict | None, alignment: list | None, dashboard: list | None) -> list[tuple[str, str, str, str]]:
    rows = []
    if train:
        n, width = train["n"], train["config"].width
        samples = 2 * n  # both models see every sample each epoch

        def rate(seconds, median):
            return f"{samples / seconds:,.0f} model-samples/s ({seconds:.2f} s/epoch best, {median:.2f} median)"

        bound = train["bound"]
        layouts = ", ".join(
            f"{p} {layout} {bound.rates[p] / 1e9:.0f} GFLOP/s"
            for p, layout in bound.chosen.items()
            if p.startswith("hidden")
        )
        rows += [
            (
                f"1. Training, `run_experiment`, alignment on (w={width:,}, batch 200, 8 vs 9, {n:,} digits)",
                rate(train["engine"], train["engine_median"]),
                "",
                "",
            ),
            (
                "1. Reference pipeline, the notebook's way (PIL + ToTensor + DataLoader, 2 nn.Modules, autograd + SGD; "
                "test error and explicit-H alignment each epoch)",
                rate(train["reference"], train["reference_median"]),
                "",
                "",
            ),
            (
                "1. Reference pipeline, its training alone (no per-epoch evaluation)",
                rate(train["reference_training"], train["reference_training_median"]),
                "",
                "",
            ),
            (
                f"1. Bare matmul bound ({bound.flops / 1e9:,.0f} GFLOP/epoch; {layouts})",
                rate(train["bound_epoch"], train["bound_median"]),
                "",
                "",
            ),
            (
                "1. Engine ÷ reference",
                f"{train['reference'] / train['engine']:.2f}×",
                f"≥ {TARGETS['reference']}×",
                verdict(train["reference"] / train["engine"] >= TARGETS["reference"]),
            ),
            (
                "1. Engine ÷ matmul bound",
                f"{train['bound_epoch'] / train['engine']:.2f}",
                f"≥ {TARGETS['bound']:.2f}",
                verdict(train["bound_epoch"] / train["engine"] >= TARGETS["bound"]),
            ),
            (
                "1. Reference ÷ matmul bound (the most an engine doing these matmuls could gain; its training alone)",
                f"{train['reference'] / train['bound_epoch']:.2f}× "
                f"({train['reference_training'] / train['bound_epoch']:.2f}×)",
                "",
                "",
            ),
            (
                "1. The linearized twins' cost (both models' twins trained on the same batches and scored on the "
                "test digits each epoch): an epoch with them minus one without, ÷ one without",
                f"{twin_cost(train):.2f} ({train['twin_epoch']:.2f} s/epoch best with twins, "
                f"{train['twin_epoch_median']:.2f} median, {train['engine']:.2f} s without; training steps alone "
                f"{train['twin_training']:.2f} s against {train['training']:.2f} s: "
                f"{train['twin_training'] / train['training'] - 1:.2f})",
                f"≤ {TARGETS['twin']:.2f}",
                verdict(twin_cost(train) <= TARGETS["twin"]),
            ),
            (
                f"2. Tracking share of epoch time (probe {train['config'].probe_size}: "
                "feature ρ and kernel, tangent kernel "
                "Θ and its ρ, feature and tangent distance, weight changes, ReLU patterns)",
                f"{100 * train['probe_share']:.1f} % median over epochs ({train['probe_seconds'] * 1e3:,.0f} ms; "
                f"mean share {100 * train['probe_share_mean']:.1f} %)",
                f"≤ {100 * TARGETS['overhead']:.0f} %",
                verdict(train["probe_share"] <= TARGETS["overhead"]),
            ),
            (
                "2. Once per run: ρ's null bands (2 × 200 label shuffles) and 3 kernel machines (feature and tangent "
                f"ridge, ≤ {MAX_POINTS:,} digits each way)",
                f"{train['once_seconds']:.2f} s ({train['once_seconds'] / train['engine']:.2f} of an epoch)",
                "",
                "",
            ),
            (
                f"2. All per-epoch evaluation (test error on {train['n_test']:,} digits + alignment) share",
                f"{100 * train['evaluation_share']:.1f} %",
                "",
                "",
            ),
        ]
    for r in alignment or []:
        m = r["m"]
        shape = f"m={m:,}×d={r['d']:,}"
        rows.append(
            (
                f"3. `feature_alignment` ÷ one float32 ΦᵀΦ, {shape}",
                f"{r['seconds'] / r['mm_seconds']:.2f} "
                f"({r['seconds'] * 1e3:,.0f} ms vs {r['mm_seconds'] * 1e3:,.0f} ms)",
                f"≤ {TARGETS['alignment']}",
                verdict(r["seconds"] / r["mm_seconds"] <= TARGETS["alignment"]),
            )
        )
        largest = "×".join(f"{s:,}" for s in r["largest"])
        peak = "n/a" if r["peak"] is None else _mb(r["peak"])
        no_mm = r["largest_square"] < m
        rows.append(
            (
                f"3. Peak extra memory, {shape} (an m×m float32 kernel: {_mb(4 * m * m)})",
                f"{peak} measured, {_mb(counted_bytes(m, r['d']))} by the algorithm's count; "
                f"largest tensor {largest}, largest square {r['largest_square']:,}²",
                "O(m·d + d²), no m×m",
                verdict(no_mm) if m > r["d"] else "m ≤ d: m×m is the smaller Gram",
            )
        )
        if "error" in r:
            rows.append(
                (
                    f"3. Agreement with naive float64 ({r['naive']}), m={m:,}",
                    f"{r['error']:.1e} relative",
                    f"≤ {TARGETS['agreement']:.0e}",
                    verdict(r["error"] <= TARGETS["agreement"]),
                )
            )
            if r["naive"] == "explicit H":
                rows.append(
                    (
                        f"3. Speed-up over explicit-H centering, m={m:,}",
                        f"{r['naive_seconds'] / r['seconds']:,.0f}× "
                        f"({r['naive_seconds']:.2f} s vs {r['seconds'] * 1e3:,.0f} ms)",
                        "",
                        "",
                    )
                )
    rows += dashboard or []
    return rows


def twin_cost(train: dict) -> float:
    """What the linearized twins add to an epoch, relative to the epoch of the networks alone."""
    return train["twin_epoch"] / train["engine"] - 1


def markdown_table(header: tuple[str, ...], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def growth_tables(by_width, by_digits, alignment, n_train: int) -> str:
    parts = []
    if by_width:
        parts.append(
            f"Epoch time vs hidden width (8 vs 9, {n_train:,} digits, batch 200, both models, alignment on):\n"
        )
        parts.append(
            markdown_table(
                ("width", "s/epoch", "model-samples/s"),
                [(f"{w:,}", f"{s:.2f}", f"{2 * n_train / s:,.0f}") for w, s in by_width],
            )
        )
    if by_digits:
        parts.append("\nEpoch time vs number of digits (MNIST-sized classes, batch 200, both models):\n")
        parts.append(
            markdown_table(
                ("digits", "training digits", "s/epoch"), [(c, f"{n:,}", f"{s:.2f}") for c, n, s in by_digits]
            )
        )
    if alignment:
        parts.append("\n`feature_alignment` time vs m (float32 features):\n")
        parts.append(
            markdown_table(
                ("m", "d", "seconds"), [(f"{r['m']:,}", f"{r['d']:,}", f"{r['seconds']:.3f}") for r in alignment]
            )
        )
    return "\n".join(parts)


def notes(train: dict) -> list[str]:
    """What the training figures mean, from the figures themselves."""
    engine, bound, reference = train["engine"], train["bound_epoch"], train["reference"]
    lines = [
        f"An epoch of `run_experiment` does the epoch's {train['bound'].flops / 1e9:,.0f} GFLOP of training matmuls at "
        f"{train['bound'].flops / engine / 1e9:,.0f} GFLOP/s, its evaluation included (bare torch.mm: "
        f"{train['bound'].flops / bound / 1e9:,.0f}); {100 * train['evaluation_share']:.1f} % "
        f"of its epoch is that per-epoch evaluation, which the bound does not count (test error on "
        f"{train['n_test']:,} digits is a forward pass worth "
        f"{100 * train['n_test'] / (2 * train['n']):.1f} % of the epoch's training FLOPs).",
    ]
    needed = TARGETS["reference"] / (reference / bound)  # the fraction of the bound that target needs
    if reference / engine < TARGETS["reference"]:
        lines.append(
            f"Engine ÷ reference ≥ {TARGETS['reference']}× needs the engine at {needed:.2f} of the matmul bound "
            f"(it ran at {bound / engine:.2f}), because the reference itself takes only {reference / bound:.2f}× "
            "the bare matmul time"
            + (": beyond what any engine doing these matmuls at torch.mm's speed can reach." if needed > 1 else ".")
        )
    return lines


def section(
    device: torch.device, mode: str, description: list[str], rows, notes_lines, growth: str, elapsed: float
) -> str:
    kind = "CUDA" if device.type == "cuda" else "CPU"
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join(
        [
            f"<!-- section:{device.type} -->",
            f"## {kind}: `python benchmarks/run.py{' --quick' if mode == 'quick' else ''}` ({stamp}, {elapsed:.0f} s)",
            "",
            *[f"- {line}" for line in description],
            "",
            markdown_table(("measurement", "result", "target", "status"), rows),
            "",
            *[f"- {line}" for line in notes_lines],
            "",
            growth,
            f"<!-- /section:{device.type} -->",
        ]
    )


HEADER = """# Benchmarks

Written by `python benchmarks/run.py` (issue 4); `--quick` gives the same figures with fewer repeats
and sizes. Every target is a ratio of two figures measured side by side in one process; each figure
is the best of several repeats (noise on a shared machine only adds time), with the median beside it.

Data: real MNIST cannot be downloaded on the benchmark machine, so the training set is MNIST-sized
(8 vs 9: 11,800 training and 1,983 test digits, MNIST's per-class counts) and made of the bundled
sample's real digits (400 train and 100 test per class) and copies of them shifted by up to two
pixels. Speed depends on the sizes, not on the pixel values.

"Model-samples/s" counts both models: each epoch trains the slow and the regular model on every
training digit, and an epoch of `run_experiment` includes its per-epoch evaluation (test error,
probe alignment and centered kernels of both models, and since issue 10 their tangent kernels and
the lazy-vs-rich measures: tangent alignment, feature and tangent distance from the start, weight
changes, ReLU patterns). The null bands of ρ and the kernel machines run once per run, outside the
epochs; their own row gives their time. The reference pipeline (benchmarks/reference.py)
does the same work the way the notebook did, bugs fixed: a torchvision-style dataset giving a PIL
image per sample through `ToTensor`, a `DataLoader`, two `nn.Module`s trained by autograd and
`torch.optim.SGD` on the same batches, then test error through a test `DataLoader` and alignment with
an explicit H = I − 11ᵀ/m; its training alone is shown too. The matmul bound is the epoch's training
matmul FLOPs (issue 4's count: per batch of B and per model 2·B·784·w forward, 2·B·784·w weight
gradient, 3 × 2·B·w·k readout) divided by bare `torch.mm` throughput at the same shapes, measured in
the same run, each product in whichever operand layout runs fastest here.
"""


def write_markdown(path: pathlib.Path, new_section: str, device_type: str) -> None:
    """Replace this device kind's section of BENCHMARKS.md, keeping the others."""
    text = path.read_text() if path.exists() else ""
    found = re.findall(r"(<!-- section:(\w+) -->.*?<!-- /section:\2 -->)", text, re.S)
    sections = {kind: body for body, kind in found}
    sections[device_type] = new_section
    ordered = [sections[k] for k in ("cpu", "cuda") if k in sections] + [
        v for k, v in sections.items() if k not in ("cpu", "cuda")
    ]
    path.write_text(HEADER + "\n" + "\n\n".join(ordered) + "\n")


def write_section(kind: str, heading: str, body: str) -> None:
    """`body` under `heading` as BENCHMARKS.md's section `kind` (a word), keeping the others."""
    write_markdown(BENCHMARKS_MD, f"<!-- section:{kind} -->\n## {heading}\n\n{body}\n<!-- /section:{kind} -->", kind)
    print(f"\nwrote {BENCHMARKS_MD}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="fewer repeats and sizes (under 2 minutes on 2 cores)")
    modes.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {BENCHMARKS_MD.name}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--markdown-out", type=pathlib.Path, help="also write this run's section to this file")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    scale = SCALES[mode]
    device = resolve_device(args.device)
    started = time.perf_counter()
    description = machine(device)
    load_before = os.getloadavg()[0]
    print(f"kalign benchmark ({mode}) on {device}", flush=True)

    train = measure_training(scale, device)
    print(f"  training: {time.perf_counter() - started:.0f} s", flush=True)
    alignment = measure_alignment(scale, device)
    print(f"  alignment at scale: {time.perf_counter() - started:.0f} s", flush=True)
    by_width, by_digits = measure_growth(scale, device)
    print(f"  cost growth: {time.perf_counter() - started:.0f} s", flush=True)
    dashboard = measure_dashboard(scale.dashboard)  # last: the app sets torch's thread count
    print(f"  dashboard: {time.perf_counter() - started:.0f} s", flush=True)

    description.append(
        f"load average (1 min) at the start and end: {load_before:.1f} and {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores; other processes on the machine slow some repeats"
    )
    rows = build_rows(train, alignment, dashboard)
    growth = growth_tables(by_width, by_digits, alignment, train["n"])
    text = section(device, mode, description, rows, notes(train), growth, time.perf_counter() - started)
    print("\n" + text)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
    if not args.no_write and mode != "smoke":
        write_markdown(BENCHMARKS_MD, text, device.type)
        print(f"\nwrote {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
