"""``auto``: the truth-blind default for two continuous sides.

No estimator is right everywhere (see the "which estimator" chapter and ``benchmarks/bench_suite.py``): the
Gaussian estimator misses nonlinear dependence, k-NN estimators lose information in high dimension and at high MI,
heavy tails break both and the flows. ``auto`` uses two facts that need no knowledge of the answer:

1. **MI is a property of the copula.** A strictly monotone map of any coordinate leaves I(X;Y) unchanged, so every
   column can be replaced by the normal score of its rank (:func:`~ibcore.estimators.normal_scores`) for free:
   heavy tails, skew and bounded or bimodal marginals are gone before any estimator sees the data.
2. **Each candidate errs low where it fails.** The Gaussian estimator sees second moments only, below the MI for
   any non-Gaussian dependence with Gaussian marginals (for one dimension per side, exactly a lower bound); the
   elliptical copula (:class:`~ibcore.estimators.CopulaMI`) sees the Gaussian or t part of the dependence and
   nothing more; KSG is consistent and biased low in high dimension and at high MI (Kraskov et al. 2004; Gao et
   al. 2015). So the largest candidate is the least biased one, and the candidates' spread says how much the
   choice mattered.

The candidates: ``gaussian`` on the data as given where every column is close to normal (on a Gaussian at very
high MI the ranks' own sampling noise costs the rank-based candidates information, the raw covariance does not;
with heavy tails it overstates the dependence, so it is left out there), ``copula`` on the ranks (Gaussian or
t copula by likelihood), and ``ksg`` (k = 5) on the normal scores where d_x + d_y <= ``ksg_max_dim``. The value is
the largest; ``diagnostics`` names it (``chosen``), lists every candidate (``candidates``) and says why
(``reason``). The Gaussian values are bias-corrected by d_x d_y / (2 n).

What it cannot see: dependence that is neither elliptical after ranking nor low-dimensional enough for k-NN (a
spiral twisting five dimensions): every candidate is then below the truth and so is ``auto``.
"""

from __future__ import annotations

import torch

from ._validation import as_samples, check_positive_int, check_same_length, resolve_device
from .copula import CopulaMI, normal_scores
from .gaussian import GaussianMI
from .interface import MIEstimate, MIEstimator, register
from .knn import KSG

__all__ = ["AutoMI"]


#: The Gaussian MI of the data as given is a candidate only where every column is close to normal: the squared
#: correlation of each column with its normal scores (the Shapiro-Francia statistic) at least this. Heavy tails
#: make the raw covariance overstate the dependence (a t with 1 degree of freedom: 2.1 nats for 1.4).
GAUSSIAN_MARGINS = 0.995


def _normality(t: torch.Tensor, z: torch.Tensor) -> float:
    # the smallest, over columns, squared correlation of a column with its normal scores
    a, b = t - t.mean(0), z - z.mean(0)
    r = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-300)
    return float((r**2).min())


@register("auto")
class AutoMI(MIEstimator):
    """The largest of several estimators that each err low where they fail, on the data's copula.

    Arguments:
        k: Neighbours of the KSG candidate.
        ksg_max_dim: KSG is a candidate where d_x + d_y is at most this (above, it only loses information).
        seed: Seed of the random order of tied ranks and of the KSG jitter.
        device: Where to compute; ``None`` follows the data.

    ``diagnostics``: ``candidates`` (each candidate's value, nats), ``chosen`` (the candidate whose value is
    returned), ``reason`` (in words), and the chosen candidate's own diagnostics under ``inner``.

    Example:
        >>> from ibcore.tasks import suite_task
        >>> x, y, truth = suite_task("student-2x2-dof1", 5000, seed=0)
        >>> r = AutoMI().estimate(x, y)
        >>> r.diagnostics["chosen"], round(r.value, 2), round(truth, 2)
        ('copula', 1.41, 1.43)
    """

    x_role = "continuous"
    y_role = "continuous"

    def __init__(self, k: int = 5, ksg_max_dim: int = 10, seed: int = 0, device=None):
        self.k, self.ksg_max_dim, self.seed, self.device = k, ksg_max_dim, seed, device

    def _estimate(self, x, y, p) -> MIEstimate:
        check_positive_int(self.k, "k")
        check_positive_int(self.ksg_max_dim, "ksg_max_dim", 0)
        dev = resolve_device(self.device)
        tx = as_samples(x, "x", min_samples=self.k + 2, device=dev, float_dtype=torch.float64)
        ty = as_samples(y, "y", min_samples=self.k + 2, device=tx.device, float_dtype=torch.float64)
        check_same_length(tx, ty)
        n, dx, dy = tx.shape[0], tx.shape[1], ty.shape[1]
        results = {}
        zx, zy = normal_scores(tx, self.seed), normal_scores(ty, self.seed + 1)
        fit = min(_normality(tx, zx), _normality(ty, zy))
        if fit >= GAUSSIAN_MARGINS:
            gauss = GaussianMI().estimate(tx, ty)
            results["gaussian"] = (gauss.value - dx * dy / (2 * n), gauss)
        cop = CopulaMI(seed=self.seed).estimate(tx, ty)
        results["copula"] = (cop.value, cop)
        if dx + dy <= self.ksg_max_dim:
            knn = KSG(k=self.k, seed=self.seed).estimate(zx, zy)
            results["ksg"] = (knn.value, knn)
        chosen = max(results, key=lambda name: results[name][0])
        values = {name: v for name, (v, _) in results.items()}
        others = ", ".join(f"{name} {v:.3f}" for name, v in values.items() if name != chosen)
        what = {"gaussian": "the Gaussian MI of the data as given",
                "copula": f"the {'Gaussian' if cop.diagnostics['dof'] == float('inf') else 't'} copula of the ranks",
                "ksg": f"KSG (k = {self.k}) on the normal scores"}[chosen]  # fmt: skip
        reason = (f"{what}: {values[chosen]:.3f} nats, the largest of the candidates ({others}), each biased low "
                  "where it fails" + ("" if "gaussian" in values else
                                      f"; the Gaussian MI of the data as given left out: a column is not normal "
                                      f"(squared correlation with its normal scores {fit:.4f} < {GAUSSIAN_MARGINS})"))
        inner = results[chosen][1]
        return MIEstimate(values[chosen], n, self.name, self.get_params(), std=inner.std, warnings=list(inner.warnings),
                          diagnostics={"candidates": values, "chosen": chosen, "reason": reason,
                                       "inner": inner.diagnostics})  # fmt: skip
