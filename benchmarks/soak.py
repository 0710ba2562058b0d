"""Memory over many runs in one server process: does it level off?

    python benchmarks/soak.py                  # 50 runs of the app's default width, 2 epochs, sample
    python benchmarks/soak.py --cache-mb 64    # a smaller results cache: the cap bites sooner
    python benchmarks/soak.py --runs 3 --width 16 --epochs 1 --probe-size 20   # smoke

Each run goes the way the Train page sends it: the shared results cache is asked first, then a
`TrainingJob` trains in a worker process under the server's job slots and puts its result in the
cache. Every run has a new seed, so every run trains and the cache fills up to its byte limit and
then drops its oldest entries. One line per run: resident memory (RSS) of this process (the
server) and of the worker processes after it, and the cache's entries and bytes. The server's RSS
should follow the cache up to its limit and stay flat after; the workers' should stay flat.
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import resource
import sys
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalign_app import environment, jobs  # noqa: E402
from kalign_core import ExperimentConfig  # noqa: E402

MB = 2**20


@dataclass(frozen=True)
class Row:
    run: int
    seconds: float
    rss_mb: float
    workers_mb: float
    cached: int  # results in the cache after this run
    cache_mb: float
    result_mb: float  # this run's kernels and weights


def rss_mb(pid="self") -> float:
    """Resident memory now (Linux); elsewhere this process's peak so far, which can only overstate
    it, and 0 for another process."""
    statm = pathlib.Path(f"/proc/{pid}/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    if pid != "self":
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def train_like_the_app(config: ExperimentConfig, slots: jobs.JobSlots, cache: jobs.ResultCache):
    cached = cache.get(config)
    if cached is not None:
        return cached
    job = jobs.TrainingJob(config, slots, cache).start()
    job.wait()
    status = job.status()
    if status.state != "finished":
        raise RuntimeError(f"run with seed {config.seed} ended {status.state}: {status.error}")
    return status.result


def soak(args: argparse.Namespace) -> list[Row]:
    defaults = ExperimentConfig()
    slots = jobs.JobSlots(environment.job_limit())
    cache = jobs.ResultCache(args.cache_mb * MB) if args.cache_mb else jobs.ResultCache()
    print(
        f"{args.runs} runs: width {args.width}, {args.epochs} epoch(s), probe {args.probe_size}, digits "
        f"{defaults.digits}, sample data, {slots.threads_per_job} torch thread(s); results cache up to "
        f"{cache.max_bytes / MB:.0f} MB"
    )
    print(f"{'run':>4} {'seconds':>8} {'RSS MB':>8} {'workers MB':>11} {'cached':>7} {'cache MB':>9} {'run MB':>7}")
    rows = []
    for run in range(1, args.runs + 1):
        config = ExperimentConfig(
            width=args.width, epochs=args.epochs, probe_size=args.probe_size, seed=run, source="sample"
        )
        started = time.perf_counter()
        result = train_like_the_app(config, slots, cache)
        seconds = time.perf_counter() - started
        result_mb = jobs.result_nbytes(result) / MB
        del result  # a session keeps only its latest run; the cache keeps the rest
        gc.collect()
        # Peeking at the entries: asking get() for each would reorder the least-recently-used list.
        cache_mb = sum(jobs.result_nbytes(r) for r in cache._entries.values()) / MB
        workers_mb = sum(rss_mb(pid) for pid in slots.workers.pids)
        rows.append(Row(run, seconds, rss_mb(), workers_mb, len(cache), cache_mb, result_mb))
        r = rows[-1]
        print(
            f"{r.run:>4} {r.seconds:>8.2f} {r.rss_mb:>8.1f} {r.workers_mb:>11.1f} {r.cached:>7} {r.cache_mb:>9.1f} "
            f"{r.result_mb:>7.1f}",
            flush=True,
        )
    summarize(rows)
    return rows


def summarize(rows: list[Row]) -> None:
    """RSS growth per run once the cache has stopped growing: about 0 when nothing else accumulates."""
    full = next(r for r in rows if r.cached == rows[-1].cached)
    last = rows[-1]
    print(
        f"RSS: {rows[0].rss_mb:.0f} MB after run 1, {full.rss_mb:.0f} MB after run {full.run} (when the cache "
        f"reached its final {full.cached} entries, {full.cache_mb:.0f} MB), {last.rss_mb:.0f} MB after run {last.run}",
        end="",
    )
    if last.run - full.run >= 5:
        print(
            f"; {(last.rss_mb - full.rss_mb) / (last.run - full.run):+.2f} MB per run since the cache filled "
            f"(each run holds {last.result_mb:.1f} MB)"
        )
    else:
        print("; too few runs after the cache filled to tell whether RSS levels off: raise --runs or lower --cache-mb")
    print(f"Worker processes: {rows[0].workers_mb:.0f} MB after run 1, {last.workers_mb:.0f} MB after run {last.run}")


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = ExperimentConfig()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--probe-size", type=int, default=defaults.probe_size)
    parser.add_argument(
        "--cache-mb", type=int, help=f"results cache limit (default: the app's, {jobs.DEFAULT_CACHE_BYTES // MB} MB)"
    )
    return soak(parser.parse_args(argv))


if __name__ == "__main__":
    main()
