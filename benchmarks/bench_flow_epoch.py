"""CPU seconds per training epoch of the flows (N-MIENF, tridiag-N-MIENF) at the suite's dimensions, N = 5,000.

The cost of one epoch (the training steps and the held-out evaluation) is the CPU time of an estimate with
``epochs = 12`` minus that of one with ``epochs = 2``, over 10: the set-up (split, flows built, base started) cancels.
It depends on the dimensions only, not on the distribution, so one Gaussian task per dimension stands for the suite;
together with the epochs each run trains (``bench_flow_stopping.py``) it gives the suite's CPU time. Process CPU
time, one thread: comparable between runs under different loads. To compare two versions of ``ibcore``, run the
script under each (``PYTHONPATH=<other checkout>``), alternately.

    .venv/bin/python benchmarks/bench_flow_epoch.py --repeats 2
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ibcore.estimators import make
from ibcore.tasks import suite_task

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--estimators", nargs="+", default=["mienf", "tridiag-mienf"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    make("mienf", epochs=1, patience=0).estimate(*suite_task("normal-dense-2x2", 500, seed=0)[:2])  # imports
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread")
    print(f"{'task':>20s} " + " ".join(f"{e:>14s}" for e in args.estimators) + "   (CPU seconds per epoch)")
    for task in TASKS:
        print(f"{task:>20s} " + " ".join(f"{per_epoch(e, task, args.repeats):14.4f}" for e in args.estimators),
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
