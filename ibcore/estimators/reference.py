"""Slow, obviously-correct reference implementations of the k-NN estimators, for tests and benchmarks.

Plain double loops over sample pairs in Python floats (IEEE ``float64``), written straight from the formulas:
O(N^2) time, no jitter, no chunking, no input checks beyond the shapes. Use a few hundred samples at most.

References:
    Kozachenko & Leonenko (1987). Sample estimate of the entropy of a random vector. Problems of Information
    Transmission 23(2), 95-101.
    Kraskov, Stoegbauer & Grassberger (2004). Estimating mutual information. Phys. Rev. E 69, 066138.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma

__all__ = ["ksg_reference", "kl_entropy_reference"]


def _rows(a) -> list[list[float]]:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"samples must be 1-D or 2-D, got shape {a.shape}")
    return a.tolist()


def _max_norm(u: list[float], v: list[float]) -> float:
    return max(abs(a - b) for a, b in zip(u, v))


def _euclid(u: list[float], v: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))


def ksg_reference(x, y, k: int) -> float:
    """KSG algorithm 1, I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >, in nats.

    Arguments:
        x: Samples of X, shape ``(n,)`` or ``(n, dx)``.
        y: Samples of Y, shape ``(n,)`` or ``(n, dy)``.
        k: Number of neighbours.

    Returns:
        The estimate. eps_i is the max-norm distance to the k-th nearest other point in the joint space (joint max
        norm = max of the two marginal max norms); n_x counts the other points strictly closer than eps_i in x.

    Example:
        >>> ksg_reference([0.0, 1.0, 2.0, 4.0], [0.0, 1.0, 3.0, 2.0], k=1)  # doctest: +ELLIPSIS
        0.9583...
    """
    xs, ys = _rows(x), _rows(y)
    n = len(xs)
    if len(ys) != n or not 1 <= k < n:
        raise ValueError(f"need len(x) == len(y) > k >= 1, got {len(xs)}, {len(ys)}, k={k}")
    total = 0.0
    for i in range(n):
        dx = [_max_norm(xs[i], xs[j]) for j in range(n)]
        dy = [_max_norm(ys[i], ys[j]) for j in range(n)]
        joint = sorted(max(dx[j], dy[j]) for j in range(n) if j != i)
        eps = joint[k - 1]
        nx = sum(1 for j in range(n) if j != i and dx[j] < eps)
        ny = sum(1 for j in range(n) if j != i and dy[j] < eps)
        total += digamma(nx + 1) + digamma(ny + 1)
    return float(digamma(k) + digamma(n) - total / n)


def kl_entropy_reference(x, k: int, metric: str = "euclidean") -> float:
    """Kozachenko-Leonenko entropy, h = psi(N) - psi(k) + ln V_d + (d/N) sum_i ln eps_i, in nats.

    Arguments:
        x: Samples, shape ``(n,)`` or ``(n, d)``.
        k: Number of neighbours.
        metric: ``"euclidean"`` (V_d = pi^(d/2) / Gamma(d/2 + 1)) or ``"chebyshev"`` (V_d = 2^d).

    Returns:
        The estimate; ``-inf`` when some point has a zero k-NN distance (the reference does not guard against it).

    Example:
        >>> round(kl_entropy_reference([0.0, 1.0, 3.0, 6.0], k=1), 4)
        2.9744
    """
    xs = _rows(x)
    n, d = len(xs), len(xs[0])
    if not 1 <= k < n:
        raise ValueError(f"need len(x) > k >= 1, got {n}, k={k}")
    if metric == "euclidean":
        dist, log_vol = _euclid, 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    elif metric == "chebyshev":
        dist, log_vol = _max_norm, d * math.log(2.0)
    else:
        raise ValueError(f"metric must be 'euclidean' or 'chebyshev', got {metric!r}")
    sum_log = 0.0
    for i in range(n):
        eps = sorted(dist(xs[i], xs[j]) for j in range(n) if j != i)[k - 1]
        sum_log += math.log(eps) if eps > 0 else -math.inf
    return float(digamma(n) - digamma(k) + log_vol + d * sum_log / n)
