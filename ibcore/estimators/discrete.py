"""Plug-in (maximum-likelihood) entropy and mutual information of discrete variables.

A sample is a row; two samples are the same symbol when their rows are exactly equal (integer codes, or floats such
as the outputs of a quantized layer). For a finite data set taken as the whole population, such as the 4096 inputs
of the SZT task with a deterministic network, the plug-in values are the exact entropies of the empirical
distribution.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validation import as_samples, check_choice, check_same_length
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, MIEstimator, register

__all__ = ["DiscreteEntropy", "DiscreteMI", "row_codes", "plugin_entropy"]


_PACK_LIMIT = 2**62  # keep packed keys inside int64


def _column_codes(col: torch.Tensor) -> tuple[torch.Tensor, int]:
    # Codes in [0, r) of one column, and r.
    if not col.is_floating_point():
        c = col - col.min()
        r = int(c.max()) + 1
        if r < 2**31:
            return c, r
    values, c = torch.unique(col, return_inverse=True)
    return c, values.numel()


def row_codes(t: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Integer code in ``[0, n_distinct)`` of each row of a 2-D tensor; equal rows get equal codes.

    Rows are hashed to one int64 key from the exact bit patterns of their values (-0.0 and 0.0 are one value) and
    the keys are numbered with one ``torch.unique``; every row is then compared with its code's representative row,
    so a hash collision is detected (and the rows are coded again by exact column packing), never silently merged.
    This is an order of magnitude faster than ``torch.unique(dim=0)`` or a unique per column on layer sizes of this
    book, on CPU and CUDA.

    Arguments:
        t: ``(N, d)`` rows.
        groups: Optional non-negative integer group of each row ``(N,)``; equal rows of different groups get
            different codes (used to code several stacked networks' layers at once).
    """
    bits = _exact_bits(t)
    if groups is not None:
        bits = torch.cat([groups.to(torch.int64).view(-1, 1), bits], dim=1)
    if bits.shape[1] == 1:
        return torch.unique(bits[:, 0], return_inverse=True)[1]
    if bits.shape[1] > _HASH_MULTIPLIERS.numel():
        return _packed_row_codes(t, groups)
    keys = (bits * _HASH_MULTIPLIERS[: bits.shape[1]].to(bits.device)).sum(dim=1)  # arithmetic modulo 2**64
    codes = torch.unique(keys, return_inverse=True)[1]
    representative = torch.empty(int(codes.max()) + 1, dtype=torch.int64, device=codes.device)
    representative.scatter_(0, codes, torch.arange(codes.numel(), device=codes.device))
    if torch.equal(bits, bits[representative[codes]]):
        return codes
    return _packed_row_codes(t, groups)


def _exact_bits(t: torch.Tensor) -> torch.Tensor:
    # int64 columns that are equal exactly when the values are equal.
    if not t.is_floating_point():
        return t.to(torch.int64)
    t = t + 0.0  # -0.0 + 0.0 = +0.0: one bit pattern for zero
    if t.dtype == torch.float64:
        return t.view(torch.int64)
    return t.to(torch.float32).view(torch.int32).to(torch.int64)  # float16 and bfloat16 are exact in float32


# Odd 63-bit multipliers of the row hash (fixed, from a local generator: no global seed is touched).
_HASH_MULTIPLIERS = torch.from_numpy(
    np.random.default_rng(20221).integers(1, 2**62, size=4096, dtype=np.int64) * 2 + 1
)


def _packed_row_codes(t: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    # Exact without hashing: columns packed into one int64 key, renumbered whenever the key space would overflow.
    if groups is None:
        codes, size, first = *_column_codes(t[:, 0]), 1
    else:
        codes, size, first = groups.to(torch.int64), int(groups.max()) + 1, 0
    for j in range(first, t.shape[1]):
        c, r = _column_codes(t[:, j])
        if size * r >= _PACK_LIMIT:
            codes = torch.unique(codes, return_inverse=True)[1]
            size = int(codes.max()) + 1
        codes, size = codes * r + c, size * r
    return torch.unique(codes, return_inverse=True)[1]


def plugin_entropy(codes: torch.Tensor) -> tuple[float, int]:
    """Plug-in entropy in nats of integer symbols, and the number of distinct symbols."""
    counts = torch.unique(codes, return_counts=True)[1].to(torch.float64)
    p = counts / counts.sum()
    return float(-(p * p.log()).sum()), int(counts.numel())


def _joint_codes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Codes of the pair (a, b), where a and b are codes in [0, n_a) and [0, n_b).
    return a * (int(b.max()) + 1) + b


def _miller_madow(n_symbols: int, n: int) -> float:
    return (n_symbols - 1) / (2.0 * n)


_CORRECTIONS = ("none", "miller-madow")


@register("discrete-entropy")
class DiscreteEntropy(EntropyEstimator):
    """Plug-in entropy H(X) = -sum p ln p of the empirical distribution of the rows of ``x``.

    Arguments:
        correction: ``"none"`` (the plug-in value, exact for a finite population) or ``"miller-madow"`` (adds
            (m - 1) / 2n for m observed symbols, a first-order bias correction for samples from a larger population).

    Example:
        >>> DiscreteEntropy().estimate([0, 1, 2, 3]).bits
        2.0
    """

    x_role = "discrete"

    def __init__(self, correction: str = "none"):
        self.correction = correction

    def _estimate(self, x, p) -> EntropyEstimate:
        check_choice(self.correction, "correction", _CORRECTIONS)
        t = as_samples(x, "x")
        h, m = plugin_entropy(row_codes(t))
        if self.correction == "miller-madow":
            h += _miller_madow(m, t.shape[0])
        return EntropyEstimate(
            h, t.shape[0], self.name, self.get_params(), diagnostics={"n_symbols": m}
        )


@register("discrete")
class DiscreteMI(MIEstimator):
    """Plug-in mutual information I(X;Y) = H(X) + H(Y) - H(X,Y) of discrete rows.

    Exact (to float error) for the empirical distribution; an upward-biased estimate of the MI of a larger
    population when symbols are many compared with samples.

    Arguments:
        correction: ``"none"`` or ``"miller-madow"`` (applied to each of the three entropies).

    Example:
        >>> DiscreteMI().estimate([0, 0, 1, 1], [0, 0, 1, 1]).bits
        1.0
    """

    x_role = y_role = "discrete"
    bound = "ln min(symbols of x, symbols of y)"

    def __init__(self, correction: str = "none"):
        self.correction = correction

    def _estimate(self, x, y, p) -> MIEstimate:
        check_choice(self.correction, "correction", _CORRECTIONS)
        tx, ty = as_samples(x, "x"), as_samples(y, "y")
        check_same_length(tx, ty)
        return mi_from_codes(row_codes(tx), row_codes(ty), self)


def mi_from_codes(cx: torch.Tensor, cy: torch.Tensor, est) -> MIEstimate:
    """Plug-in MI of two code vectors, reported as estimator ``est`` (which has ``correction``)."""
    n = cx.shape[0]
    hx, mx = plugin_entropy(cx)
    hy, my = plugin_entropy(cy)
    hxy, mxy = plugin_entropy(_joint_codes(cx, cy))
    value = hx + hy - hxy
    if getattr(est, "correction", "none") == "miller-madow":
        value += _miller_madow(mx, n) + _miller_madow(my, n) - _miller_madow(mxy, n)
    # Plug-in MI is >= 0 mathematically; float error can leave -1e-16. Report it raw (no clipping).
    return MIEstimate(
        value,
        n,
        est.name,
        est.get_params(),
        diagnostics={"h_x": hx, "h_y": hy, "h_xy": hxy, "n_symbols_x": mx, "n_symbols_y": my,
                     "n_symbols_xy": mxy, "bound": math.log(min(mx, my))},
    )  # fmt: skip
