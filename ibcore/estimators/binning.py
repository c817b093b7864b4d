"""Binning estimators: discretize continuous values into bins, then take plug-in entropies.

This is how Shwartz-Ziv & Tishby (2017) and Saxe et al. (2018) measured the information plane of deterministic
networks: each neuron's activation is put into one of ``n_bins`` equal bins (or bins of width ``bin_width``) and a
layer's state is the tuple of bin indices. For a finite input set with X uniform over distinct inputs and a
deterministic network, I(X; Bin(T)) = H(Bin(T)). The result measures the geometry of the binned representation,
not information in the network: it depends on the bin size (Goldfeld et al., 2019, Fig. 1; Lorenzen et al., 2022,
App. A), which is why the book shows it at several sizes.

Integer and boolean inputs (class labels, input indices) are taken as symbols and never binned.

References:
    Shwartz-Ziv & Tishby (2017). Opening the black box of deep neural networks via information. arXiv:1703.00810.
    Saxe et al. (2018). On the information bottleneck theory of deep learning. ICLR.
"""

from __future__ import annotations

import math

import torch

from ._validation import as_samples, check_positive_int, check_same_length
from .discrete import mi_from_codes, plugin_entropy, row_codes
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, MIEstimator, register

__all__ = ["Binning", "BinnedEntropy", "bin_codes", "mass_bin_codes", "resolve_bounds"]


def resolve_bounds(t: torch.Tensor, bounds, name: str) -> tuple[float, float]:
    """``(lo, hi)`` for binning ``t``: its own range for ``bounds="layer"``, else the given pair (checked)."""
    if isinstance(bounds, str):
        if bounds != "layer":
            raise ValueError(f"bounds must be 'layer' or a pair (lo, hi), got {bounds!r}")
        return float(t.min()), float(t.max())
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be 'layer' or a pair (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    tmin, tmax = float(t.min()), float(t.max())
    if tmin < lo or tmax > hi:
        # Values outside fixed bounds would land in the edge bins (IDNNs' ReLU pitfall); refuse instead of clipping.
        raise ValueError(f"{name} has values in [{tmin:.6g}, {tmax:.6g}], outside bounds=({lo:.6g}, {hi:.6g})")
    return lo, hi


ROUNDINGS = ("floor", "nearest")
SPACINGS = ("width", "mass")


def mass_bin_codes(t: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-mass (adaptive) bin index of every entry of a 2-D float tensor: per column, the edges are the
    ``k / n_bins`` quantiles of that column's values, so each bin holds about ``N / n_bins`` of them (the adaptive
    binning of Saxe et al. 2018, App. C). Equal values share a bin, so a column with fewer than ``n_bins`` distinct
    values has fewer bins. Invariant under any increasing map of a column."""
    n_bins = check_positive_int(n_bins, "n_bins")
    t = t.to(torch.float64)
    n = t.shape[0]
    order = torch.argsort(t, dim=0, stable=True)
    sorted_t = torch.gather(t, 0, order)
    position = torch.arange(n, device=t.device)[:, None].expand_as(sorted_t)
    # equal values take the position of the first of them (ties never straddle an edge), then the bin of that rank
    new_value = torch.ones_like(sorted_t, dtype=torch.bool)
    new_value[1:] = sorted_t[1:] != sorted_t[:-1]
    first = torch.cummax(torch.where(new_value, position, 0), dim=0).values
    return torch.empty_like(order).scatter_(0, order, torch.div(first * n_bins, n, rounding_mode="floor"))


def bin_codes(t: torch.Tensor, *, n_bins=None, bin_width=None, bounds="layer", name: str = "x",
              rounding: str = "floor") -> torch.Tensor:  # fmt: skip
    """Bin index of every entry of a 2-D float tensor (same shape, int64).

    Exactly one of ``n_bins`` (equal bins spanning ``bounds``; the top edge belongs to the last bin) or
    ``bin_width`` (bins ``[lo + i w, lo + (i+1) w)`` anchored at the lower bound) must be given. With
    ``rounding="nearest"`` each value goes instead to the nearest of the levels ``lo + i w`` (``n_bins + 1`` levels
    from ``lo`` to ``hi``): the quantized estimator of Lorenzen et al. (2022) with ``n_bins = 2**bits``.
    """
    if (n_bins is None) == (bin_width is None):
        raise ValueError(f"give exactly one of n_bins and bin_width, got n_bins={n_bins!r}, bin_width={bin_width!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {list(ROUNDINGS)}, got {rounding!r}")
    lo, hi = resolve_bounds(t, bounds, name)
    t = t.to(torch.float64)
    if hi == lo:  # a constant variable (bounds "layer"): one bin
        return torch.zeros(t.shape, dtype=torch.int64, device=t.device)
    if n_bins is not None:
        n_bins = check_positive_int(n_bins, "n_bins")
        if rounding == "nearest":
            return torch.round((t - lo) * (n_bins / (hi - lo))).to(torch.int64)
        idx = torch.floor((t - lo) * (n_bins / (hi - lo)))
        # Only the top edge itself (t == hi) gives idx == n_bins; it belongs to the last bin.
        return idx.to(torch.int64).clamp_(max=n_bins - 1)
    if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float)) or not (0 < bin_width < math.inf):
        raise ValueError(f"bin_width must be a positive finite number, got {bin_width!r}")
    return (torch.round if rounding == "nearest" else torch.floor)((t - lo) / bin_width).to(torch.int64)


class _BinningParams:
    def _codes(self, x, name: str) -> torch.Tensor:
        t = as_samples(x, name, keep_integer=True, device=getattr(self, "device", None))
        if not t.is_floating_point():
            return row_codes(t)
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {list(SPACINGS)}, got {self.spacing!r}")
        if self.spacing == "mass":
            if self.bin_width is not None or self.bounds != "layer" or self.rounding != "floor":
                raise ValueError(f"spacing='mass' places the edges at the data's quantiles: it takes n_bins only, "
                                 f"with bounds='layer' and rounding='floor' (got bin_width={self.bin_width!r}, "
                                 f"bounds={self.bounds!r}, rounding={self.rounding!r})")  # fmt: skip
            return row_codes(mass_bin_codes(t, self.n_bins))
        return row_codes(bin_codes(t, n_bins=self.n_bins, bin_width=self.bin_width, bounds=self.bounds, name=name,
                                   rounding=self.rounding))  # fmt: skip

    def _defaults(self, n_bins, bin_width):
        # n_bins=30 is Shwartz-Ziv & Tishby's choice; it applies only when no bin_width is given.
        return (30 if n_bins is None and bin_width is None else n_bins), bin_width


@register("binning")
class Binning(_BinningParams, MIEstimator):
    """I(X;Y) by binning every continuous coordinate, then the plug-in MI of the binned rows.

    Arguments:
        n_bins: Number of equal bins between the bounds (30 by default, as in Shwartz-Ziv & Tishby 2017).
        bin_width: Width of the bins instead of their number (Saxe et al. 2018 used 0.07; Goldfeld et al. 2019
            show 1e-4 to 1e-1).
        bounds: ``"layer"`` (each variable's own min and max) or a fixed pair ``(lo, hi)`` such as ``(-1, 1)`` for
            tanh. Values outside fixed bounds raise ``ValueError``; they are never clipped into the edge bins.
        rounding: ``"floor"`` (equal bins) or ``"nearest"``: each value goes to the nearest of ``n_bins + 1``
            evenly spaced levels from the lower to the upper bound; ``Binning(n_bins=2**bits, bounds="layer",
            rounding="nearest")`` is the ``QuantizedEstimator(bounds="layer")`` of Lorenzen et al. (2022).
        spacing: ``"width"`` (bins of equal width, as above) or ``"mass"``: ``n_bins`` equal-mass bins per
            coordinate, their edges at the coordinate's quantiles (:func:`mass_bin_codes`; the adaptive binning of
            Saxe et al. 2018), which no increasing map of a coordinate changes.
        device: Where to compute; ``None`` follows the data.

    Example:
        >>> import numpy as np
        >>> ids = np.arange(8)                      # 8 equiprobable inputs, as integers: never binned
        >>> t = np.linspace(-1, 1, 8)[:, None]      # a 1-neuron layer
        >>> round(Binning(n_bins=2, bounds=(-1, 1)).estimate(ids, t).bits, 6)
        1.0
    """

    x_role = y_role = "any"
    bound = "ln min(occupied bins of x, occupied bins of y)"

    def __init__(self, n_bins=None, bin_width=None, bounds="layer", rounding="floor", spacing="width", device=None):
        self.n_bins, self.bin_width = self._defaults(n_bins, bin_width)
        self.bounds, self.rounding, self.spacing = bounds, rounding, spacing
        self.device = device

    def _estimate(self, x, y, p) -> MIEstimate:
        cx, cy = self._codes(x, "x"), self._codes(y, "y")
        check_same_length(cx[:, None], cy[:, None])
        return mi_from_codes(cx, cy, self)

    def _estimate_batch(self, xs, ys, ps, s):
        # A table paired with several others (a layer with the input ids and with the labels) is binned once; the
        # values are those of one estimate per pair.
        seen = {}

        def codes(t, name):
            if (id(t), name) not in seen:
                seen[id(t), name] = (t, self._codes(t, name))  # t kept alive, so that its id stays its own
            return seen[id(t), name][1]

        out = []
        for i in range(s):
            cx, cy = codes(xs[i % len(xs)], "x"), codes(ys[i % len(ys)], "y")
            check_same_length(cx[:, None], cy[:, None])
            out.append(mi_from_codes(cx, cy, self))
        return out


@register("binned-entropy")
class BinnedEntropy(_BinningParams, EntropyEstimator):
    """H(Bin(X)), the plug-in entropy of the binned rows of ``x`` (same arguments as :class:`Binning`).

    Example:
        >>> import numpy as np
        >>> BinnedEntropy(bin_width=0.5, bounds=(0, 2)).estimate(np.array([0.1, 0.2, 0.6, 1.9])).bits
        1.5
    """

    x_role = "any"

    def __init__(self, n_bins=None, bin_width=None, bounds="layer", rounding="floor", spacing="width", device=None):
        self.n_bins, self.bin_width = self._defaults(n_bins, bin_width)
        self.bounds, self.rounding, self.spacing = bounds, rounding, spacing
        self.device = device

    def _estimate(self, x, p) -> EntropyEstimate:
        codes = self._codes(x, "x")
        h, m = plugin_entropy(codes)
        return EntropyEstimate(h, codes.shape[0], self.name, self.get_params(), diagnostics={"n_symbols": m})
