"""The Gaussian (canonical-correlation) estimator: exact for jointly Gaussian data, the baseline to beat.

I(X;Y) = -1/2 sum_j ln(1 - rho_j^2), with rho_j the canonical correlations of the sample covariance. It only sees
second moments, so for non-Gaussian data it is a lower bound on the MI of the Gaussian with the same covariance
(it is blind to any nonlinear dependence).
"""

from __future__ import annotations

import torch

from ._validation import as_samples, check_same_length
from .interface import MIEstimate, MIEstimator, register

__all__ = ["GaussianMI"]


def _scales(t: torch.Tensor, name: str) -> torch.Tensor:
    # column standard deviations, computed on columns divided by their largest magnitude (no overflow at 1e200)
    top = t.abs().amax(0).clamp_min(torch.finfo(torch.float64).tiny)
    sd = (t / top).std(0) * top
    const = (~(sd > 0) | ~torch.isfinite(sd)).nonzero().flatten().tolist()
    if const:
        raise ValueError(f"{name} has constant columns {const}: the Gaussian estimator needs full-rank data")
    return sd


def _standardized(t: torch.Tensor, name: str) -> torch.Tensor:
    # (t - mean) / sd per column; where the mean itself overflows (values near float64's largest, 1e307), the
    # columns are scaled before they are centred.
    sd = _scales(t, name)
    mean = t.mean(0)
    if bool(torch.isfinite(mean).all()):
        return (t - mean) / sd
    u = t / sd
    return u - u.mean(0)


def _whitener(c: torch.Tensor, name: str) -> torch.Tensor:
    # Inverse Cholesky factor of a covariance; a singular covariance means a constant or collinear column.
    chol, info = torch.linalg.cholesky_ex(c)
    evals = torch.linalg.eigvalsh(c)
    if int(info) != 0 or float(evals[0]) <= 1e-12 * float(evals[-1].clamp(min=1e-300)):
        sd = torch.diagonal(c).sqrt()
        raise ValueError(
            f"{name} has a singular covariance (constant or linearly dependent columns; column std {sd.tolist()}):"
            " the Gaussian estimator needs full-rank data"
        )
    return torch.linalg.inv(chol)


@register("gaussian")
class GaussianMI(MIEstimator):
    """Mutual information of the Gaussian with the sample covariance of ``(x, y)``.

    Computed in float64 from the canonical correlations (the singular values of the whitened cross-covariance),
    which are reported in ``diagnostics["canonical_correlations"]``. Needs more samples than dimensions
    (n > d_x + d_y).

    Arguments:
        device: Where to compute; ``None`` follows the data.

    Example:
        >>> from ibcore.tasks import correlated_gaussian
        >>> x, y = correlated_gaussian(100_000, mi=1.0, dim=2, seed=0)
        >>> round(GaussianMI().estimate(x, y).value, 2)
        1.0
    """

    def __init__(self, device=None):
        self.device = device

    def _estimate(self, x, y, p) -> MIEstimate:
        tx = as_samples(x, "x", device=self.device, float_dtype=torch.float64)
        ty = as_samples(y, "y", device=self.device, float_dtype=torch.float64)
        check_same_length(tx, ty)
        n, dx, dy = tx.shape[0], tx.shape[1], ty.shape[1]
        if n <= dx + dy:
            raise ValueError(f"x and y have {n} samples; the Gaussian estimator needs more than d_x + d_y = {dx + dy}")
        # columns scaled to unit variance first (the canonical correlations do not depend on the units): keeps huge
        # values from overflowing the covariance and columns of very different scales from looking singular
        tx, ty = _standardized(tx, "x"), _standardized(ty, "y")
        wx = _whitener(tx.T @ tx / (n - 1), "x")
        wy = _whitener(ty.T @ ty / (n - 1), "y")
        cross = wx @ (tx.T @ ty / (n - 1)) @ wy.T
        rho = torch.linalg.svdvals(cross)
        if float(rho.max()) >= 1.0 - 1e-12:
            raise ValueError(
                f"x and y are linearly dependent (canonical correlation {float(rho.max()):.15f}): the Gaussian MI is"
                " infinite"
            )
        value = float(-0.5 * torch.log1p(-(rho**2)).sum())
        return MIEstimate(
            value, n, self.name, self.get_params(), diagnostics={"canonical_correlations": rho.tolist()}
        )
