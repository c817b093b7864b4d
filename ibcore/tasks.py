"""Samplers with closed-form mutual information, the ground truth every estimator is tested against.

All samplers take an explicit ``seed`` (a local NumPy generator; nothing global is touched) and return NumPy
``float64`` arrays of shape ``(n, dim)``. MI values are in nats.

References:
    Kraskov, Stoegbauer & Grassberger (2004). Estimating mutual information. Phys. Rev. E 69, 066138.
    Czyz et al. (2023). Beyond normal: on the evaluation of mutual information estimators. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

__all__ = [
    "gaussian_rho",
    "gaussian_mi",
    "correlated_gaussian",
    "random_orthogonal",
    "MARGINAL_TRANSFORMS",
    "transformed_gaussian",
    "uniform_quantization",
]


def gaussian_rho(mi_per_component: float) -> float:
    """Correlation of one Gaussian component pair with MI ``mi_per_component``: rho = sqrt(1 - exp(-2 I))."""
    if not (math.isfinite(mi_per_component) and mi_per_component >= 0):
        raise ValueError(f"mi_per_component must be finite and >= 0, got {mi_per_component!r}")
    return math.sqrt(-math.expm1(-2.0 * mi_per_component))


def gaussian_mi(rho) -> float:
    """Total MI of independent component pairs with correlations ``rho``: I = -1/2 sum ln(1 - rho_j^2)."""
    rho = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    if not np.all(np.abs(rho) < 1):
        raise ValueError(f"correlations must lie in (-1, 1), got {rho.tolist()}")
    return float(-0.5 * np.sum(np.log1p(-(rho**2))))


def random_orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def correlated_gaussian(
    n: int, mi: float, dim: int = 1, *, seed: int, mix: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Jointly Gaussian ``(x, y)`` with total mutual information ``mi`` nats, split evenly over ``dim`` pairs.

    Component j of x and of y are standard normal with correlation rho = sqrt(1 - exp(-2 mi / dim)); other pairs
    are independent. With ``mix=True`` x and y are each rotated by their own random orthogonal matrix, which keeps
    the MI but hides the component structure.

    Arguments:
        n: Number of samples.
        mi: Total I(X;Y) in nats, >= 0.
        dim: Dimension of x and of y.
        seed: Seed of the local generator.
        mix: Rotate x and y by independent random orthogonal matrices.

    Returns:
        ``(x, y)``, each of shape ``(n, dim)``.

    Example:
        >>> x, y = correlated_gaussian(1000, mi=1.0, dim=2, seed=0)
        >>> x.shape, y.shape
        ((1000, 2), (1000, 2))
    """
    n, dim = _check_n_dim(n, dim)
    if not (isinstance(mi, (int, float)) and math.isfinite(mi) and mi >= 0):
        raise ValueError(f"mi must be a finite number >= 0, got {mi!r}")
    rho = gaussian_rho(mi / dim)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    y = rho * x + math.sqrt(1.0 - rho**2) * rng.standard_normal((n, dim))
    if mix:
        x = x @ random_orthogonal(dim, rng)
        y = y @ random_orthogonal(dim, rng)
    return x, y


#: Invertible elementwise maps; applying one to x alone or y alone keeps I(X;Y).
MARGINAL_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda v: v,
    "uniform": special.ndtr,  # the normal CDF: uniform marginals on (0, 1)
    "cube": lambda v: v**3,
    "asinh": np.arcsinh,
    "sinh": np.sinh,
}


def transformed_gaussian(
    n: int, mi: float, dim: int = 1, *, seed: int, transform_x: str = "uniform", transform_y: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    """A correlated Gaussian pushed through invertible marginal maps: non-Gaussian data with the same MI.

    Arguments:
        n, mi, dim, seed: As in :func:`correlated_gaussian`.
        transform_x, transform_y: Names from :data:`MARGINAL_TRANSFORMS`.
    """
    for name, t in (("transform_x", transform_x), ("transform_y", transform_y)):
        if t not in MARGINAL_TRANSFORMS:
            raise ValueError(f"{name} must be one of {sorted(MARGINAL_TRANSFORMS)}, got {t!r}")
    x, y = correlated_gaussian(n, mi, dim, seed=seed)
    return MARGINAL_TRANSFORMS[transform_x](x), MARGINAL_TRANSFORMS[transform_y](y)


def uniform_quantization(n: int, levels: int, dim: int = 1, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ U[0,1]^dim and Y = floor(levels * X_0), so I(X;Y) = H(Y) = ln(levels) exactly.

    Returns:
        ``(x, y)``: x float64 of shape ``(n, dim)``, y int64 of shape ``(n, 1)``.
    """
    n, dim = _check_n_dim(n, dim)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    x = np.random.default_rng(seed).random((n, dim))
    y = np.floor(levels * x[:, :1]).astype(np.int64)
    return x, y


def _check_n_dim(n, dim) -> tuple[int, int]:
    for name, v in (("n", n), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(n), int(dim)
