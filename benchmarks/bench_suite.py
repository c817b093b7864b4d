"""Which estimator solves which task: chosen estimators on the 40 tasks of ``ibcore.tasks.SUITE``, over seeds.

A task is solved when the estimate is within max(0.1, 0.1 I) nats of the truth I (``ibcore.comparison.solved``).
Prints, per family and overall, how many tasks each estimator solves on each seed and over all runs, the median
seconds per estimate, and the tasks ``auto`` misses. Every finished run is kept in a JSON file (``--checkpoint``,
rewritten atomically), so a long run resumes where it stopped.

    .venv/bin/python benchmarks/bench_suite.py                          # gaussian, ksg, copula, entropy-mi, auto
    .venv/bin/python benchmarks/bench_suite.py --estimators mienf tridiag-mienf mine --checkpoint suite_nn.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import ibcore.estimators as est
from ibcore.comparison import run_suite, solved, suite_counts
from ibcore.tasks import SUITE

CHEAP = ["gaussian", "ksg", "copula", "entropy-mi", "auto"]


def report(records, estimators, seeds) -> str:
    counts = suite_counts(records)
    families = list(dict.fromkeys(t.family for t in SUITE.values()))
    width = max(map(len, families)) + 2
    lines = [f"solved within max(0.1, 0.1 I) nats: tasks per seed (seeds {'/'.join(map(str, seeds))}), "
             "then (all runs)", f"{'family':{width}s}{'tasks':>6s}" + "".join(f"{e:>18s}" for e in estimators)]
    for fam in families + ["all"]:
        tasks = sum(1 for t in SUITE.values() if fam in ("all", t.family))
        cells = []
        for e in estimators:
            c = counts.get((fam, e), {"solved": 0, "runs": 0, "per_seed": {}})
            per = "/".join(str(c["per_seed"].get(s, 0)) for s in seeds)
            cells.append(f"{per} ({c['solved']}/{c['runs']})")
        lines.append(f"{fam:{width}s}{tasks:6d}" + "".join(f"{c:>18s}" for c in cells))
    lines.append(f"{'median s':{width}s}{'':6s}" + "".join(
        f"{statistics.median([r['seconds'] for r in records if r['estimator'] == e] or [float('nan')]):18.2f}"
        for e in estimators))  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", nargs="+", default=CHEAP, choices=est.available("mi"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    records = run_suite({e: (e, {}) for e in args.estimators}, n=args.n, seeds=args.seeds, device=args.device,
                        checkpoint=args.checkpoint)  # fmt: skip
    print(f"{len(SUITE)} tasks, n = {args.n}, {platform.node()} ({os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads), {time.perf_counter() - started:.0f} s in this call")
    print(report(records, args.estimators, args.seeds))
    if "auto" in args.estimators:
        misses = sorted({f"{r['task']} (seed {r['seed']}: {r['value']:.2f} for {r['true_mi']:.2f})" for r in records
                         if r["estimator"] == "auto" and not solved(r["value"], r["true_mi"])})  # fmt: skip
        print("auto misses:", "; ".join(misses) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
