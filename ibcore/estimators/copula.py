"""Rank (copula) transforms and the elliptical-copula estimator.

Mutual information does not change under a strictly monotone map of each coordinate, so it is a property of the
*copula*, the joint law of the coordinates' ranks. :func:`normal_scores` replaces every value by the standard-normal
quantile of its rank: heavy tails, skew, bimodal or bounded marginals are gone, and a Gaussian seen through any
monotone maps becomes a Gaussian again.

:class:`CopulaMI` fits an elliptical copula to the ranks by maximum likelihood, the Gaussian copula or Student's t
copula with ``dof`` degrees of freedom, and returns its MI in closed form: for the shape (correlation) matrix P of
the joint, ``-1/2 ln(det P / (det P_xx det P_yy))``, plus for the t copula the shared-scale term
``c = f(v) + f(v + d_x + d_y) - f(v + d_x) - f(v + d_y)``, ``f(v) = lnGamma(v/2) - v/2 psi(v/2)`` (the MI of the
multivariate t: :func:`ibcore.tasks.student_t_mi`). The degrees of freedom are chosen by the copula likelihood over a
grid, the Gaussian copula (v = infinity) kept unless a t copula is better by a likelihood-ratio test at p = 0.001.
It is exact, up to sampling error, for any Gaussian or multivariate-t law seen through monotone maps of its
coordinates, and blind to any other dependence (a spiral, a roll): there it sees only the elliptical part.

References:
    Genest, Ghoudi & Rivest (1995). A semiparametric estimation procedure of dependence parameters in multivariate
    families of distributions. Biometrika 82, 543-552 (the pseudo-likelihood of ranks).
    Demarta & McNeil (2005). The t copula and related copulas. International Statistical Review 73, 111-129.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from ._validation import as_samples, check_same_length, resolve_device
from .interface import MIEstimate, MIEstimator, register

__all__ = ["CopulaMI", "normal_scores", "uniform_ranks", "t_shared_scale_mi"]

#: degrees of freedom tried by :class:`CopulaMI` (besides the Gaussian copula, v = infinity)
DOFS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 25.0, 50.0)
#: half the 0.999 quantile of chi-square(1): a t copula must beat the Gaussian one by this much log-likelihood
LR_THRESHOLD = 0.5 * 10.827566170662733


def _ranks(t: torch.Tensor, seed: int) -> torch.Tensor:
    # each column's ranks 0 .. n-1 (int64), ties in a random order drawn from a local generator
    n = t.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).to(t.device)
    order = torch.argsort(t[perm], dim=0, stable=True)  # rows permuted first: ties fall in random order
    ranks = torch.empty_like(order)
    ranks.scatter_(0, order, torch.arange(n, device=t.device).unsqueeze(1).expand_as(order).contiguous())
    out = torch.empty_like(ranks)
    out[perm] = ranks
    return out


def uniform_ranks(t: torch.Tensor, seed: int) -> torch.Tensor:
    """Each column's ranks scaled into (0, 1), ``rank / (n + 1)`` (ranks 1 .. n), ties broken at random (a local
    generator seeded with ``seed``): the empirical copula of the rows, in float64."""
    return (_ranks(t, seed) + 1).to(torch.float64) / (t.shape[0] + 1)


def normal_scores(t: torch.Tensor, seed: int) -> torch.Tensor:
    """The standard-normal quantile of each value's rank (:func:`uniform_ranks`), column by column, in float64: a
    copy of the data with standard normal marginals and the same copula, hence the same mutual information."""
    return torch.special.ndtri(uniform_ranks(t, seed))


def _f(v: float) -> float:
    return float(special.gammaln(v / 2) - v / 2 * special.digamma(v / 2))


def t_shared_scale_mi(dof: float, dim_x: int, dim_y: int) -> float:
    """The MI a multivariate t with ``dof`` degrees of freedom carries beyond its Gaussian part:
    f(v) + f(v + d_x + d_y) - f(v + d_x) - f(v + d_y), f(v) = lnGamma(v/2) - v/2 psi(v/2); 0 for ``dof = inf``."""
    if math.isinf(dof):
        return 0.0
    return _f(dof) + _f(dof + dim_x + dim_y) - _f(dof + dim_x) - _f(dof + dim_y)


def _correlation(s: torch.Tensor) -> torch.Tensor:
    d = torch.diagonal(s).sqrt()
    return s / d[:, None] / d[None, :]


def _mi_of_shape(p: torch.Tensor, dx: int) -> tuple[float, list[float]]:
    # -1/2 ln det P / (det P_xx det P_yy), from the canonical correlations of the shape matrix
    lx = torch.linalg.cholesky(p[:dx, :dx])
    ly = torch.linalg.cholesky(p[dx:, dx:])
    cross = torch.linalg.solve_triangular(lx, torch.linalg.solve_triangular(ly, p[dx:, :dx], upper=False).T,
                                          upper=False)  # fmt: skip
    rho = torch.linalg.svdvals(cross).clamp(max=1 - 1e-15)
    return float(-0.5 * torch.log1p(-(rho**2)).sum()), rho.tolist()


def _fit_t(w: torch.Tensor, dof: float, start: torch.Tensor, iterations: int) -> tuple[torch.Tensor, float]:
    # EM for the shape matrix of a centred multivariate t with fixed dof (Liu & Rubin 1995), scaled to a
    # correlation matrix; returns it and the copula log-likelihood of the rows (joint t density minus the
    # marginal t densities)
    n, d = w.shape
    s = start
    for _ in range(iterations):
        chol = torch.linalg.cholesky(s)
        m = torch.linalg.solve_triangular(chol, w.T, upper=False).square().sum(0)  # Mahalanobis distances
        weight = (dof + d) / (dof + m)
        s, before = _correlation((w * weight[:, None]).T @ w / n), s
        if float((s - before).abs().max()) < 1e-7:
            break
    chol = torch.linalg.cholesky(s)
    m = torch.linalg.solve_triangular(chol, w.T, upper=False).square().sum(0)
    joint = (special.gammaln((dof + d) / 2) - special.gammaln(dof / 2) - d / 2 * math.log(dof * math.pi)
             - float(torch.log(torch.diagonal(chol)).sum()) - (dof + d) / 2 * torch.log1p(m / dof))  # fmt: skip
    margins = (special.gammaln((dof + 1) / 2) - special.gammaln(dof / 2) - 0.5 * math.log(dof * math.pi)
               - (dof + 1) / 2 * torch.log1p(w.square() / dof)).sum(1)  # fmt: skip
    return s, float((joint - margins).sum())


def _gaussian_copula(z: torch.Tensor) -> tuple[torch.Tensor, float]:
    n, d = z.shape
    p = _correlation(z.T @ z / n)
    chol = torch.linalg.cholesky(p)
    m = torch.linalg.solve_triangular(chol, z.T, upper=False).square().sum(0)
    loglik = -0.5 * (m - z.square().sum(1)).sum() - n * float(torch.log(torch.diagonal(chol)).sum())
    return p, float(loglik)


@register("copula")
class CopulaMI(MIEstimator):
    """MI of the elliptical copula fitted to the ranks: Gaussian or Student's t, chosen by likelihood.

    Arguments:
        family: ``"auto"`` (the t copula where it beats the Gaussian one by a likelihood-ratio test at p = 0.001),
            ``"gaussian"`` or ``"t"`` (the best t copula over ``dofs``).
        dofs: Degrees of freedom tried for the t copula.
        iterations: At most this many EM iterations per degree of freedom (they stop when the shape matrix moves
            by less than 1e-7).
        seed: Seed of the random order in which ties are ranked.
        device: Where to compute; ``None`` follows the data.

    ``diagnostics``: ``dof`` (``inf`` for the Gaussian copula), ``loglik`` per degree of freedom fitted (the copula
    log-likelihood, nats: every degree of freedom is first scored with the Gaussian copula's shape matrix, and the
    best with its two neighbours on the grid is fitted by EM), ``canonical_correlations`` of the fitted shape matrix
    and ``shared_scale_mi`` (the t copula's term c). The value is bias-corrected by d_x d_y / (2 n), the
    first-order upward bias of the sample canonical correlations' MI.

    Example:
        >>> from ibcore.tasks import student_t, student_t_mi
        >>> x, y = student_t(20_000, 1.0, dim=2, dof=3, seed=0)
        >>> r = CopulaMI().estimate(np.arcsinh(x), y ** 3)
        >>> r.diagnostics["dof"], round(r.value, 1), round(student_t_mi(1.0, 3, 2, 2), 1)
        (3.0, 1.1, 1.1)
    """

    x_role = "continuous"
    y_role = "continuous"

    def __init__(self, family: str = "auto", dofs=DOFS, iterations: int = 30, seed: int = 0, device=None):
        self.family, self.dofs, self.iterations, self.seed, self.device = family, dofs, iterations, seed, device

    def _check(self):
        if self.family not in ("auto", "gaussian", "t"):
            raise ValueError(f"family must be 'auto', 'gaussian' or 't', got {self.family!r}")
        dofs = list(self.dofs) if isinstance(self.dofs, (list, tuple)) else None
        if not dofs or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
                               for v in dofs):  # fmt: skip
            raise ValueError(f"dofs must be a non-empty list of finite numbers > 0, got {self.dofs!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        return [float(v) for v in dofs]

    def _estimate(self, x, y, p) -> MIEstimate:
        dofs = self._check()
        dev = resolve_device(self.device)
        tx = as_samples(x, "x", min_samples=3, device=dev, float_dtype=torch.float64)
        ty = as_samples(y, "y", min_samples=3, device=tx.device, float_dtype=torch.float64)
        check_same_length(tx, ty)
        n, dx, dy = tx.shape[0], tx.shape[1], ty.shape[1]
        if n <= 2 * (dx + dy):
            raise ValueError(f"x and y have {n} samples; the copula estimator needs more than 2 (d_x + d_y) = "
                             f"{2 * (dx + dy)}")  # fmt: skip
        for name, t in (("x", tx), ("y", ty)):
            const = [j for j in range(t.shape[1]) if bool((t[:, j] == t[0, j]).all())]
            if const:
                raise ValueError(f"{name} has constant columns {const}: their ranks carry no information")
        ranks = _ranks(torch.cat([tx, ty], 1), self.seed)
        grid = np.arange(1, n + 1) / (n + 1)  # every column's ranks are a permutation of this grid

        def scores(quantiles):  # the quantile function on the grid, read at every rank
            return torch.from_numpy(quantiles).to(tx.device)[ranks]

        z = scores(special.ndtri(grid))
        fits: dict[float, tuple[torch.Tensor, float]] = {}
        gaussian_fit = _gaussian_copula(z)
        if self.family != "t":
            fits[math.inf] = gaussian_fit
        if self.family != "gaussian":
            # every degree of freedom scored with the Gaussian copula's shape, then the best and its neighbours
            # on the grid fitted by EM (the shape of an elliptical copula hardly moves with the degrees of freedom)
            dofs = sorted(dofs)
            w = {v: scores(special.stdtrit(v, grid)) for v in dofs}
            rough = [_fit_t(w[v], v, gaussian_fit[0], 0)[1] for v in dofs]
            i = int(np.argmax(rough))
            for v in dofs[max(i - 1, 0) : i + 2]:
                fits[v] = _fit_t(w[v], v, gaussian_fit[0], self.iterations)
        best = max(fits, key=lambda v: fits[v][1])
        if self.family == "auto" and fits[best][1] - fits[math.inf][1] <= LR_THRESHOLD:
            best = math.inf
        shape, _ = fits[best]
        elliptical, rho = _mi_of_shape(shape, dx)
        extra = t_shared_scale_mi(best, dx, dy)
        value = elliptical + extra - dx * dy / (2 * n)
        return MIEstimate(value, n, self.name, self.get_params(), diagnostics={
            "dof": best, "loglik": {str(v): ll for v, (_, ll) in fits.items()}, "canonical_correlations": rho,
            "shared_scale_mi": extra})  # fmt: skip
