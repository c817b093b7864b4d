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
from dataclasses import dataclass

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
    "smoothed_uniform",
    "smoothed_uniform_mi",
    "smoothed_uniform_eps",
    "student_t",
    "student_t_mi",
    "render_bumps",
    "render_rectangles",
    "image_pair",
    "TASKS",
    "sample_task",
    "SuiteTask",
    "SUITE",
    "suite_task",
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


def smoothed_uniform_mi(eps: float) -> float:
    """I(X;Y) for X ~ U[0,1], Y = X + U[-eps, eps]: eps - ln(2 eps) for eps < 1/2, else 1 / (4 eps)."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    return eps - math.log(2 * eps) if eps < 0.5 else 1.0 / (4 * eps)


def smoothed_uniform_eps(mi: float) -> float:
    """The ``eps`` at which :func:`smoothed_uniform_mi` is ``mi`` nats (> 0): 1 / (4 mi) up to mi = 1/2, else the
    root of eps - ln(2 eps) = mi in (0, 1/2).

    Example:
        >>> round(smoothed_uniform_mi(smoothed_uniform_eps(3.0)), 12)
        3.0
    """
    if not (isinstance(mi, (int, float)) and math.isfinite(mi) and mi > 0):
        raise ValueError(f"mi must be a finite number > 0, got {mi!r}")
    if mi <= 0.5:
        return 1.0 / (4 * mi)
    from scipy.optimize import brentq

    return float(brentq(lambda e: e - math.log(2 * e) - mi, 1e-300, 0.5, xtol=1e-300, rtol=4 * np.finfo(float).eps))


def smoothed_uniform(n: int, eps: float, dim: int = 1, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ U[0,1]^dim and Y = X + U[-eps, eps]^dim, each ``(n, dim)``: ``dim`` independent pairs, so I(X;Y) is
    ``dim`` times :func:`smoothed_uniform_mi` (eps)."""
    smoothed_uniform_mi(eps)  # validates eps
    n, dim = _check_n_dim(n, dim)
    rng = np.random.default_rng(seed)
    x = rng.random((n, dim))
    return x, x + rng.uniform(-eps, eps, (n, dim))


def _student_f(v: float) -> float:
    return float(special.gammaln(v / 2) - v / 2 * special.digamma(v / 2))


def student_t_mi(gaussian_mi: float, dof: int, dim_x: int, dim_y: int) -> float:
    """I(X;Y) of the multivariate Student-t built by :func:`student_t`: the Gaussian's MI plus
    c = f(k) + f(k + n + m) - f(k + n) - f(k + m), f(v) = lnGamma(v/2) - v/2 psi(v/2), k = dof (> 0 even when the
    Gaussian part is independent: the shared scale couples X and Y)."""
    if isinstance(dof, bool) or not isinstance(dof, (int, np.integer)) or dof < 1:
        raise ValueError(f"dof must be an integer >= 1, got {dof!r}")
    k, a, b = int(dof), int(dim_x), int(dim_y)
    return gaussian_mi + _student_f(k) + _student_f(k + a + b) - _student_f(k + a) - _student_f(k + b)


def student_t(n: int, mi: float, dim: int = 1, dof: int = 3, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multivariate Student-t ``(x, y)``: a :func:`correlated_gaussian` pair with ``mi`` nats, both divided by one
    shared sqrt(W / dof), W ~ chi-square(dof). Heavy tails; I(X;Y) is :func:`student_t_mi` (mi, dof, dim, dim)."""
    n, dim = _check_n_dim(n, dim)
    student_t_mi(0.0, dof, dim, dim)  # validates dof
    x, y = correlated_gaussian(n, mi, dim, seed=seed)
    w = np.random.default_rng([seed, 0x57]).chisquare(dof, (n, 1))
    scale = np.sqrt(dof / w)
    return x * scale, y * scale


def _check_latent(latent, dim: int, name: str) -> np.ndarray:
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != dim or not np.all((z >= 0) & (z <= 1)):
        raise ValueError(f"{name} must be an (n, {dim}) array with values in [0, 1], got shape {z.shape}")
    return z


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 4:
        raise ValueError(f"size must be an integer >= 4, got {size!r}")
    return int(size)


def render_bumps(latent, size: int = 16, width: float = 0.15) -> np.ndarray:
    """Images ``(n, size, size)`` of a 2-D Gaussian bump ``exp(-|g - mu|^2 / (2 width^2))`` centred at ``mu``.

    ``latent`` is ``(n, 2)`` in [0, 1]; the centre is mu = 0.2 + 0.6 latent on the pixel grid g spanning [0, 1]. The
    map is injective (the log-image is a quadratic in g whose peak is mu), so I(image_X; image_Y) equals the
    latents' MI (Butakov et al., ICLR 2024 and NeurIPS 2024, synthetic images; our parametrisation).
    """
    z = _check_latent(latent, 2, "latent")
    size = _check_size(size)
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be > 0, got {width!r}")
    g = np.linspace(0.0, 1.0, size)
    mu = 0.2 + 0.6 * z
    gx = np.exp(-((g[None, :] - mu[:, :1]) ** 2) / (2 * width**2))  # (n, size)
    gy = np.exp(-((g[None, :] - mu[:, 1:]) ** 2) / (2 * width**2))
    return gy[:, :, None] * gx[:, None, :]


def _coverage(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    # Fraction of each of ``size`` equal pixels of [0, 1] covered by [lo, hi]: (n, size).
    edges = np.linspace(0.0, 1.0, size + 1)
    return np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]), 0, None) * size


def render_rectangles(latent, size: int = 16) -> np.ndarray:
    """Images ``(n, size, size)`` of an axis-aligned rectangle with soft (area-coverage) edges.

    ``latent`` is ``(n, 4)`` in [0, 1]: the rectangle spans x in [0.05 + 0.4 a, 0.55 + 0.4 b] and y in
    [0.05 + 0.4 c, 0.55 + 0.4 d]. Each pixel holds the fraction of its area inside the rectangle, so every edge is
    recoverable from the partly covered pixels and the map is injective (the latents' MI is kept).
    """
    z = _check_latent(latent, 4, "latent")
    size = _check_size(size)
    cx = _coverage(0.05 + 0.4 * z[:, 0], 0.55 + 0.4 * z[:, 1], size)
    cy = _coverage(0.05 + 0.4 * z[:, 2], 0.55 + 0.4 * z[:, 3], size)
    return cy[:, :, None] * cx[:, None, :]


def image_pair(n: int, mi: float, kind: str = "bumps", size: int = 16, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pairs with known MI: latents from :func:`transformed_gaussian` (uniform marginals, ``mi`` nats split
    over the latent dimensions: 2 for ``"bumps"``, 4 for ``"rectangles"``), each rendered injectively, so
    I(X;Y) = mi. Returns two ``(n, size, size)`` arrays."""
    renderers = {"bumps": (2, render_bumps), "rectangles": (4, render_rectangles)}
    if kind not in renderers:
        raise ValueError(f"kind must be one of {sorted(renderers)}, got {kind!r}")
    dim, render = renderers[kind]
    zx, zy = transformed_gaussian(n, mi, dim, seed=seed)
    return render(zx, size), render(zy, size)


# The known-MI tasks by name: vectors of ``dim`` components per side, or ``size`` x ``size`` images.
TASKS = ("gaussian", "uniform", "smoothed_uniform", "student", "asinh_student", "bumps", "rectangles")


def sample_task(task: str, n: int, mi: float, *, dim: int = 2, size: int = 16, seed: int):
    """``(x, y, true_mi)`` for a named task at MI level ``mi`` (nats).

    ``"gaussian"``: :func:`correlated_gaussian`; ``"uniform"``: its marginals through the normal CDF
    (:func:`transformed_gaussian`); ``"student"``: :func:`student_t` with 3 degrees of freedom, whose true MI is
    ``mi`` plus the shared-scale term of :func:`student_t_mi`; ``"asinh_student"``: the same pair through arcsinh
    (lighter tails, the same MI: the transform is monotone per coordinate); ``"smoothed_uniform"``: ``dim``
    independent pairs X ~ U[0, 1], Y = X + U[-eps, eps] (:func:`smoothed_uniform`) sharing ``mi`` equally
    (independent Y at ``mi = 0``); ``"bumps"`` and ``"rectangles"``: :func:`image_pair`. The vector tasks are those
    of Butakov et al. (2024), Sec. 6.

    Example:
        >>> x, y, truth = sample_task("student", 10, 1.0, dim=2, seed=0)
        >>> x.shape, round(truth, 3)
        ((10, 2), 1.111)
    """
    if task in ("gaussian", "uniform"):
        x, y = transformed_gaussian(n, mi, dim, seed=seed, transform_x=task if task == "uniform" else "identity",
                                    transform_y=task if task == "uniform" else "identity")  # fmt: skip
        return x, y, float(mi)
    if task in ("student", "asinh_student"):
        x, y = student_t(n, mi, dim, 3, seed=seed)
        if task == "asinh_student":
            x, y = np.arcsinh(x), np.arcsinh(y)
        return x, y, student_t_mi(mi, 3, dim, dim)
    if task == "smoothed_uniform":
        n, dim = _check_n_dim(n, dim)
        if not (math.isfinite(mi) and mi >= 0):
            raise ValueError(f"mi must be finite and >= 0, got {mi!r}")
        if mi == 0:
            rng = np.random.default_rng(seed)
            return rng.random((n, dim)), rng.random((n, dim)), 0.0
        x, y = smoothed_uniform(n, smoothed_uniform_eps(mi / dim), dim, seed=seed)
        return x, y, float(mi)
    if task in ("bumps", "rectangles"):
        x, y = image_pair(n, mi, task, size, seed=seed)
        return x, y, float(mi)
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


# ---------------------------------------------------------------------------------------------------------------
# The benchmark suite: forty tasks in thirteen families, every one with a closed-form MI (the "which estimator"
# chapter and benchmarks/bench_suite.py). In the spirit of Czyz et al. (2023): Gaussians seen through invertible
# maps of each side, heavy tails, nonlinear embeddings and additive noise, from 1 to 50 dimensions per side.


def gaussian_pair(n: int, mi: float, dim_x: int, dim_y: int, *, active: int | None = None, mix: bool = False,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Jointly Gaussian ``(x, y)`` of ``dim_x`` and ``dim_y`` standard normal components, ``mi`` nats shared evenly
    by the first ``active`` pairs (default ``min(dim_x, dim_y)``; the other components are independent). With ``mix``
    each side is rotated by its own random orthogonal matrix (every component then depends on every other: "dense")."""
    n, dim_x = _check_n_dim(n, dim_x)
    _, dim_y = _check_n_dim(n, dim_y)
    active = min(dim_x, dim_y) if active is None else active
    if isinstance(active, bool) or not isinstance(active, (int, np.integer)) or not 1 <= active <= min(dim_x, dim_y):
        raise ValueError(f"active must be an integer in [1, min(dim_x, dim_y) = {min(dim_x, dim_y)}], got {active!r}")
    if not (isinstance(mi, (int, float)) and math.isfinite(mi) and mi >= 0):
        raise ValueError(f"mi must be a finite number >= 0, got {mi!r}")
    rho = gaussian_rho(mi / active)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim_x))
    y = rng.standard_normal((n, dim_y))
    y[:, :active] = rho * x[:, :active] + math.sqrt(1.0 - rho**2) * y[:, :active]
    if mix:
        x = x @ random_orthogonal(dim_x, rng)
        y = y @ random_orthogonal(dim_y, rng)
    return x, y


def _half_cube(v):
    return np.sign(v) * np.abs(v) ** 1.5


def _bimodal(v):
    # strictly increasing (slope >= 1), flattest density at 0: the marginal has two modes near +-3
    return v + 3.0 * np.tanh(3.0 * v)


def _wiggly(v):
    # strictly increasing: slope 1 + 0.9 cos(3 v) >= 0.1
    return v + 0.3 * np.sin(3.0 * v)


def _spiral(x, speed: float = 0.5):
    # rotation of the first two coordinates by an angle growing with |x|^2; |x| is kept, so it is inverted by
    # rotating back: a diffeomorphism of x, which keeps I(X;Y)
    angle = speed * (x**2).sum(1)
    c, s = np.cos(angle), np.sin(angle)
    out = x.copy()
    out[:, 0], out[:, 1] = c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]
    return out


def _swiss_roll(v):
    # a 1-d variable rolled into the plane: t = 1.5 pi (1 + 2 Phi(v)) is increasing and (t cos t, t sin t) is
    # injective in t, so the roll keeps I(X;Y)
    t = 1.5 * math.pi * (1.0 + 2.0 * special.ndtr(v[:, :1]))
    return np.hstack([t * np.cos(t), t * np.sin(t)]) / 10.0


@dataclass(frozen=True)
class SuiteTask:
    """One task of :data:`SUITE`: its name, family, dimensions per side, true MI (nats) and how it is drawn."""

    name: str
    family: str
    dim_x: int
    dim_y: int
    mi: float
    draw: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (n, seed) -> (x, y)


def _gauss(mi, dx, dy=None, *, active=None, mix=None, fx=None, fy=None):
    dy = dx if dy is None else dy
    mix = min(dx, dy) > 1 and active is None if mix is None else mix

    def draw(n, seed):
        x, y = gaussian_pair(n, mi, dx, dy, active=active, mix=mix, seed=seed)
        return (x if fx is None else fx(x)), (y if fy is None else fy(y))

    return draw


def _student(kappa, dim, dof, f=None):
    def draw(n, seed):
        x, y = student_t(n, kappa, dim, dof, seed=seed)
        return (x, y) if f is None else (f(x), f(y))

    return draw


def _suite() -> dict[str, SuiteTask]:
    tasks = []

    def add(family, dx, dy, mi, draw, tag=""):
        tasks.append(SuiteTask(f"{family}-{dx}x{dy}{tag}", family, dx, dy, float(mi), draw))

    for d, mi in ((1, 0.5), (2, 1.0), (3, 1.5), (5, 2.0), (10, 3.0), (25, 4.0), (50, 5.0)):
        add("normal-dense", d, d, mi, _gauss(mi, d))
    for d, mi, act in ((5, 1.0, 2), (25, 2.0, 2), (50, 2.0, 3)):
        add("normal-sparse", d, d, mi, _gauss(mi, d, active=act, mix=False))
    for d, mi in ((1, 5.0), (2, 8.0), (5, 10.0)):
        add("normal-high-mi", d, d, mi, _gauss(mi, d))
    for d in (2, 10):
        add("independent", d, d, 0.0, _gauss(0.0, d))
    for d, dof, kappa in ((1, 1, 0.5), (2, 1, 1.0), (3, 2, 1.0), (5, 2, 2.0), (10, 3, 3.0)):
        add("student", d, d, student_t_mi(kappa, dof, d, d), _student(kappa, d, dof), f"-dof{dof}")
    for d, dof, kappa in ((1, 1, 0.5), (2, 1, 1.0), (3, 2, 1.0), (5, 2, 2.0)):
        add("asinh-student", d, d, student_t_mi(kappa, dof, d, d), _student(kappa, d, dof, np.arcsinh), f"-dof{dof}")
    for d, mi in ((1, 0.5), (2, 1.0), (5, 2.0), (25, 4.0)):
        add("half-cube", d, d, mi, _gauss(mi, d, fx=_half_cube, fy=_half_cube))
    for d, mi in ((1, 0.5), (2, 1.0), (3, 1.5), (5, 2.0), (25, 4.0)):
        add("normal-cdf", d, d, mi, _gauss(mi, d, fx=special.ndtr, fy=special.ndtr))
    add("bimodal", 1, 1, 1.0, _gauss(1.0, 1, fx=_bimodal, fy=_bimodal))
    add("wiggly", 1, 1, 1.0, _gauss(1.0, 1, fx=_wiggly, fy=_wiggly))
    for d, mi in ((3, 1.5), (5, 2.0)):
        add("spiral", d, d, mi, _gauss(mi, d, fx=_spiral, fy=_spiral))
    add("swiss-roll", 2, 1, 1.0, _gauss(1.0, 1, fx=_swiss_roll))
    for eps in (0.1, 0.75):
        add("additive-noise", 1, 1, smoothed_uniform_mi(eps),
            lambda n, seed, eps=eps: smoothed_uniform(n, eps, 1, seed=seed), f"-eps{eps}")
    return {t.name: t for t in tasks}


#: The benchmark suite by name (``"<family>-<dim_x>x<dim_y>[-variant]"``), 40 tasks in 13 families.
SUITE: dict[str, SuiteTask] = _suite()


def suite_task(name: str, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(x, y, true_mi)`` of the :data:`SUITE` task ``name``: ``n`` rows drawn with ``seed``.

    Example:
        >>> x, y, truth = suite_task("spiral-3x3", 100, seed=0)
        >>> x.shape, y.shape, truth
        ((100, 3), (100, 3), 1.5)
    """
    if name not in SUITE:
        raise ValueError(f"name must be a suite task, got {name!r}; there are {len(SUITE)}: {sorted(SUITE)}")
    n, _ = _check_n_dim(n, 1)
    task = SUITE[name]
    x, y = task.draw(n, seed)
    return x, y, task.mi


def _check_n_dim(n, dim) -> tuple[int, int]:
    for name, v in (("n", n), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(n), int(dim)
