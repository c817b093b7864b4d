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


def _stack(tables: list, name: str) -> torch.Tensor:
    # (S, N, d) from S tables (one table: S = 1), each validated
    if len(tables) == 1:
        return _as_stacked(tables[0], name)[0]
    parts = [_as_stacked(t, f"{name}[{i}]") for i, t in enumerate(tables)]
    if any(stacked for _, stacked in parts):
        raise ValueError(f"{name} must be a list of 1-D or 2-D tables or one (S, N, d) array, not a list of stacks")
    shapes = {tuple(t.shape) for t, _ in parts}
    if len(shapes) > 1:
        raise ValueError(f"the tables of {name} must have one shape, got {sorted(shapes)}")
    return torch.cat([t for t, _ in parts])


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


def _side(t: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, int, torch.Tensor | None, int]:
    """Codes of the rows of ``t`` (S, N, d) for ``n_groups`` networks.

    Returns ``(codes, size, local, k)``: ``codes`` is a flat ``(n_groups * N,)`` tensor in ``[0, size)``, distinct
    across groups; for a table shared by every group (S = 1), ``local`` are its codes in ``[0, k)`` before the
    per-group offset (else ``None``).
    """
    s, n, d = t.shape
    if s == n_groups:
        groups = torch.arange(s, device=t.device).repeat_interleave(n)
        codes = row_codes(t.reshape(s * n, d), groups)
        return codes, int(codes.max()) + 1, None, 0
    local = row_codes(t[0])  # one table shared by every group: code it once and offset it per group
    k = int(local.max()) + 1
    offsets = torch.arange(n_groups, device=t.device).unsqueeze(1) * k
    return (offsets + local).reshape(-1), n_groups * k, local, k


def _dense(codes: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    # Codes in a range small enough to count in directly, renumbered when the range is much larger than the data.
    if size <= 8 * codes.numel():
        return codes, size
    codes = torch.unique(codes, return_inverse=True)[1]
    return codes, int(codes.max()) + 1


def _entropies(codes: torch.Tensor, size: int, weights: torch.Tensor, rows_group: torch.Tensor, n_groups: int):
    # Entropy (nats) and number of distinct symbols of each group, from codes in [0, size) and per-row weights.
    q = torch.zeros(size, dtype=torch.float64, device=codes.device).index_add_(0, codes, weights)
    g = torch.zeros(size, dtype=torch.int64, device=codes.device).scatter_(0, codes, rows_group)
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
    ``estimate(t, input_ids)`` is I(X;T) = H(T) and ``estimate(t, labels)`` is I(T;Y).

    ``estimate_batch(x, y, p=None)`` does the same for S stacked networks at once (``x`` or ``y`` of shape
    ``(S, N, d)`` or a list of S tables, the other shared or stacked), in one pass on the data's device; several
    ``p`` are one pass each.

    ``diagnostics``: ``h_x``, ``h_y``, ``h_xy``, the numbers of distinct symbols, and ``y_function_of_x`` /
    ``x_function_of_y`` (exact, from the symbol counts on the support of ``p``).

    Example:
        >>> round(ExactMI().estimate([0, 1, 2, 3], [0, 0, 1, 1]).bits, 12)
        1.0
        >>> r = ExactMI().estimate([0, 1, 2, 3], [0, 0, 1, 1], p=[0.5, 0.0, 0.125, 0.375])
        >>> round(r.bits, 12), r.diagnostics["n_symbols_x"]  # the outcome with p = 0 is not a symbol
        (1.0, 3)
    """

    x_role = y_role = "discrete"
    weighted = batched = True
    bound = "ln min(symbols of x, symbols of y)"

    def _estimate(self, x, y, p) -> MIEstimate:
        tx, sx = _as_stacked(x, "x")
        ty, sy = _as_stacked(y, "y")
        for name, arg, stacked in (("x", x, sx), ("y", y, sy)):
            if stacked:
                raise ValueError(f"{name} must be 1-D or 2-D (estimate_batch takes stacked networks), "
                                 f"got shape {_shape(arg)}")  # fmt: skip
        return self._population(tx, ty, p)[0]

    def _estimate_batch(self, xs, ys, ps, s) -> list[MIEstimate]:
        tx, ty = _stack(xs, "x"), _stack(ys, "y")
        out = []
        for p in ps:  # every stacked network in one pass, once per weighting
            out += self._population(tx, ty, p)
        if len(ps) > 1 and s == len(ps) and len(out) > s:  # several p with one network per p: pair them up
            out = [out[i * s + i] for i in range(s)]
        return out

    def _population(self, tx: torch.Tensor, ty: torch.Tensor, p) -> list[MIEstimate]:
        if tx.shape[1] != ty.shape[1]:
            raise ValueError(f"x and y must have the same number of samples, got [{tx.shape[1]}, {ty.shape[1]}]")
        if tx.device != ty.device:
            raise ValueError(f"x and y are on different devices: [{tx.device}, {ty.device}]")
        s = max(tx.shape[0], ty.shape[0])
        if {tx.shape[0], ty.shape[0]} - {1, s}:
            raise ValueError(f"x and y must stack the same number of networks, got [{tx.shape[0]}, {ty.shape[0]}]")
        n = tx.shape[1]
        w = probabilities(p, n, tx.device).repeat(s)
        rows_group = torch.arange(s, device=tx.device).repeat_interleave(n)
        cx, size_x, local_x, kx = _side(tx, s)
        cy, size_y, local_y, ky = _side(ty, s)
        # joint codes: pair a shared table's local codes with the other side's codes (no groups-squared range)
        if local_x is not None and kx == n:  # every row of x distinct (input indices): (x, y) is coded by x
            cxy, size_xy = cx, size_x
        elif local_y is not None and ky == n:
            cxy, size_xy = cy, size_y
        elif local_x is not None:
            cxy, size_xy = cy * kx + local_x.repeat(s), size_y * kx
        elif local_y is not None:
            cxy, size_xy = cx * ky + local_y.repeat(s), size_x * ky
        else:
            cxy, size_xy = cx * size_y + cy, size_x * size_y
        hx, mx = _entropies(*_dense(cx, size_x), w, rows_group, s)
        hy, my = _entropies(*_dense(cy, size_y), w, rows_group, s)
        hxy, mxy = _entropies(*_dense(cxy, size_xy), w, rows_group, s)
        rows = zip(*(v.tolist() for v in (hx, hy, hxy, mx, my, mxy)))  # one transfer for all networks
        return [
            MIEstimate(a + b - ab, n, self.name, self.get_params(),
                       diagnostics={"h_x": a, "h_y": b, "h_xy": ab, "n_symbols_x": ma, "n_symbols_y": mb,
                                    "n_symbols_xy": mab, "y_function_of_x": mab == ma, "x_function_of_y": mab == mb,
                                    "bound": math.log(min(ma, mb))})
            for a, b, ab, ma, mb, mab in rows
        ]  # fmt: skip


@register("exact-entropy")
class ExactEntropy(EntropyEstimator):
    """Exact H(X) = -sum p ln p of a finite population of rows with probabilities ``p`` (uniform when ``None``).

    Example:
        >>> ExactEntropy().estimate([[0, 1], [0, 1], [2, 3], [4, 5]]).bits
        1.5
    """

    x_role = "discrete"
    weighted = True

    def _estimate(self, x, p) -> EntropyEstimate:
        t, stacked = _as_stacked(x, "x")
        if stacked:
            raise ValueError(f"x must be 1-D or 2-D, got shape {_shape(x)}")
        n = t.shape[1]
        codes, size, _, _ = _side(t, 1)
        h, m = _entropies(codes, size, probabilities(p, n, t.device), torch.zeros_like(codes), 1)
        return EntropyEstimate(float(h[0]), n, self.name, self.get_params(), diagnostics={"n_symbols": int(m[0])})
