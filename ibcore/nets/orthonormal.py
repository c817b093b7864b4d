"""The orthonormality regularisation of the noisy-network chapter: :class:`OrthonormalUpdate`, applied to an
:class:`~ibcore.nets.MLP` after each training step."""

from __future__ import annotations

import math

import torch  # noqa: F401  (the doctest's namespace, as in the former ibcore/nets.py)

from .mlp import MLP

__all__ = ["OrthonormalUpdate"]


class OrthonormalUpdate:
    """Pulls the hidden weight matrices towards orthonormality after each step: W <- W - alpha (W W^T W - W).

    The update of Goldfeld et al. (ICML 2019, Fig. 5b; the Parseval-network retraction of Cisse et al. 2017),
    applied to every layer but the last. A near-orthonormal layer keeps distances between its inputs, so it cannot
    cluster them: the regularisation suppresses compression. Use it as ``fit(..., after_step=[OrthonormalUpdate(a)])``.

    Arguments:
        alpha: Step size of the retraction (> 0; the authors' runs use 1e-4 to 1e-2).

    Example:
        >>> net = MLP((4, 4, 2), seeds=[0])
        >>> step = OrthonormalUpdate(0.1)
        >>> with torch.no_grad():
        ...     for _ in range(300):
        ...         step(net)
        >>> w = net.weights[0][0]
        >>> bool(torch.allclose(w.T @ w, torch.eye(4), atol=1e-4))
        True
    """

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, model: MLP) -> None:
        for w in list(model.weights)[:-1]:  # (S, fan_in, fan_out)
            w.sub_(self.alpha * (w @ (w.mT @ w) - w))
