"""Estimated against true MI: registered estimators run over known-MI tasks and levels, as tidy records.

Used by the MIENF notebook and by ``benchmarks/bench_estimators.py``. Each record is a dict
``{"task", "level", "true_mi", "estimator", "seed", "value", "std", "seconds", "epochs_run", "not_converged",
"bound", "warnings", "result"}``; ``estimator`` is the label the caller chose (several labels may share one
registered name), ``bound`` the estimator's ``diagnostics["bound"]`` (InfoNCE's ln B; ``None`` where it has none) and
``result`` the whole :class:`~ibcore.estimators.MIEstimate` as a dict (params, device, diagnostics).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import estimators as est
from ._io import write_atomic
from .estimators._validation import image_rows
from .tables import group_by
from .tasks import TASKS, sample_task

__all__ = ["compare", "summarise"]


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

    Example:
        >>> r = compare({"gauss": ("gaussian", {})}, ["gaussian"], [1.0], n=2000)
        >>> r[0]["estimator"], r[0]["true_mi"], round(r[0]["value"], 1)
        ('gauss', 1.0, 1.0)
    """
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"tasks must be names from {list(TASKS)}, got {t!r}")
    built = {}
    for label, spec in estimators.items():
        if isinstance(spec, est.MIEstimator):
            built[label] = spec
        elif isinstance(spec, tuple) and len(spec) == 2 and spec[0] in est.available("mi"):
            built[label] = est.make(spec[0], **dict(spec[1]))
        else:
            raise ValueError(f"estimators[{label!r}] must be an MI estimator or (registered MI estimator name, "
                             f"params), got {spec!r}; names: {est.available('mi')}")  # fmt: skip
    for v in levels:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"levels must be finite MI values >= 0, got {list(levels)}")
    records = [] if records is None else records
    key = lambda r: (r["task"], r["level"], r["estimator"], r["seed"])  # noqa: E731
    done = {key(r) for r in records}
    if checkpoint:
        checkpoint = Path(checkpoint)
        if checkpoint.is_file():
            for r in json.loads(checkpoint.read_text()):
                if key(r) not in done:
                    records.append(r)
                    done.add(key(r))
    for task in tasks:
        for level in levels:
            for seed in seeds:
                todo = [label for label in estimators if (task, float(level), label, seed) not in done]
                if not todo:
                    continue
                x, y, truth = sample_task(task, n, float(level), dim=dim, size=size, seed=seed)
                if device is not None:
                    import torch

                    x, y = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in (x, y))
                for label in todo:
                    e = built[label]
                    e = e.clone(seed=seed) if "seed" in e.param_names() else e.clone()
                    a, b = (x, y) if e.images else (image_rows(x)[0], image_rows(y)[0])
                    r = e.estimate(a, b)
                    d = r.diagnostics
                    records.append({
                        "task": task, "level": float(level), "true_mi": truth, "estimator": label, "seed": seed,
                        "value": r.value, "std": r.std, "seconds": r.seconds,
                        "epochs_run": d.get("epochs_run"), "not_converged": d.get("not_converged"),
                        "bound": d.get("bound"), "warnings": list(r.warnings), "result": r.to_dict(),
                    })  # fmt: skip
                    if checkpoint:
                        write_atomic(checkpoint, json.dumps(records, default=repr))
    return records


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
