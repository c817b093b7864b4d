"""Exact entropy and mutual information of a finite population, by counting distinct rows.

When X ranges over a finite set with known probabilities (the 4096 equiprobable inputs of the SZT task, the 70,000
MNIST images) and T is a deterministic function of X taking finitely many values (a quantized network's layer,
Lorenzen, Igel & Nielsen, ICLR 2022), nothing needs estimating: H(T) = -sum_t p(t) ln p(t) with p(t) the total
probability of the inputs mapped to t, I(X;T) = H(T), and I(T;Y) = H(T) + H(Y) - H(T,Y). These estimators compute
exactly that (up to float64 rounding of the sums), for one network or for S stacked networks at once.

Unlike :class:`~ibcore.estimators.DiscreteMI`, which reads its rows as samples from a larger population, here the rows
*are* the population: each row is one outcome with probability ``p`` (uniform when ``p`` is not given).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import as_samples
from .discrete import row_codes
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, MIEstimator, register

__all__ = ["ExactMI", "ExactEntropy", "probabilities"]

_P_TOLERANCE = 1e-6


def _as_stacked(x, name: str) -> tuple[torch.Tensor, bool]:
    # (S, N, d) input stays stacked; (N,) or (N, d) becomes (1, N, d). Validated like every estimator's input.
    ndim = x.ndim if isinstance(x, torch.Tensor) else np.ndim(x)
    if ndim == 3:
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
        s, n, d = t.shape
        if s == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
        return as_samples(t.reshape(s * n, d), name, keep_integer=True).reshape(s, n, d), True
    return as_samples(x, name, keep_integer=True).unsqueeze(0), False


def _shape(x) -> tuple:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(np.shape(x))


def probabilities(p, n: int, device=None) -> torch.Tensor:
    """Validated outcome probabilities ``(n,)`` in float64: ``None`` means uniform.

    Raises ``ValueError`` unless ``p`` is one finite, non-negative number per row that sums to 1 (within 1e-6).
    """
    if p is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    q = torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p.detach())
    if q.ndim != 1 or q.shape[0] != n:
        raise ValueError(f"p must hold one probability per row, shape ({n},), got shape {tuple(q.shape)}")
    q = q.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(q).all()) or bool((q < 0).any()):
        raise ValueError(f"p must be finite and non-negative, got min {float(q.min())} (NaN/inf present: "
                         f"{not bool(torch.isfinite(q).all())})")  # fmt: skip
    total = float(q.sum())
    if abs(total - 1.0) > _P_TOLERANCE:
        raise ValueError(f"p must sum to 1, got sum(p)={total!r}")
    return q


def _grouped_codes(t: torch.Tensor, n_groups: int) -> torch.Tensor:
    # Codes of the rows of t (S, N, d), distinct across groups, as a flat (n_groups * N,) tensor in group order.
    s, n, d = t.shape
    if s == n_groups:
        groups = torch.arange(s, device=t.device).repeat_interleave(n)
        return row_codes(t.reshape(s * n, d), groups)
    c = row_codes(t[0])  # one table shared by every group: code it once and offset it per group
    return (torch.arange(n_groups, device=t.device).unsqueeze(1) * (int(c.max()) + 1) + c).reshape(-1)


def _entropies(codes: torch.Tensor, weights: torch.Tensor, n: int, n_groups: int):
    # Entropy (nats) and number of distinct symbols of each group, from grouped codes and per-row weights.
    inv = torch.unique(codes, return_inverse=True)[1]
    k = int(inv.max()) + 1
    q = torch.zeros(k, dtype=torch.float64, device=codes.device).index_add_(0, inv, weights)
    rows_group = torch.arange(n_groups, device=codes.device).repeat_interleave(n)
    g = torch.zeros(k, dtype=torch.int64, device=codes.device).scatter_(0, inv, rows_group)
    pos = q > 0
    terms = torch.where(pos, -q * torch.log(torch.where(pos, q, torch.ones_like(q))), torch.zeros_like(q))
    h = torch.zeros(n_groups, dtype=torch.float64, device=codes.device).index_add_(0, g, terms)
    m = torch.zeros(n_groups, dtype=torch.int64, device=codes.device).index_add_(0, g, pos.to(torch.int64))
    return h, m


@register("exact")
class ExactMI(MIEstimator):
    """Exact I(X;Y) = H(X) + H(Y) - H(X,Y) of a finite population of rows with probabilities ``p``.

    ``estimate(x, y, p=None)``: row i of ``x`` and of ``y`` is outcome i, with probability ``p[i]`` (uniform when
    ``None``). Rows are equal symbols when exactly equal. For a deterministic layer T of a finite input set X,
    ``estimate(input_ids, t)`` is I(X;T) = H(T) and ``estimate(t, labels)`` is I(T;Y).

    ``estimate_stacked(x, y, p=None)`` does the same for S stacked networks at once (``x`` or ``y`` of shape
    ``(S, N, d)``, the other shared or stacked), in one pass on the data's device.

    ``diagnostics``: ``h_x``, ``h_y``, ``h_xy``, the numbers of distinct symbols, and ``y_function_of_x`` /
    ``x_function_of_y`` (exact, from the symbol counts on the support of ``p``).

    Example:
        >>> round(ExactMI().estimate([0, 1, 2, 3], [0, 0, 1, 1]).bits, 12)
        1.0
        >>> ExactMI().estimate([0, 1, 2, 3], [0, 0, 1, 1], p=[0.5, 0.0, 0.25, 0.25]).value == ExactMI().estimate(
        ...     [0, 1], [0, 1], p=[0.5, 0.5]).value
        True
    """

    def estimate(self, x, y, *, p=None) -> MIEstimate:
        tx, sx = _as_stacked(x, "x")
        ty, sy = _as_stacked(y, "y")
        for name, arg, stacked in (("x", x, sx), ("y", y, sy)):
            if stacked:
                raise ValueError(f"{name} must be 1-D or 2-D (estimate_stacked takes stacked networks), "
                                 f"got shape {_shape(arg)}")  # fmt: skip
        return self._estimate(tx, ty, p)[0]

    def estimate_stacked(self, x, y, *, p=None) -> list[MIEstimate]:
        """One exact MI per stacked network; ``x`` and/or ``y`` of shape ``(S, N, d)``."""
        return self._estimate(_as_stacked(x, "x")[0], _as_stacked(y, "y")[0], p)

    def _estimate(self, tx: torch.Tensor, ty: torch.Tensor, p) -> list[MIEstimate]:
        if tx.shape[1] != ty.shape[1]:
            raise ValueError(f"x and y must have the same number of samples, got [{tx.shape[1]}, {ty.shape[1]}]")
        if tx.device != ty.device:
            raise ValueError(f"x and y are on different devices: [{tx.device}, {ty.device}]")
        s = max(tx.shape[0], ty.shape[0])
        if {tx.shape[0], ty.shape[0]} - {1, s}:
            raise ValueError(f"x and y must stack the same number of networks, got [{tx.shape[0]}, {ty.shape[0]}]")
        n = tx.shape[1]
        w = probabilities(p, n, tx.device).repeat(s)
        cx, cy = _grouped_codes(tx, s), _grouped_codes(ty, s)
        cxy = cx * (int(cy.max()) + 1) + cy
        hx, mx = _entropies(cx, w, n, s)
        hy, my = _entropies(cy, w, n, s)
        hxy, mxy = _entropies(cxy, w, n, s)
        rows = zip(*(v.tolist() for v in (hx, hy, hxy, mx, my, mxy)))  # one transfer for all networks
        return [
            MIEstimate(a + b - ab, n, self.name, self.get_params(),
                       diagnostics={"h_x": a, "h_y": b, "h_xy": ab, "n_symbols_x": ma, "n_symbols_y": mb,
                                    "n_symbols_xy": mab, "y_function_of_x": mab == ma, "x_function_of_y": mab == mb,
                                    "max_value": math.log(min(ma, mb))})
            for a, b, ab, ma, mb, mab in rows
        ]  # fmt: skip


@register("exact-entropy")
class ExactEntropy(EntropyEstimator):
    """Exact H(X) = -sum p ln p of a finite population of rows with probabilities ``p`` (uniform when ``None``).

    Example:
        >>> ExactEntropy().estimate([[0, 1], [0, 1], [2, 3], [4, 5]]).bits
        1.5
    """

    def estimate(self, x, *, p=None) -> EntropyEstimate:
        t, stacked = _as_stacked(x, "x")
        if stacked:
            raise ValueError(f"x must be 1-D or 2-D, got shape {_shape(x)}")
        n = t.shape[1]
        h, m = _entropies(_grouped_codes(t, 1), probabilities(p, n, t.device), n, 1)
        return EntropyEstimate(float(h[0]), n, self.name, self.get_params(), diagnostics={"n_symbols": int(m[0])})
