"""The flows' early stopping replayed on the suite: how many epochs each stopping rule spends and what it returns.

Runs N-MIENF and tridiag-N-MIENF (``--params``: their parameters, default their defaults) on the 40 tasks of
``ibcore.tasks.SUITE`` (5,000 samples), one thread, keeping every run's held-out criterion and value per epoch
(``diagnostics["criterion"]`` and ``["curve"]``) and its CPU time. The minibatch order and the arithmetic do not depend
on the stopping rule, so any rule that stops no later than the runs' own (patience P epochs without an improvement of
1e-3 nats, at most 200 epochs) is replayed exactly from these curves: the epoch it stops at and the value it would
return (the held-out value at that epoch; with ``best``, at the epoch of the best criterion so far, i.e. the network
restored there). The report prints, per rule and estimator, tasks solved (within max(0.1, 0.1 I) nats), mean absolute
error, epochs trained and the seconds they cost (each run's CPU seconds, or wall seconds where a file has no CPU
times, scaled by the share of its epochs the rule trains), per family with ``--families``. ``--baseline FILE`` first
prints another file's runs (e.g. an older version's) at their own rule, both restricted to the runs they share.

    .venv/bin/python benchmarks/bench_flow_stopping.py --seeds 0 1 2 --file flow_curves_new.json
    .venv/bin/python benchmarks/bench_flow_stopping.py --seeds 0 1 2 --report-only --file flow_curves_new.json \\
        --baseline flow_curves_old.json --families

Finished runs are kept in ``<checkpoints>/<file>`` (rewritten atomically): a killed run continues there.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import defaultdict
from pathlib import Path

import torch

from ibcore.comparison import run_suite, solved
from ibcore.estimators._trained import MIN_IMPROVEMENT
from ibcore.estimators.gaussian import gaussian_mi_bias

ESTIMATORS = ("mienf", "tridiag-mienf")
RULES = [("patience", p, MIN_IMPROVEMENT, best) for p in (30, 20, 15, 10, 5) for best in (False, True)]
RULES += [("patience", p, d, False) for p in (10, 15) for d in (1e-2, 3e-3)]
RULES += [("cap", e, None, best) for e in (50, 100) for best in (False, True)]


def replay(record: dict, rule, bias_correction: bool = False) -> tuple[int, float]:
    """The epoch a rule stops at and the value it returns, from a run stopped by its own (a later) rule; with
    ``bias_correction`` N-MIENF's held-out Gaussian MI less its finite-sample bias (a constant of the run)."""
    d = record["result"]["diagnostics"]
    shift = 0.0
    if bias_correction and record["estimator"] == "mienf" and not record["result"]["params"].get("bias_correction"):
        shift = gaussian_mi_bias(d["n_held_out"], d["latent"], d["latent"])
    own = record["result"]["params"]["patience"]
    if rule[0] == "patience" and own and rule[1] > own and d["stopped_early"]:
        raise ValueError(f"rule {rule} may stop later than the run (patience {own}): it cannot be replayed")
    stop, value = _replay(d, rule)
    return stop, value - shift


def _replay(d: dict, rule) -> tuple[int, float]:
    criteria, values = d["criterion"], d["curve"]
    kind, arg, delta, best = rule
    stop = len(values)
    top, since, at = -float("inf"), 0, 0
    for epoch, c in enumerate(criteria):  # epoch 0 is the untrained network
        if c > top + (delta or 0.0):
            top, since, at = c, 0, epoch
        else:
            since += 1
        if epoch == 0:
            continue
        if (kind == "patience" and since >= arg) or (kind == "cap" and epoch >= arg):
            stop = epoch
            break
    if best:
        return stop, values[at - 1] if at else d["curve_start"]
    return stop, values[stop - 1]


def _label(rule, own=None) -> str:
    kind, arg, delta, best = rule
    s = f"patience {arg}, delta {delta:g}" if kind == "patience" else f"at most {arg} epochs"
    return s + (", best" if best else "") + (" (the runs' own)" if rule == own else "")


def _key(r: dict) -> tuple:
    return r["task"], r["seed"], r["estimator"]


def report(records: list[dict], families: bool = False, bias_correction: bool = False, rules=RULES) -> str:
    runs = [r for r in records if r.get("result") and "criterion" in r["result"]["diagnostics"]]
    own = {r["result"]["params"]["patience"] for r in runs}
    own = ("patience", own.pop(), MIN_IMPROVEMENT, False) if len(own) == 1 else None
    cpu = all("cpu_seconds" in r for r in runs)
    lines = [f"runs with curves: {len(runs)} ({len({(r['task'], r['seed']) for r in runs})} task-seeds)",
             f"{'rule':>44s} {'estimator':>14s} {'solved':>9s} {'mean |err|':>11s} {'epochs':>7s} "
             f"{'CPU s' if cpu else 'wall s':>8s}"]  # fmt: skip
    for rule in rules:
        for e in ESTIMATORS:
            rs = [r for r in runs if r["estimator"] == e]
            try:
                replayed = [replay(r, rule, bias_correction) for r in rs]
            except ValueError:  # stops later than the runs did
                continue
            if not rs:
                continue
            ok, err, epochs, secs = 0, 0.0, 0, 0.0
            by_family = defaultdict(lambda: [0, 0])
            for r, (stop, value) in zip(rs, replayed):
                hit = solved(value, r["true_mi"])
                ok, err, epochs = ok + hit, err + abs(value - r["true_mi"]), epochs + stop
                spent = r["cpu_seconds"] if cpu else r["seconds"]
                secs += spent * stop / max(1, r["result"]["diagnostics"]["epochs_run"])
                by_family[r["family"]][0] += hit
                by_family[r["family"]][1] += 1
            lines.append(f"{_label(rule, own):>44s} {e:>14s} {ok:>4d}/{len(rs):<4d} {err / len(rs):11.3f} "
                         f"{epochs:7d} {secs:8.0f}")  # fmt: skip
            if families:
                lines.append(" " * 45 + "  ".join(f"{f} {a}/{b}" for f, (a, b) in sorted(by_family.items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("results/flowspeed"))
    parser.add_argument("--file", default="flow_curves.json", help="the runs' file in the checkpoints folder")
    parser.add_argument("--params", type=json.loads, default={},
                        help="the flows' parameters as JSON, e.g. '{\"patience\": 15}' (default: their defaults)")
    parser.add_argument("--report-only", action="store_true", help="print the replay of what is finished")
    parser.add_argument("--families", action="store_true", help="also the tasks solved per family")
    parser.add_argument("--bias-correction", action="store_true",
                        help="replay N-MIENF runs of the plug-in estimate as if bias-corrected")
    parser.add_argument("--baseline", help="another runs' file in the checkpoints folder, reported first at its own "
                                           "rule; both restricted to the runs they share")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    path = args.checkpoints / args.file
    if args.report_only:
        records = json.loads(path.read_text()) if path.is_file() else []
    else:
        records = run_suite({e: (e, dict(args.params)) for e in ESTIMATORS}, n=5000, seeds=args.seeds,
                            checkpoint=path)  # fmt: skip
    records = [r for r in records if r["seed"] in args.seeds]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one thread")
    if args.baseline:
        base = [r for r in json.loads((args.checkpoints / args.baseline).read_text()) if r["seed"] in args.seeds]
        shared = {_key(r) for r in base if r.get("result")} & {_key(r) for r in records if r.get("result")}
        base, records = [r for r in base if _key(r) in shared], [r for r in records if _key(r) in shared]
        own = {r["result"]["params"]["patience"] for r in base}
        print(f"baseline {args.baseline}, at its own rule:")
        print(report(base, args.families, False, [("patience", p, MIN_IMPROVEMENT, False) for p in sorted(own)]))
        print(f"{args.file}:")
    print(report(records, args.families, args.bias_correction))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
