"""Which estimator solves which task: every chosen estimator on the 40 tasks of ``ibcore.tasks.SUITE``.

A task is solved when the estimate is within max(0.1, 0.1 I) nats of the truth I. Prints, per family and overall,
how many tasks each estimator solves on each seed and over all seeds, and the median seconds per estimate.
Every finished run is kept in a JSON file (``--checkpoint``, rewritten atomically), so a long run resumes.

    .venv/bin/python benchmarks/bench_suite.py                          # gaussian, ksg, copula, entropy-mi, auto
    .venv/bin/python benchmarks/bench_suite.py --estimators mienf tridiag-mienf mine --checkpoint suite_nn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import ibcore.estimators as est
from ibcore._io import write_atomic
from ibcore.tasks import SUITE, suite_task

CHEAP = ["gaussian", "ksg", "copula", "entropy-mi", "auto"]


def solved(value: float, truth: float) -> bool:
    return abs(value - truth) <= max(0.1, 0.1 * truth)


def run(estimators, seeds, n, checkpoint: Path | None, device=None) -> list[dict]:
    records = json.loads(checkpoint.read_text()) if checkpoint and checkpoint.is_file() else []
    done = {(r["task"], r["estimator"], r["seed"]) for r in records}
    for name, task in SUITE.items():
        for seed in seeds:
            todo = [e for e in estimators if (name, e, seed) not in done]
            if not todo:
                continue
            x, y, truth = suite_task(name, n, seed=seed)
            if device is not None:
                x, y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
            for label in todo:
                e = est.make(label)
                if "seed" in e.param_names():
                    e = e.clone(seed=seed)
                cap = est.capabilities(label)["max_dim"]
                if cap is not None and max(task.dim_x, task.dim_y) > cap:
                    value, seconds, note = float("nan"), 0.0, f"not run: wider than its max_dim {cap}"
                else:
                    t0 = time.perf_counter()
                    try:
                        r = e.estimate(x, y)
                        value, note = r.value, r.diagnostics.get("chosen", "")
                    except (ValueError, FloatingPointError) as err:
                        value, note = float("nan"), f"error: {err}"
                    seconds = time.perf_counter() - t0
                records.append({"task": name, "family": task.family, "estimator": label, "seed": seed, "n": n,
                                "true_mi": truth, "value": value, "seconds": seconds, "note": note})  # fmt: skip
                if checkpoint:
                    write_atomic(checkpoint, json.dumps(records))
    return records


def report(records, estimators, seeds) -> str:
    families = list(dict.fromkeys(t.family for t in SUITE.values()))
    width = max(map(len, families)) + 2
    head = f"{'family':{width}s}{'tasks':>6s}" + "".join(f"{e:>14s}" for e in estimators)
    lines = [f"solved within max(0.1, 0.1 I) nats: tasks per seed (seeds {list(seeds)}), then all runs", head]
    by = {(r["task"], r["estimator"], r["seed"]): r for r in records}

    def count(names, e, seed):
        return sum(solved(by[t, e, seed]["value"], by[t, e, seed]["true_mi"]) for t in names if (t, e, seed) in by)

    for fam in families + ["all"]:
        names = [n for n, t in SUITE.items() if fam in ("all", t.family)]
        cells = []
        for e in estimators:
            per = [count(names, e, s) for s in seeds]
            cells.append(f"{'/'.join(map(str, per))} ({sum(per)}/{len(names) * len(seeds)})")
        lines.append(f"{fam:{width}s}{len(names):6d}" + "".join(f"{c:>14s}" for c in cells))
    lines.append(f"{'median s':{width}s}{'':6s}" + "".join(
        f"{statistics.median([r['seconds'] for r in records if r['estimator'] == e] or [float('nan')]):14.2f}"
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
    records = run(args.estimators, args.seeds, args.n, args.checkpoint, args.device)
    print(f"{len(SUITE)} tasks, n = {args.n}, {platform.node()} ({os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads), {time.perf_counter() - started:.0f} s")
    print(report(records, args.estimators, args.seeds))
    misses = sorted({r["task"] for r in records if r["estimator"] == "auto" and not solved(r["value"], r["true_mi"])})
    if "auto" in args.estimators:
        print("auto misses:", ", ".join(misses) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
