"""How clustered a layer's representations are: the quantity behind "compression = clustering" (Goldfeld et al. 2019).

In a noisy network I(X;T) falls when the representations of different inputs move closer together than the noise
can resolve: when they cluster. Two measures that can be plotted beside I(X;T):

* the binned entropy H(Bin(T)) (:class:`ibcore.estimators.BinnedEntropy`), which counts occupied cells, and
* :func:`class_separation`, the within-class and between-class spread of the representations and their ratio
  (a Fisher-type criterion): clustering by class shows as the within-class spread shrinking.
"""

from __future__ import annotations

import torch

from .estimators._validation import as_samples, check_same_length

__all__ = ["class_separation"]


def class_separation(t, labels) -> dict[str, float]:
    """Within-class and between-class spread of representations ``t`` ``(N, d)`` with class ``labels`` ``(N,)``.

    ``within`` is the mean squared distance of a representation to its class mean, ``between`` the mean squared
    distance of a representation's class mean to the overall mean (both averaged over the N rows, so classes count
    by their size), ``total = within + between`` the mean squared distance to the overall mean, and
    ``separation = between / within`` (``inf`` when every class has collapsed to a point).

    Example:
        >>> r = class_separation([[0.0], [2.0], [10.0], [12.0]], [0, 0, 1, 1])
        >>> r["within"], r["between"], r["separation"]
        (1.0, 25.0, 25.0)
    """
    x = as_samples(t, "t", float_dtype=torch.float64)
    y = as_samples(labels, "labels", keep_integer=True, device=x.device)
    check_same_length(x, y, ("t", "labels"))
    if y.shape[1] != 1 or y.is_floating_point():
        raise ValueError(f"labels must be one integer class per row, got shape {tuple(y.shape)} and dtype {y.dtype}")
    classes, inv = torch.unique(y[:, 0], return_inverse=True)
    k = classes.numel()
    counts = torch.bincount(inv, minlength=k).to(torch.float64)
    means = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device).index_add_(0, inv, x) / counts[:, None]
    within = float(((x - means[inv]) ** 2).sum(1).mean())
    between = float(((means[inv] - x.mean(0)) ** 2).sum(1).mean())
    return {"within": within, "between": between, "total": within + between,
            "separation": between / within if within > 0 else float("inf"), "n_classes": k}  # fmt: skip
