"""A class of 100 pressing Train, served through the app's job layer on a Ray cluster of several
nodes, one of which is lost mid-class (no browser: see serving.py for the browsers' side).

    python benchmarks/class_on_ray.py                      # 100 sessions, 3 nodes of 2 CPUs
    python benchmarks/class_on_ray.py --sessions 20 --nodes 2 --no-write

Starts a local Ray cluster (ray.cluster_utils.Cluster: a head and worker nodes as processes of this
machine, each with its own CPUs as Ray counts them), points the job layer at it as
KALIGN_RAY_ADDRESS would (`jobs.server_slots`), and submits one run per session (its own seed, so
the results cache never answers), a few milliseconds apart. Once a third of the runs have finished,
one worker node is removed, as a lost machine would be: the runs training there end with the
message a page shows, and those sessions press Train again. It reports

- all correct: every finished result equals that seed's run through the library in this process at
  the same torch threads (alignment and test error per epoch, to the last bit);
- in arrival order: slots were given to the sessions in the order they pressed Train (the ones
  pressing again queue at the back, as they would);
- lost: runs ended by the node's loss, with the message their page shows, and whether each
  finished when pressed again (none lost);
- time from the first press to the last result, and per run, with the cluster's CPUs.

Writes its figures into BENCHMARKS.md (section "class_on_ray") unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalign_app import jobs  # noqa: E402
from kalign_core import ExperimentConfig, run_experiment  # noqa: E402
from kalign_core.devices import torch_threads  # noqa: E402
from run import verdict, write_section  # noqa: E402

ABOUT = "\n\n".join(__doc__.split("\n\n")[2:4])


def config_for(seed: int) -> ExperimentConfig:
    return ExperimentConfig(width=64, epochs=3, batch_size=100, probe_size=40, device="cpu", source="sample", seed=seed)


def same_numbers(result, alone) -> bool:
    return all(
        result.curve(name, metric) == alone.curve(name, metric)
        for name in ("slow", "regular")
        for metric in ("alignment", "test_error")
    )


def recording_arrivals(slots: jobs.JobSlots) -> list:
    """The jobs in the order they got a slot (wraps this instance's acquire)."""
    order, acquire = [], slots.acquire

    def acquire_and_note(job, cancelled, poll_s=0.2):
        got = acquire(job, cancelled, poll_s)
        if got:
            order.append(job)
        return got

    slots.acquire = acquire_and_note
    return order


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3, help="worker nodes besides the head")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=args.cpus_per_node) for _ in range(args.nodes)]
    cluster.wait_for_nodes()
    os.environ["KALIGN_RAY_ADDRESS"] = cluster.address
    try:
        slots = jobs.server_slots()
        order = recording_arrivals(slots)
        print(f"Ray: {args.nodes} nodes × {args.cpus_per_node} CPUs; {slots.limit} slots")
        started = time.perf_counter()
        pressed = []
        for seed in range(args.sessions):
            pressed.append(jobs.TrainingJob(config_for(seed), slots).start())
            time.sleep(0.005)
        lost_node, lost, again = False, [], []
        while any(job.status().active for job in pressed + again):
            finished = sum(job.status().state == "finished" for job in pressed)
            if not lost_node and finished >= args.sessions // 3:
                cluster.remove_node(nodes[-1])  # a machine of the class's cluster goes away
                lost_node = True
            for job in pressed:
                status = job.status()
                if status.state == "failed" and job not in lost:
                    lost.append(job)
                    again.append(jobs.TrainingJob(job.config, slots).start())  # the student presses Train again
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        messages = {job.status().error for job in lost}
        with torch_threads(slots.threads_per_job):
            alone = {seed: run_experiment(config_for(seed)) for seed in range(args.sessions)}
        final = {job.config.seed: job for job in pressed if job.status().state == "finished"}
        final.update({job.config.seed: job for job in again if job.status().state == "finished"})
        correct = sum(same_numbers(final[s].status().result, alone[s]) for s in final)
        first_presses = [job for job in order if job in pressed]
        in_order = first_presses == [job for job in pressed if job in first_presses]
        slots.workers.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    none_lost = len(final) == args.sessions
    rows = [
        ("sessions", f"{args.sessions}"),
        ("cluster", f"{args.nodes} worker nodes × {args.cpus_per_node} CPUs (one removed mid-class), on this machine"),
        ("slots", f"{slots.limit} runs at once, {slots.threads_per_job} torch threads each"),
        ("all correct (the library's numbers)", f"{correct}/{args.sessions}: {verdict(correct == args.sessions)}"),
        ("in arrival order", verdict(in_order)),
        ("ended by the lost node", f"{len(lost)}; their pages said: {'; '.join(sorted(m or '' for m in messages))}"),
        ("none lost (each finished, pressed again where needed)", verdict(none_lost)),
        ("first press to last result", f"{seconds:.1f} s ({seconds / args.sessions:.2f} s per run)"),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    if not args.no_write:
        write_section(
            "class_on_ray",
            f"A class on Ray: `python benchmarks/class_on_ray.py` ({time.strftime('%Y-%m-%d %H:%M')})",
            f"{ABOUT}\n\n{table}\n",
        )
    return 0 if correct == args.sessions and in_order and none_lost else 1


if __name__ == "__main__":
    sys.exit(main())
