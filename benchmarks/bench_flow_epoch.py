"""CPU seconds per training epoch of the flows (N-MIENF, tridiag-N-MIENF) at the suite's dimensions, N = 5,000.

The cost of one epoch (the training steps and the held-out evaluation) is the CPU time of an estimate with
``epochs = 12`` minus that of one with ``epochs = 2``, over 10: the set-up (split, flows built, base started) cancels.
It depends on the dimensions only, not on the distribution, so one Gaussian task per dimension stands for the suite;
together with the epochs each run trains (``bench_flow_stopping.py``) it gives the suite's CPU time. Process CPU
time, one thread: comparable between runs under different loads. To compare two versions of ``ibcore``, run the
script under each (``PYTHONPATH=<other checkout>``), alternately.

``--estimates`` prices whole estimates instead, at the flows' defaults (early stopping included): CPU seconds, epochs
and error per suite task given (default: all 40) and seed, and their totals. Two versions run
side by side (one process each, under the same load) compare like with like.

    .venv/bin/python benchmarks/bench_flow_epoch.py --repeats 2
    .venv/bin/python benchmarks/bench_flow_epoch.py --estimates --seeds 0 1
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ibcore.comparison import solved
from ibcore.estimators import make
from ibcore.tasks import SUITE, suite_task

TASKS = ("normal-dense-1x1", "normal-dense-2x2", "normal-dense-3x3", "normal-dense-5x5", "normal-dense-10x10",
         "normal-dense-25x25", "normal-dense-50x50")  # fmt: skip


def per_epoch(name: str, task: str, repeats: int) -> float:
    x, y, _ = suite_task(task, 5000, seed=0)
    best = float("inf")
    for _ in range(repeats):  # the least of the repeats: the run least disturbed by other processes
        cost = []
        for epochs in (2, 12):
            start = time.process_time()
            make(name, seed=0, epochs=epochs, patience=0).estimate(x, y)
            cost.append(time.process_time() - start)
        best = min(best, (cost[1] - cost[0]) / 10)
    return best


def estimates(names: list[str], tasks: list[str], seeds: list[int]) -> None:
    print(f"{'task':>24s} {'seed':>4s} {'estimator':>14s} {'CPU s':>7s} {'epochs':>6s} {'truth':>6s} {'value':>7s}")
    total = {e: [0.0, 0, 0, 0] for e in names}  # CPU seconds, epochs, solved, runs
    for task in tasks:
        for seed in seeds:
            x, y, truth = suite_task(task, 5000, seed=seed)
            for e in names:
                start = time.process_time()
                r = make(e, seed=seed).estimate(x, y)
                cpu, epochs = time.process_time() - start, r.diagnostics["epochs_run"]
                t = total[e]
                t[0], t[1], t[2], t[3] = t[0] + cpu, t[1] + epochs, t[2] + solved(r.value, truth), t[3] + 1
                print(f"{task:>24s} {seed:4d} {e:>14s} {cpu:7.2f} {epochs:6d} {truth:6.3f} {r.value:7.3f}", flush=True)
    for e, (cpu, epochs, ok, runs) in total.items():
        print(f"{e}: {runs} estimates, {cpu:.0f} CPU s ({cpu / runs:.1f} per estimate), {epochs} epochs, "
              f"{ok} solved")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--estimators", nargs="+", default=["mienf", "tridiag-mienf"])
    parser.add_argument("--estimates", action="store_true", help="whole estimates at the defaults instead")
    parser.add_argument("--tasks", nargs="+", default=None, help="suite tasks for --estimates (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    make("mienf", epochs=1, patience=0).estimate(*suite_task("normal-dense-2x2", 500, seed=0)[:2])  # imports
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread")
    if args.estimates:
        estimates(args.estimators, args.tasks or list(SUITE), args.seeds)
        return 0
    print(f"{'task':>20s} " + " ".join(f"{e:>14s}" for e in args.estimators) + "   (CPU seconds per epoch)")
    for task in TASKS:
        print(f"{task:>20s} " + " ".join(f"{per_epoch(e, task, args.repeats):14.4f}" for e in args.estimators),
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
