"""The lessons: guided experiments a teacher runs in one click, each checking its own claim on the
runs it just made. `scripts/lesson_margins.py` runs every lesson on several seeds, on MNIST digits
outside the bundled sample and with longer training, and writes the margins it measured into the
README's lesson table."""

from __future__ import annotations

from ..config import ExperimentConfig
from . import checks
from .lesson import Lesson

# The fastest settings that keep each claim clear: small batches give many steps per epoch.
_FAST = dict(batch_size=50, probe_size=100)


def _lazy_scales(scales, **settings) -> list[ExperimentConfig]:
    """One run per lazy scale α (None: the plain network), the other settings shared, at _FAST's."""
    return [ExperimentConfig(lazy_scale=scale, **_FAST, **settings) for scale in scales]


LESSONS: list[Lesson] = [
    Lesson(
        id="slow-vs-regular",
        title="Slow vs regular",
        question="Two networks start from the same weights; one hidden layer learns 10× slower. Whose features "
        "line up with the task?",
        configs=[ExperimentConfig(digits=(8, 9), width=2000, slow_lr=0.001, regular_lr=0.01, epochs=3, **_FAST)],
        labels=["8 vs 9, width 2000"],
        check=checks.check_slow_vs_regular,
        notes="The notebook's experiment: 8 vs 9, width 2000, hidden learning rates 0.001 (slow) and 0.01 "
        "(regular); both readouts learn at 0.01. Alignment ρ measures how much the hidden features' kernel "
        "looks like the labels' kernel YYᵀ.",
        next_steps="Freeze the slow hidden layer completely (lesson 'Random features'), or train for more "
        "epochs on the Train page and see whether the regular model's larger ρ gain holds.",
    ),
    Lesson(
        id="random-features",
        title="Random features",
        question="If a hidden layer never learns at all, can the network still solve the task?",
        configs=[ExperimentConfig(digits=(8, 9), width=1000, slow_lr=0.0, regular_lr=0.01, epochs=5, **_FAST)],
        labels=["8 vs 9, slow lr 0"],
        check=checks.check_random_features,
        notes="The slow model's hidden learning rate is 0: its hidden layer stays at its random initial weights "
        "and only its readout learns. That is a random-features model. It is not the lazy (NTK) regime, "
        "where the whole network, hidden layer included, trains like its linearisation.",
        next_steps="Try widths 100 and 4000 on the Train page (does a wider random-feature layer help its "
        "readout?), or see a frozen kernel next to a learning one in 'Blocks appear'.",
    ),
    Lesson(
        id="lazy-dial",
        title="The lazy dial",
        question="If a network's weights barely move, can it still learn?",
        configs=[
            ExperimentConfig(
                digits=(8, 9),
                width=1000,
                slow_lr=0.001,
                regular_lr=0.01,
                epochs=5,
                lazy_scale=scale,
                batch_size=50,
                probe_size=90,
            )
            for scale in (1.0, 10.0, 100.0)
        ],
        labels=["α 1", "α 10", "α 100"],
        check=checks.check_lazy_dial,
        charts=("movement",),
        notes="Three runs with the lazy scale α = 1, 10 and 100 (Chizat, Oyallon & Bach 2019): each network trains "
        "α·(f − f₀) on the loss divided by α², so its output learns at the same speed while its weights need "
        "to move α times less. α = 1 trains f − f₀, the plain network's change from its start: its weights move "
        "about as the plain network's do, but its outputs start at 0, so its errors are not the plain network's. "
        "The larger α, the closer to the lazy (NTK) regime, "
        "where the whole network, hidden layer included, trains like its linearisation around the start, with "
        "a fixed tangent kernel Θ. It is not the slow model's random features, where the hidden layer stops "
        "learning and only the readout learns.",
        next_steps="Compare what the kernels of a rich and a lazy network are worth in 'A better kernel, "
        "learned', or turn on the lazy scale on the Train page and watch the chart of how far each model moved "
        "from its start.",
    ),
    Lesson(
        id="width",
        title="Width makes it lazier",
        question="At the same learning rate, do the weights and features of a wider network move more or less?",
        configs=[
            ExperimentConfig(digits=(4, 9), width=width, slow_lr=0.001, regular_lr=0.01, epochs=10, **_FAST)
            for width in (64, 4096)
        ],
        labels=["width 64", "width 4096"],
        check=checks.check_width,
        charts=("movement",),
        notes="Two runs of 4 vs 9 that differ only in the hidden width, both with PyTorch's default initialisation "
        "and the same learning rates. Under that scaling each hidden unit's share of the output shrinks as the "
        "width grows, so at a fixed learning rate each weight needs to move less.",
        next_steps="This lesson keeps PyTorch's default scaling and one learning rate for both widths. Theory "
        "says that under another scaling with width (mean-field, or μP) features keep moving at any width. The "
        "Sweeps page scans widths over many digit pairs and seeds.",
    ),
    Lesson(
        id="easy-and-hard",
        title="Easy and hard pairs",
        question="Does feature learning help most where the task is easy or where it is hard?",
        configs=[
            ExperimentConfig(digits=digits, width=256, slow_lr=0.001, regular_lr=0.01, epochs=10, **_FAST)
            for digits in ((0, 1), (4, 9))
        ],
        labels=["0 vs 1 (easy)", "4 vs 9 (hard)"],
        check=checks.check_pairs,
        notes="0 and 1 look different pixel by pixel; 4 and 9 share most strokes. Both runs use the same width and "
        "learning rates. The initial ρ is the same for both models of a run (they share their start).",
        next_steps="Run the Sweeps page on all 45 pairs and read the alignment-gain heatmap: does the gain follow "
        "how poorly a pair starts?",
    ),
    Lesson(
        id="blocks-appear",
        title="Blocks appear",
        question="What does a kernel that learned the task look like?",
        configs=[
            ExperimentConfig(
                digits=(3, 8, 9), width=256, slow_lr=0.0, regular_lr=0.05, epochs=20, batch_size=50, probe_size=90
            )
        ],
        labels=["3, 8, 9, width 256"],
        check=checks.check_blocks,
        notes="Three digits; the slow model's hidden layer is frozen (slow lr 0), the regular one learns at 0.05. "
        "The heatmaps show K − K₀, what each feature kernel ΦΦᵀ gained since initialisation, on the probe "
        "digits sorted by class: a kernel that learned the classes gains similarity inside each class "
        "(diagonal blocks) and loses it across classes, relative to the average pair.",
        charts=("kernel change",),
        next_steps="Open the run on the Kernels page and move the epoch slider to watch the blocks form. Then try a "
        "slow learning rate of 0.001 instead of 0 (do the blocks form, and how fast?), or 5 digits.",
    ),
    Lesson(
        id="too-fast",
        title="Too fast",
        question="What happens when a learning rate is far too large?",
        configs=[ExperimentConfig(digits=(8, 9), width=256, slow_lr=100.0, regular_lr=0.01, epochs=5, **_FAST)],
        labels=["slow model's hidden lr 100"],
        check=checks.check_too_fast,
        notes="Here the 'slow' model's hidden layer gets a learning rate of 100, 10,000× the regular model's 0.01: "
        "it is not slow at all. kalign calls a model diverged when a batch loss grows past 10× its initial "
        "loss (or stops being a number), marks the epoch and stops training that model; the other goes on.",
        next_steps="On the Train page, divide the slow learning rate by 10 at a time until that model trains to the "
        "last epoch.",
    ),
    Lesson(
        id="more-than-its-kernel",
        title="A better kernel, learned",
        question="Does training give a network a better kernel than the one it started with?",
        configs=[
            ExperimentConfig(
                digits=(3, 5, 8),
                width=256,
                slow_lr=0.001,
                regular_lr=0.1,
                epochs=40,
                lazy_scale=scale,
                batch_size=50,
                probe_size=90,
            )
            for scale in (None, 100.0)
        ],
        labels=["rich (α off)", "lazy (α 100)"],
        check=checks.check_more_than_kernel,
        charts=("machines",),
        notes="Two runs of 3, 5 and 8 from the same start: the ordinary (rich) network, and the same network made "
        "lazy with α = 100. At the start and the end of each run, kalign fits kernel ridge machines with the "
        "network's feature kernel ΦΦᵀ and tangent kernel Θ on up to 1,000 training digits and scores them on "
        "held-out ones. A machine is solved exactly, while the networks train for 40 epochs and have not "
        "converged, so the lesson compares machines with machines: the kernel a network ends with (its "
        "'after kernel') against the one it started with. The chart shows the tangent kernels' machines too: on "
        "this little data the initial tangent kernel's machine is hard to beat, and training need not improve it.",
        next_steps="Open a run on Train to see its networks-and-machines chart, or train the rich run for more "
        "epochs there and compare its machines again.",
    ),
    Lesson(
        id="width-or-scaling",
        title="Width or scaling?",
        question="Is a wide network lazy because it is wide, or because of how its weights scale with the width?",
        configs=[
            ExperimentConfig(
                digits=(4, 9),
                width=width,
                slow_lr=0.4,
                regular_lr=4.0,
                epochs=3,
                parametrization=parametrization,
                **_FAST,
            )
            for parametrization in ("ntk", "mup")
            for width in (64, 4096)
        ],
        labels=["NTK, width 64", "NTK, width 4096", "μP, width 64", "μP, width 4096"],
        check=checks.check_width_or_scaling,
        charts=("movement",),
        notes="Four runs of 4 vs 9 at widths 64 and 4096 under two parametrizations (see the About page): NTK, "
        "whose learning rates stay as set at every width, and μP, the NTK network at width 256 whose readout "
        "shrinks like 1/width and whose hidden-layer and readout-weight learning rates grow like the width. All "
        "runs use learning rate 4 (0.4 for the slow model).",
        next_steps="Compare with 'Width makes it lazier', which uses PyTorch's standard scaling. The Width lab "
        "scans many widths and fits the slopes: open it at /width_lab?preset=ntk-vs-mup for these two scalings "
        "at widths 64 to 4096, or at /width_lab?preset=coordinate-check for μP's coordinate check.",
    ),
    Lesson(
        id="infinite-width",
        title="Infinite width",
        question="As a network grows wider, does its tangent kernel at initialisation settle on one fixed kernel?",
        configs=[
            ExperimentConfig(
                digits=(4, 9), width=width, slow_lr=0.001, regular_lr=0.01, epochs=1, parametrization="ntk", **_FAST
            )
            for width in (64, 512, 4096)
        ],
        labels=["width 64", "width 512", "width 4096"],
        check=checks.check_infinite_width,
        charts=("machines",),
        notes="Three NTK-parametrized networks of widths 64, 512 and 4096 on 4 vs 9, compared at initialisation "
        "with Θ∞, the tangent kernel of infinite width, which kalign computes in closed form (the ReLU arc-cosine "
        "kernels of Cho & Saul 2009): it depends on the digits alone, not on any random weights. The distance "
        "√(2(1 − ρ(Θ₀, Θ∞))) is 0 when the two kernels agree up to scale. Only the start is compared: the one "
        "epoch each run trains plays no part, and a wide network's kernel staying near Θ∞ during training is "
        "not what this lesson measures. The machines charts set Θ∞'s ridge machine beside the networks' own; "
        "open a run on Train to see ρ(Θ∞, YYᵀ) as a dash-dot line on its alignment chart.",
        next_steps="In the Width lab, pick 'Θ₀'s distance to Θ∞' and scan more widths and seeds; on the Train "
        "page, choose the ntk or μP parametrization to see Θ∞'s line beside any run.",
    ),
    Lesson(
        id="linearization",
        title="The network and its linearization",
        question="Does a network train like its linearization around the start, and what happens when it does not?",
        configs=_lazy_scales(
            (None, 100.0), digits=(8, 9), width=256, slow_lr=0.01, regular_lr=0.1, epochs=5, linearized_twin=True
        ),
        labels=["rich (α off)", "lazy (α 100)"],
        check=checks.check_linearization,
        charts=("twin",),
        notes="Two runs of 8 vs 9 from the same start, each model with its linearized twin g(θ₀) + J₀(θ − θ₀): the "
        "first-order Taylor expansion of what it trains around its initial weights, trained on the same batches "
        "with the same loss and learning rates. The gap ‖g − g_lin‖ / ‖g_lin − g₀‖ on the test digits says how far "
        "the network is from its twin, relative to how far the twin moved: 0 means the network trained exactly "
        "like its linearization (the lazy/NTK regime). One run is the ordinary (rich) network, the other the "
        "same network made lazy with α = 100.",
        next_steps="Turn on the linearized twin on the Train page and try other widths and learning rates: a narrow "
        "network at a large rate leaves its twin, a wide one at a small rate stays close. The Width lab draws the "
        "gap against width.",
    ),
]


def find_lesson(lesson_id: str) -> Lesson:
    """The lesson with this id; ValueError naming the lessons there are otherwise."""
    for lesson in LESSONS:
        if lesson.id == lesson_id:
            return lesson
    raise ValueError(f"there is no lesson {lesson_id!r}; the lessons are {', '.join(lesson.id for lesson in LESSONS)}")
