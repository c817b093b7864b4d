"""One network, every lens: does a layer compress, by one stated rule, whatever estimator measured it.

The compression debate (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018; Goldfeld et al. 2019; Lorenzen et al. 2022;
Butakov et al. 2024) is about one quantity, the fall of I(X;T) after its peak, seen through different lenses. Here a
*lens* is a label of information-plane records (:class:`~ibcore.infoplane.InformationPlane`): an estimator, on the
network it applies to. :func:`fall_verdict` decides, for one lens and layer, from the networks of several seeds:

- the peak epoch ``e*`` is where the mean over networks of I(X;T) is highest; each network's *fall* is its value at
  ``e*`` minus its value at the last epoch (paired, so that what differs between networks cancels);
- with ``d`` the mean fall, ``se`` its standard error over networks and ``tau = min_fall * peak`` the smallest fall
  that counts (a fraction of the peak, so that the rule reads the same in bits or nats and for every lens):
  **compresses** when ``d - n_se * se > tau``, **does not** when ``d + n_se * se < tau``, else **cannot tell**
  (also with fewer than two networks).

:func:`verdict_table` applies it to every (setting, lens, layer).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .infoplane import select

__all__ = ["VERDICTS", "fall_verdict", "verdict_table"]

VERDICTS = ("compresses", "does not", "cannot tell")


def _check_rule(n_se, min_fall) -> None:
    for name, v in (("n_se", n_se), ("min_fall", min_fall)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if n_se <= 0:
        raise ValueError(f"n_se must be > 0, got {n_se!r}")
    if not 0 <= min_fall < 1:
        raise ValueError(f"min_fall must be in [0, 1), got {min_fall!r}")


def fall_verdict(records: Iterable[dict], *, estimator: str, layer: int, value: str = "i_xt", n_se: float = 2.0,
                 min_fall: float = 0.05) -> dict:  # fmt: skip
    """Does one layer compress through one lens? The rule of the module docstring, with the numbers behind it.

    Arguments:
        records: Information-plane records (``epoch``, ``model``, ``layer``, ``estimator`` and ``value``).
        estimator: The lens (the records' ``estimator`` label).
        layer: The layer (from 1).
        value: The quantity (``"i_xt"``).
        n_se: Standard errors of the mean fall that the decision must clear.
        min_fall: The smallest fall that counts, as a fraction of the peak.

    Returns:
        ``{"verdict", "peak", "peak_epoch", "final", "fall", "fall_se", "threshold", "n", "falls"}`` in the records'
        unit (``falls``: per network, in the order of their ``model`` labels). Only epochs that every network was
        measured at are used.

    Example:
        >>> recs = [{"estimator": "b", "layer": 1, "epoch": e, "model": m, "i_xt": v + 0.01 * m * e / 100}
        ...         for e, v in [(0, 1.0), (10, 3.0), (100, 2.0)] for m in range(3)]
        >>> v = fall_verdict(recs, estimator="b", layer=1)
        >>> v["verdict"], v["peak_epoch"], round(v["fall"], 3)
        ('compresses', 10, 0.991)
    """
    _check_rule(n_se, min_fall)
    rows = select(records, estimator=estimator, layer=layer)
    if not rows:
        raise ValueError(f"no records with estimator={estimator!r} and layer={layer!r}")
    curves: dict = {}
    for r in rows:
        v = r.get(value)
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"record of model {r['model']!r} at epoch {r['epoch']} has {value}={v!r}")
        curves.setdefault(r["model"], {})[r["epoch"]] = float(v)
    models = sorted(curves, key=str)
    epochs = sorted(set.intersection(*(set(c) for c in curves.values())))
    if not epochs:
        raise ValueError(f"estimator={estimator!r}, layer={layer!r}: no epoch was measured for every network")
    table = np.array([[curves[m][e] for e in epochs] for m in models])  # (models, epochs)
    mean = table.mean(axis=0)
    i_peak = int(np.argmax(mean))
    falls = table[:, i_peak] - table[:, -1]
    n = len(falls)
    fall = float(falls.mean())
    se = float(falls.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    threshold = min_fall * abs(float(mean[i_peak]))
    if n < 2:
        verdict = "cannot tell"
    elif fall - n_se * se > threshold:
        verdict = "compresses"
    elif fall + n_se * se < threshold:
        verdict = "does not"
    else:
        verdict = "cannot tell"
    return {"verdict": verdict, "peak": float(mean[i_peak]), "peak_epoch": epochs[i_peak], "final": float(mean[-1]),
            "fall": fall, "fall_se": se, "threshold": threshold, "n": n, "falls": [float(f) for f in falls]}


def verdict_table(runs: Mapping[str, Sequence[dict]], lenses: Sequence[str], *, layers: Sequence[int] | None = None,
                  value: str = "i_xt", n_se: float = 2.0, min_fall: float = 0.05) -> list[dict]:  # fmt: skip
    """:func:`fall_verdict` for every setting, lens and layer: one row each, ``{"setting", "lens", "layer", ...}``.

    Arguments:
        runs: ``{setting: records}`` (e.g. ``{"tanh": ..., "relu": ...}``); each setting's records may hold the
            lenses of several networks (float, quantized, noisy) concatenated.
        lenses: The ``estimator`` labels, in the order of the table. A lens absent from a setting's records is
            skipped for that setting (e.g. a lens that applies to one activation only).
        layers: The layers (default: every layer in the records); a lens that did not measure one of them (sample
            propagation measures the hidden layers only) has no row for it.
        value, n_se, min_fall: As in :func:`fall_verdict`.
    """
    _check_rule(n_se, min_fall)
    if not runs:
        raise ValueError("runs must hold at least one setting")
    runs = {setting: list(records) for setting, records in runs.items()}
    labels = {r["estimator"] for records in runs.values() for r in records}
    unknown = [lens for lens in lenses if lens not in labels]
    if unknown:
        raise ValueError(f"lenses {unknown} are in no setting's records (labels: {sorted(labels)})")
    table = []
    for setting, records in runs.items():
        present = {r["estimator"] for r in records}
        for lens in lenses:
            if lens not in present:
                continue
            rows = select(records, estimator=lens)
            measured = sorted({r["layer"] for r in rows})
            for layer in measured if layers is None else [l for l in layers if l in measured]:
                v = fall_verdict(rows, estimator=lens, layer=layer, value=value, n_se=n_se, min_fall=min_fall)
                table.append({"setting": setting, "lens": lens, "layer": layer, **v})
    return table
