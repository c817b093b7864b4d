"""Estimated against true MI: registered estimators run over known-MI tasks and levels, as tidy records.

Used by the MIENF notebook and by ``benchmarks/bench_estimators.py``. Each record is a dict
``{"task", "level", "true_mi", "estimator", "seed", "value", "std", "seconds", "cpu_seconds", "epochs_run",
"not_converged", "bound", "warnings", "result"}``; ``estimator`` is the label the caller chose (several labels may
share one registered name), ``cpu_seconds`` the process's CPU time for the estimate (all its threads), ``bound``
the estimator's ``diagnostics["bound"]`` (InfoNCE's ln B; ``None`` where it has none), ``training_value`` a trained
estimator's value on its own training rows (``None`` for the others) and ``result`` the whole
:class:`~ibcore.estimators.MIEstimate` as a dict (params, device, diagnostics).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import estimators as est
from ._io import write_atomic
from .estimators._validation import image_rows
from .tables import group_by
from .tasks import SUITE, TASKS, sample_task, suite_task

__all__ = ["compare", "summarise", "rmse", "run_suite", "suite_counts", "solved"]


def compare(
    estimators: Mapping[str, tuple[str, Mapping[str, Any]]],
    tasks: Sequence[str],
    levels: Sequence[float],
    *,
    n: int,
    seeds: Sequence[int] = (0,),
    dim: int = 2,
    size: int = 16,
    records: list[dict] | None = None,
    device=None,
    checkpoint: str | os.PathLike | None = None,
    ci: float | None = None,
    resamples: int = 20,
) -> list[dict]:
    """Run every estimator on every task, MI level and seed.

    Arguments:
        estimators: ``{label: (registered name, parameters)}`` or ``{label: estimator}``; each run gets a clone
            (the estimators passed in are never changed) whose ``seed``, where it has one, is the run's seed.
            Estimators that declare ``images`` get image tasks as images, the others flattened to rows.
        tasks: Names from :data:`ibcore.tasks.TASKS`.
        levels: MI levels in nats (the Student task's truth is higher: see :func:`ibcore.tasks.sample_task`).
        n: Samples per data set; ``dim``: components per side of vector tasks; ``size``: image side.
        seeds: Each seed draws its own data set and initialises the trained estimators.
        records: A list to append to. Runs already in it (same task, level, estimator and seed) are skipped, so
            passing the list of an interrupted call resumes it; finished runs are appended as they finish.
        device: Moves the data there (``None``: NumPy on the CPU).
        checkpoint: A JSON file of finished runs: read at the start (its runs are added to ``records`` and not run
            again) and rewritten atomically after every run, so that a long comparison killed at any point loses
            only the run in progress. Several calls may share one file and one ``records`` list. Values that are
            not JSON (a fitted compressor among an estimator's parameters) are kept in ``result`` as their repr.
        ci, resamples: Also a confidence interval at this level for every estimate (``record["ci"]``, ``[low,
            high]``; see :meth:`ibcore.estimators.MIEstimator.estimate`).

    Example:
        >>> r = compare({"gauss": ("gaussian", {})}, ["gaussian"], [1.0], n=2000)
        >>> r[0]["estimator"], r[0]["true_mi"], round(r[0]["value"], 1)
        ('gauss', 1.0, 1.0)
    """
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"tasks must be names from {list(TASKS)}, got {t!r}")
    built = _build(estimators)
    for v in levels:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"levels must be finite MI values >= 0, got {list(levels)}")
    records, done, checkpoint = _resume(records, checkpoint)
    for task in tasks:
        for level in levels:
            for seed in seeds:
                todo = [label for label in estimators if (task, float(level), label, seed) not in done]
                if not todo:
                    continue
                x, y, truth = sample_task(task, n, float(level), dim=dim, size=size, seed=seed)
                x, y = _to(x, y, device)
                for label in todo:
                    records.append({"task": task, "level": float(level), "true_mi": truth, "estimator": label,
                                    "seed": seed, "n": n, "dim": dim,
                                    **_run(built[label], seed, x, y, ci, resamples)})  # fmt: skip
                    if checkpoint:
                        write_atomic(checkpoint, json.dumps(records, default=repr))
    return records


def _build(estimators) -> dict:
    built = {}
    for label, spec in estimators.items():
        if isinstance(spec, est.MIEstimator):
            built[label] = spec
        elif isinstance(spec, tuple) and len(spec) == 2 and spec[0] in est.available("mi"):
            built[label] = est.make(spec[0], **dict(spec[1]))
        else:
            raise ValueError(f"estimators[{label!r}] must be an MI estimator or (registered MI estimator name, "
                             f"params), got {spec!r}; names: {est.available('mi')}")  # fmt: skip
    return built


def _resume(records, checkpoint):
    # the records so far, the keys of the runs done, the checkpoint file (its runs added to the records)
    records = [] if records is None else records
    done = {_key(r) for r in records}
    if checkpoint:
        checkpoint = Path(checkpoint)
        if checkpoint.is_file():
            for r in json.loads(checkpoint.read_text()):
                if _key(r) not in done:
                    records.append(r)
                    done.add(_key(r))
    return records, done, checkpoint


def _key(r):
    return (r["task"], r["level"], r["estimator"], r["seed"])


def _to(x, y, device):
    if device is None:
        return x, y
    import torch

    return tuple(torch.as_tensor(a, dtype=torch.float32, device=device) for a in (x, y))


def _run(e, seed, x, y, ci=None, resamples=20) -> dict:
    # one estimate by a clone of e (its seed set to the run's), as the fields of a record
    e = e.clone(seed=seed) if "seed" in e.param_names() else e.clone()
    a, b = (x, y) if e.images else (image_rows(x)[0], image_rows(y)[0])
    cpu = time.process_time()
    r = e.estimate(a, b) if ci is None else e.estimate(a, b, ci=ci, resamples=resamples, resample_seed=seed)
    cpu = time.process_time() - cpu
    d = r.diagnostics
    return {"value": r.value, "std": r.std, "ci": None if r.ci is None else list(r.ci), "seconds": r.seconds,
            "cpu_seconds": cpu,
            "chosen": d.get("chosen"), "epochs_run": d.get("epochs_run"),
            "not_converged": d.get("not_converged"), "bound": d.get("bound"),
            "training_value": d.get("training_value"), "warnings": list(r.warnings), "result": r.to_dict()}  # fmt: skip


def rmse(records: Sequence[dict], by: Sequence[str] = ("estimator", "dim")) -> list[dict]:
    """Root-mean-square error against the truth over every run (levels and seeds) of each group ``by`` (default:
    per estimator and dimension, the quantity of Butakov et al. 2024's Table 1), as records ``{**group, "rmse",
    "max_error", "runs"}`` in the order the groups first appear.

    Example:
        >>> rs = [{"estimator": "a", "dim": 1, "value": v, "true_mi": t} for v, t in ((1.0, 1.0), (2.0, 4.0))]
        >>> rmse(rs)[0]["rmse"] == math.sqrt(2.0)
        True
    """
    by = tuple(by)
    missing = sorted({k for r in records for k in by + ("value", "true_mi") if k not in r})
    if missing:
        raise ValueError(f"records must have the keys {list(by) + ['value', 'true_mi']}; missing {missing}")
    out = []
    for key, rs in group_by(records, by, sort=False).items():
        err = np.array([r["value"] - r["true_mi"] for r in rs], dtype=float)
        out.append({**dict(zip(by, key)), "rmse": float(np.sqrt(np.mean(err**2))),
                    "max_error": float(np.max(np.abs(err))), "runs": len(rs)})  # fmt: skip
    return out


def solved(value: float, truth: float) -> bool:
    """The benchmark's criterion: within max(0.1, 0.1 I) nats of the truth I (a NaN is not solved)."""
    return bool(abs(value - truth) <= max(0.1, 0.1 * truth))


def run_suite(
    estimators: Mapping[str, tuple[str, Mapping[str, Any]]],
    tasks: Sequence[str] | None = None,
    *,
    n: int,
    seeds: Sequence[int] = (0,),
    records: list[dict] | None = None,
    device=None,
    checkpoint: str | os.PathLike | None = None,
    ci: float | None = None,
    resamples: int = 20,
) -> list[dict]:
    """Every estimator on every task of the benchmark suite (:data:`ibcore.tasks.SUITE`) and seed.

    Arguments as :func:`compare` (``tasks``: suite names, default all 40). Records as :func:`compare`'s, with
    ``level`` the task's true MI and ``family`` its family; a task wider than an estimator's ``max_dim``, or one the
    estimator refuses with a ``ValueError`` (the weighted Kozachenko-Leonenko estimator needs k > d/4), is not run,
    and a run whose training diverges (``FloatingPointError``) fails; the record says which and why in ``skipped``
    (value NaN), so that tables count it as not solved. Resumable in the same
    way (``records``, ``checkpoint``).

    Example:
        >>> r = run_suite({"auto": ("auto", {})}, ["bimodal-1x1"], n=2000)
        >>> r[0]["family"], solved(r[0]["value"], r[0]["true_mi"])
        ('bimodal', True)
    """
    names = list(SUITE) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in SUITE]
    if unknown:
        raise ValueError(f"tasks must be names from ibcore.tasks.SUITE, got {unknown}")
    built = _build(estimators)
    records, done, checkpoint = _resume(records, checkpoint)
    for name in names:
        task = SUITE[name]
        for seed in seeds:
            todo = [label for label in estimators if (name, task.mi, label, seed) not in done]
            if not todo:
                continue
            x, y, truth = suite_task(name, n, seed=seed)
            x, y = _to(x, y, device)
            for label in todo:
                base = {"task": name, "family": task.family, "level": task.mi, "true_mi": truth, "estimator": label,
                        "seed": seed, "n": n}  # fmt: skip
                cap = built[label].max_dim
                skipped = None
                if cap is not None and max(task.dim_x, task.dim_y) > cap:
                    skipped = f"wider than its max_dim ({cap})"
                else:
                    try:
                        records.append({**base, **_run(built[label], seed, x, y, ci, resamples)})
                    except (ValueError, FloatingPointError) as err:  # refused (WKL's k in many dimensions), or
                        # a critic's training diverged: a result of the benchmark, recorded as not solved
                        skipped = f"{'refused' if isinstance(err, ValueError) else 'failed'}: {err}"
                if skipped is not None:
                    records.append({**base, "value": math.nan, "std": None, "ci": None, "seconds": 0.0,
                                    "skipped": skipped})  # fmt: skip
                if checkpoint:
                    write_atomic(checkpoint, json.dumps(records, default=repr))
    return records


def suite_counts(records: Sequence[dict]) -> dict[tuple[str, str], dict]:
    """Per (family, estimator), and per ("all", estimator): ``{"solved", "runs", "per_seed": {seed: solved}}``."""
    out: dict[tuple[str, str], dict] = {}
    for r in records:
        ok = solved(r["value"], r["true_mi"])
        for fam in (r["family"], "all"):
            c = out.setdefault((fam, r["estimator"]), {"solved": 0, "runs": 0, "per_seed": {}})
            c["solved"] += ok
            c["runs"] += 1
            c["per_seed"][r["seed"]] = c["per_seed"].get(r["seed"], 0) + ok
    return out


def summarise(records: Sequence[dict]) -> list[dict]:
    """Per (task, estimator, level): mean estimate, bias, mean absolute error and variance over seeds, and the
    mean wall time, as records ``{"task", "estimator", "level", "true_mi", "mean", "bias", "mae", "var",
    "seconds", "runs"}``."""
    out = []
    for (task, label, level), rs in group_by(records, ("task", "estimator", "level"), sort=False).items():
        v = np.array([r["value"] for r in rs])
        truth = rs[0]["true_mi"]
        out.append({
            "task": task, "estimator": label, "level": level, "true_mi": truth, "mean": float(v.mean()),
            "bias": float(v.mean() - truth), "mae": float(np.abs(v - truth).mean()),
            "var": float(v.var(ddof=1)) if len(v) > 1 else math.nan,
            "seconds": float(np.mean([r["seconds"] for r in rs])), "runs": len(rs),
        })  # fmt: skip
    return out
