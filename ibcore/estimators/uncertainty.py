"""Confidence intervals and the shuffle baseline behind ``estimate(..., ci=0.95, shuffles=K)`` of every estimator.

Which interval an estimate gets follows from what the method knows (``Estimate.ci_method``):

- ``"exact"``: a weighted finite population (``p`` given): the value is computed, not estimated; the interval is
  the point.
- ``"standard error"``: the method has its own standard error (sample propagation's Monte Carlo error, the trained
  estimators' spread over held-out rows): ``value +- z * std``.
- ``"subsampling"``: every other estimator (k-NN, binning, plug-in, Gaussian, through compression): the
  delete-d jackknife over ``resamples`` random half-samples (Shao & Wu 1989): with subsamples of ``m`` of the ``n``
  rows, ``Var = m / (n - m) * mean((theta_b - mean theta)^2)``, and the interval ``value +- t * sqrt(Var)``, ``t``
  Student's quantile for ``resamples - 1`` degrees of freedom (the variance is estimated from that many). Rows stay
  paired (x and y are subsampled together) and subsamples are drawn without replacement, so k-NN estimators never
  see duplicated rows (which a bootstrap would give them, with infinite estimates).

The interval covers the estimator's sampling spread, not its bias: a k-NN estimate biased low at high MI has an
interval that may miss the truth however many samples it has (``../shared/research/estimators.md``).

The shuffle baseline (``shuffles = K``, MI estimators only) re-estimates with the rows of y permuted K times: the
dependence is destroyed, the estimator's own behaviour on independent data is kept. ``diagnostics["shuffle_p"]`` is
``(1 + #{shuffled >= value}) / (K + 1)``, the permutation p-value of "no dependence", and an estimate that does not
exceed its shuffles at ``1 - ci`` (0.05 without ``ci``) gets a warning. (A plug-in I(X;T) against input ids, every
input its own symbol, is H(T) however the ids are paired: its shuffles equal it, and the warning says that such an
estimate carries no evidence of dependence.)
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import torch

__all__ = ["check_ci", "interval", "shuffle_baseline"]


def check_ci(ci, resamples, shuffles) -> None:
    if ci is not None and (isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1):
        raise ValueError(f"ci must be a level in (0, 1), e.g. 0.95, or None, got {ci!r}")
    for name, v, low in (("resamples", resamples, 2), ("shuffles", shuffles, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def _rows(v) -> int:
    return int(v.shape[0]) if hasattr(v, "shape") else len(v)


def _take(v, idx: np.ndarray):
    if isinstance(v, torch.Tensor):
        return v[torch.as_tensor(idx, device=v.device)]
    return np.asarray(v)[idx]


def interval(est, r, data: tuple, p, level: float, resamples: int, seed: int, call):
    """``r`` with its interval at ``level`` (see the module's text); ``call(*data)`` re-estimates on a subsample."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    if p is not None:
        return replace(r, ci=(r.value, r.value), ci_level=level, ci_method="exact")
    if r.std is not None and math.isfinite(r.std):
        return replace(r, ci=(r.value - z * r.std, r.value + z * r.std), ci_level=level, ci_method="standard error")
    n = _rows(data[0])
    m = n // 2
    if m < 2:
        raise ValueError(f"a subsampling interval needs at least 4 rows, got {n}")
    g = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC1]))
    values = []
    for _ in range(resamples):
        idx = np.sort(g.choice(n, size=m, replace=False))
        values.append(float(call(*(_take(v, idx) for v in data)).value))
    vals = np.asarray(values)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{est.name}: a half-sample estimate was not finite ({values}); no interval")
    var = m / (n - m) * float(np.mean((vals - vals.mean()) ** 2))
    # the variance is itself estimated from ``resamples`` values: Student's t quantile, not the normal one
    from scipy.stats import t as student

    half = float(student.ppf(0.5 + level / 2, resamples - 1)) * math.sqrt(var)
    return replace(r, ci=(r.value - half, r.value + half), ci_level=level, ci_method="subsampling",
                   diagnostics={**r.diagnostics, "subsample_values": values, "subsample_size": m})  # fmt: skip


def shuffle_baseline(est, r, x, y, shuffles: int, level: float | None, seed: int, call):
    """``r`` with the estimates on ``shuffles`` permutations of y's rows and their p-value (module's text)."""
    alpha = 0.05 if level is None else 1 - level
    if (shuffles + 1) * alpha < 1 - 1e-12:
        raise ValueError(f"shuffles={shuffles} cannot reach p <= {alpha:.3g} (the smallest p-value of K shuffles is "
                         f"1 / (K + 1)); use shuffles >= {math.ceil(1 / alpha) - 1}")  # fmt: skip
    n = _rows(y)
    g = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5F]))
    values = [float(call(x, _take(y, g.permutation(n))).value) for _ in range(shuffles)]
    p_value = (1 + sum(v >= r.value for v in values)) / (shuffles + 1)
    warn = list(r.warnings)
    if p_value > alpha:
        warn.append(f"not distinguishable from independence: {r.value:.4g} nats does not exceed its {shuffles} "
                    f"shuffles (max {max(values):.4g}) at p <= {alpha:.3g} (p = {p_value:.3g})")  # fmt: skip
    return replace(r, warnings=tuple(warn), diagnostics={**r.diagnostics, "shuffle_values": values,
                                                         "shuffle_p": p_value})  # fmt: skip
