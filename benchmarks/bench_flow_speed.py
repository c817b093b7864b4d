"""The flows' cost against their accuracy on the suite, at several training settings (issue 21, item 4).

Runs N-MIENF and tridiag-N-MIENF on the 40 tasks of ``ibcore.tasks.SUITE`` (5,000 samples) at each configuration
``batch_size:lr`` given, one thread, and prints per configuration and estimator: tasks solved (within
max(0.1, 0.1 I) nats), mean absolute error and summed seconds, on the tasks every configuration has finished (so a
partial run compares like with like). Each configuration keeps its finished runs in
``<checkpoints>/flow_speed_<batch>_<lr>.json`` (rewritten atomically) and continues from there when started again.
Configurations run one after the other in this process; start one process per configuration to run them side by
side (the seconds are then wall times under the same load).

    .venv/bin/python benchmarks/bench_flow_speed.py --configs 512:5e-4 1024:5e-4 1024:1e-3 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from ibcore.comparison import run_suite, solved

ESTIMATORS = ("mienf", "tridiag-mienf")


def _path(folder: Path, config: str) -> Path:
    batch, lr = config.split(":")
    return folder / f"flow_speed_{batch}_{lr}.json"


def _load(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return data["records"] if isinstance(data, dict) else data


def report(folder: Path, configs: list[str]) -> str:
    runs = {c: {(r["task"], r["seed"], r["estimator"]): r for r in _load(_path(folder, c))} for c in configs}
    common = set.intersection(*(set(r) for r in runs.values())) if runs else set()
    lines = [f"tasks finished by every configuration: {len(common)} runs "
             f"({len({k[0] for k in common})} tasks)", f"{'config':>12s} {'estimator':>14s} {'solved':>8s} "
             f"{'mean |err|':>11s} {'seconds':>9s}"]  # fmt: skip
    for c in configs:
        for e in ESTIMATORS:
            keys = [k for k in common if k[2] == e]
            if not keys:
                continue
            rs = [runs[c][k] for k in keys]
            ok = sum(solved(r["value"], r["true_mi"]) for r in rs)
            err = sum(abs(r["value"] - r["true_mi"]) for r in rs) / len(rs)
            lines.append(f"{c:>12s} {e:>14s} {ok:>4d}/{len(rs):<3d} {err:11.3f} {sum(r['seconds'] for r in rs):9.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["512:5e-4", "1024:5e-4"], help="batch_size:lr")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("results/flowspeed"))
    parser.add_argument("--report-only", action="store_true", help="print the comparison of what is finished")
    args = parser.parse_args(argv)
    for c in args.configs:
        batch, lr = c.split(":")  # a malformed config fails here, before any training
        int(batch), float(lr)
    torch.set_num_threads(1)
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for c in args.configs:
            batch, lr = c.split(":")
            specs = {e: (e, {"batch_size": int(batch), "lr": float(lr)}) for e in ESTIMATORS}
            run_suite(specs, n=5000, seeds=args.seeds, checkpoint=_path(args.checkpoints, c))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread")
    print(report(args.checkpoints, args.configs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
