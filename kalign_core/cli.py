"""Command line: `python -m kalign_core train ...` prints a per-epoch table and writes the run;
`python -m kalign_core sweep ...` runs a sweep with one line per trial and writes its folder;
`python -m kalign_core lesson ID` runs a lesson and prints each of its checks with its numbers."""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from .config import SETTINGS, SOURCES, ConfigError, ExperimentConfig
from .data import DataUnavailable
from .engine.training import run_experiment
from .lessons import LESSONS, find_lesson
from .parametrization import PARAMETRIZATIONS
from .results import MODEL_NAMES, EpochRecord, ExperimentResult
from .runs import RunFileError, check_run_target, save_run
from .sweep.options import BACKENDS, BLOCK_THREADS, KEEP, SweepOptions
from .sweep.runner import SweepProgress, calibrate, estimate_seconds, run_sweep
from .sweep.spec import SweepSpec, mean_spread, pairs_among, round_lr
from .sweep.width_lab import LAB_MEASURES, THEORY_MEASURE, slope_text, width_lines
from .text import duration as duration_text

_DEFAULTS = ExperimentConfig()


# Settings that a sweep turns into axes (--digits pairs among them, --widths, --ratios, --seeds,
# --parametrizations).
SWEEP_AXES = ("digits", "width", "slow_lr", "seed", "parametrization")


def add_config_options(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The experiment's settings as options: ExperimentConfig's fields with their help and defaults.
    For a sweep, digits, width, slow lr, seed and parametrization become axes: --digits (pairs among
    them), --widths, --ratios, --seeds, --parametrizations."""
    d = _DEFAULTS
    if sweep:
        parser.add_argument(
            "--digits",
            type=int,
            nargs="+",
            default=list(range(10)),
            help="run every pair among these digits (default: all 10, i.e. all 45 pairs)",
        )
        parser.add_argument(
            "--widths",
            type=int,
            nargs="+",
            default=[d.width],
            help="hidden units, one trial each (default: %(default)s)",
        )
        parser.add_argument(
            "--ratios",
            type=float,
            nargs="+",
            default=[round_lr(d.slow_lr / d.regular_lr)],
            help="slow lr / regular lr, 0 to 1, one trial each; 0 = random features (default: %(default)s)",
        )
        parser.add_argument(
            "--seeds", type=int, nargs="+", default=[d.seed], help="seeds, one trial each (default: %(default)s)"
        )
        parser.add_argument(
            "--parametrizations",
            nargs="+",
            default=[d.parametrization],
            metavar="NAME",
            help=f"{', '.join(PARAMETRIZATIONS)}, one trial each, apart or comma-separated, e.g. ntk,mup "
            "(default: %(default)s)",
        )
    for setting in SETTINGS.values():
        if sweep and setting.name in SWEEP_AXES:
            continue
        shown = "" if setting.default is None else " (default: %(default)s)"
        if setting.kind is bool:  # a switch: --name turns it on, --no-name off
            switch = argparse.BooleanOptionalAction
            parser.add_argument(setting.option, action=switch, default=setting.default, help=setting.help + shown)
            continue
        parser.add_argument(
            setting.option,
            type=setting.kind,
            nargs="+" if setting.many else None,
            default=list(setting.default) if setting.many else setting.default,
            choices=setting.choices,
            metavar=setting.metavar,
            help=setting.help + shown,
        )


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(**{name: getattr(args, name) for name in SETTINGS})


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    base = ExperimentConfig(**{name: getattr(args, name) for name in SETTINGS if name not in SWEEP_AXES})
    parametrizations = tuple(name for names in args.parametrizations for name in names.split(",") if name)
    return SweepSpec(
        base, pairs_among(args.digits), tuple(args.widths), tuple(args.ratios), tuple(args.seeds), parametrizations
    )


def build_parser(prog: str = "kalign") -> argparse.ArgumentParser:
    """The command line as `prog` (the installed command, or `python -m kalign_core`) shows it."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Kernel alignment of a slow and a regular one-hidden-layer MLP on MNIST digits.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train both models and print errors and alignment per epoch")
    add_config_options(train)
    train.add_argument("--out", help="folder to save the run in (config, histories, kernels, weights)")
    train.set_defaults(handler=_train)
    sweep = commands.add_parser(
        "sweep",
        help="train every digit pair × width × lr ratio × seed; rerunning resumes",
        description="Runs every trial not yet in --out, saving each run in its own subfolder and one "
        "row per trial in OUT/summary.csv.",
    )
    add_config_options(sweep, sweep=True)
    sweep.add_argument("--out", required=True, help="sweep folder; rerunning with the same folder resumes")
    sweep.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local: this machine (a process pool when --workers > 1); ray: a Ray cluster (default: %(default)s)",
    )
    sweep.add_argument(
        "--address",
        help="Ray cluster to join, e.g. ray://head:10001 or auto "
        "(default: start a local Ray instance with --workers CPUs)",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        help="processes (or Ray tasks) at a time, each training a block of the trials as one batched "
        "computation (default: one per --threads-per-trial cores, 1 on a GPU)",
    )
    sweep.add_argument(
        "--threads-per-trial",
        type=int,
        help="torch threads of each worker's block of trials; results depend on it, so keep it fixed "
        f"within a sweep: a resumed sweep refuses another (default: what a resumed sweep trained at, else "
        f"{BLOCK_THREADS} on CPU, as many as there are cores, 1 on a GPU)",
    )
    sweep.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="ray only: GPUs each block of trials (one Ray task) asks Ray for, e.g. 0.25 to let four "
        "blocks share a GPU; Ray hides GPUs from tasks that ask for none (default: %(default)s)",
    )
    sweep.add_argument(
        "--keep",
        choices=KEEP,
        help="what each trial's folder keeps: lean (histories and the first and last epoch's kernels, under "
        "1 MB) or all (every epoch's kernels and the weights); default: what the sweep in --out kept, "
        "else lean",
    )
    sweep.set_defaults(handler=_sweep)
    lesson = commands.add_parser(
        "lesson",
        help="run a lesson and check its claims on the runs it just made",
        description="Runs the lesson's experiments, then prints each of its expectations with ✓ or ✗ and the "
        "numbers behind it. --list shows the lessons.",
    )
    lesson.add_argument("id", nargs="?", help="the lesson to run (see --list)")
    lesson.add_argument("--list", action="store_true", help="list the lessons and their questions")
    lesson.add_argument(
        "--source", choices=SOURCES, default=_DEFAULTS.source, help="as for train (default: %(default)s)"
    )
    lesson.add_argument("--device", default=_DEFAULTS.device, help="as for train (default: %(default)s)")
    lesson.set_defaults(handler=_lesson)
    return parser


def _format_cell(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def progress_bar(total: int, unit: str, err=None) -> tqdm:
    """A bar with the time left on stderr, only on a terminal: in a log file the printed lines say it
    all. Lines printed with `tqdm.write` go above it."""
    err = err or sys.stderr
    return tqdm(total=total, unit=unit, file=err, disable=not err.isatty(), leave=False, dynamic_ncols=True)


class EpochTable:
    """Prints a header, then one row per epoch, and a progress bar on stderr while training."""

    def __init__(self, config: ExperimentConfig, out=sys.stdout, err=sys.stderr):
        self.config, self.out, self.err = config, out, err
        self.printed = 0
        self.bar = None  # started after epoch 0 (loading and measuring the initial models), so that it paces epochs
        print(
            f"{'epoch':>5} │ {'slow test%':>10} {'slow ρ':>7} │ {'reg. test%':>10} {'reg. ρ':>7} │ {'seconds':>7}",
            file=out,
        )

    def __call__(self, result: ExperimentResult) -> None:
        slow, regular = (result.history[name] for name in MODEL_NAMES)
        for epoch in range(self.printed, result.epochs_done + 1):
            cells = []
            for history in (slow, regular):
                record = history[epoch] if epoch < len(history) else None
                cells.append(
                    f"{_format_cell(record and record.test_error, '10.2f')} "
                    f"{_format_cell(record and record.alignment, '7.4f')}"
                )
            seconds = max(h[-1].seconds for h in (slow, regular))
            tqdm.write(f"{epoch:>5} │ {cells[0]} │ {cells[1]} │ {seconds:7.1f}", file=self.out)
        self.printed = result.epochs_done + 1
        self.bar = self.bar or progress_bar(self.config.epochs, "epoch", self.err)
        self.bar.update(result.epochs_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def twin_line(name: str, last: EpochRecord) -> str:
    """A model against its linearized twin at its last epoch."""
    gap = "undefined" if last.linear_gap is None else f"{last.linear_gap:.4f}"
    twin = "undefined" if last.linear_test_error is None else f"{last.linear_test_error:.2f}%"
    why = f" ({last.linear_note})" if last.linear_note else ""
    return f"{name} vs its linearized twin: gap {gap}{why}, test error {last.test_error:.2f}% against the twin's {twin}"


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.out:
        try:
            check_run_target(args.out)
        except RunFileError as error:
            raise ValueError(f"--out: {error}") from None
    started = time.perf_counter()
    table = EpochTable(config)
    try:
        result = run_experiment(config, on_epoch=table)
    finally:
        table.close()
    print(f"data: {result.source}, device: {result.device}, {time.perf_counter() - started:.1f} s")
    if config.linearized_twin:
        for name in MODEL_NAMES:
            print(twin_line(name, result.history[name][-1]))
    for name, epoch in result.diverged_at.items():
        if epoch is not None:
            print(f"the {name} model diverged at epoch {epoch} (its loss exploded); try a smaller learning rate")
    if args.out:
        try:
            print(f"saved to {save_run(result, args.out)}")
        except OSError as error:
            raise ValueError(f"--out: could not save the run: {error}") from None
    return 0


class TrialLog:
    """One line per finished trial on stdout, and a progress bar on stderr when it is a terminal."""

    def __init__(self, total: int, done: int, out=None, err=None):
        self.out = out or sys.stdout
        self.bar = progress_bar(total, "trial", err)
        self.bar.update(done)

    def __call__(self, progress: SweepProgress) -> None:
        s = progress.last
        gain = "—" if s.alignment_gain is None else f"{s.alignment_gain:+.4f}"
        tqdm.write(
            f"[{progress.done:>{len(str(progress.total))}}/{progress.total}] {s.trial_id:<24} gain {gain:>8}  "
            f"test% {s.test_error_slow:5.1f} / {s.test_error_regular:5.1f}  {s.seconds:6.1f} s",
            file=self.out,
        )
        # The time left from the cost model, scaled by how fast the trials went: better than a mean
        # rate while the first wide trials run.
        self.bar.set_postfix_str(f"about {duration_text(progress.seconds_left)} left", refresh=False)
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _sweep(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    options = SweepOptions(
        args.backend, args.workers, args.threads_per_trial, args.address, None, args.gpus_per_trial, args.keep
    ).settled(spec, args.out)
    total = len(spec.trials())
    cost = calibrate(spec, options.threads_per_trial, options.keep)
    pending, seconds = estimate_seconds(spec, options, args.out, cost)
    print(f"{total} trials ({spec.axes_text()}), {total - pending} already in {args.out}")
    if pending:
        where = f"Ray at {args.address}" if args.address else f"{options.workers} {args.backend} worker(s)"
        print(
            f"running {pending} on {where}; estimated {duration_text(seconds)} of training on idle cores "
            "of this machine, plus worker start-up"
        )
    log = TrialLog(total, total - pending)
    try:
        outcome = run_sweep(spec, args.out, options, on_progress=log, cost=cost)
    finally:
        log.close()
    print(f"{len(outcome.ran)} trials run in {duration_text(outcome.seconds)}; summary: {args.out}/summary.csv")
    ranked = sorted(mean_spread(outcome.summaries, "pair").items(), key=lambda item: item[1][0])
    if len(ranked) > 1:
        (low, (low_gain, _, _)), (high, (high_gain, _, _)) = ranked[0], ranked[-1]
        print(
            f"largest mean alignment gain: {high[0]} vs {high[1]} ({high_gain:+.4f}); "
            f"smallest: {low[0]} vs {low[1]} ({low_gain:+.4f})"
        )
    for line in width_lines(outcome.summaries, LAB_MEASURES[THEORY_MEASURE]):
        if line.slope is not None:
            print(f"hidden-weight change vs width, {line.parametrization} {line.model} model: {slope_text(line)}")
    return 0


def _lesson(args: argparse.Namespace) -> int:
    if args.list:
        for lesson in LESSONS:
            print(f"{lesson.id:<16} {lesson.title}: {lesson.question}")
        return 0
    if args.id is None:
        raise ValueError(f"name a lesson to run, one of {', '.join(lesson.id for lesson in LESSONS)} (or --list)")
    lesson = find_lesson(args.id)
    print(f"{lesson.title}: {lesson.question}")
    results = []
    for number, (label, config) in enumerate(zip(lesson.labels, lesson.configs_on(args.source, args.device)), 1):
        result = run_experiment(config)
        print(
            f"run {number}/{len(lesson.configs)}, {label}: {result.epochs_done} epochs in {result.seconds:.1f} s "
            f"(data: {result.source}, device: {result.device})"
        )
        results.append(result)
    expectations = lesson.expectations(results)
    for expectation in expectations:
        print(f"{'✓' if expectation.passed else '✗'} {expectation.text}\n    {expectation.value}")
    print(f"{sum(e.passed for e in expectations)} of {len(expectations)} expectations hold.")
    print(lesson.next_steps)
    return 0


def option_names(command: str) -> dict[str, str]:
    """What each setting is called on `command`'s command line, for its error messages."""
    names = {name: setting.option for name, setting in SETTINGS.items()}
    names.update({"workers": "--workers", "threads_per_trial": "--threads-per-trial"})
    if command == "sweep":
        names.update(width="--widths", seed="--seeds", slow_lr="--ratios", parametrization="--parametrizations")
    return names


def main(argv=None, prog: str = "kalign") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:  # bad settings, named as the options they came from
        parser.error(error.describe(option_names(args.command)))  # exits 2 with the message
    except (ValueError, DataUnavailable) as error:  # other bad input, or no data to train on
        parser.error(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
