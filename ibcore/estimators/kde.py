"""The pairwise-distance (KDE) bounds on the information of a noisy layer: Kolchinsky & Tracey (2017), as Saxe et al.
(ICLR 2018) use them to measure deterministic networks.

Add Gaussian noise of variance ``noise_variance`` to a layer whose values on the N inputs are the centres c_i: the
noisy layer T is the equal-weight Gaussian mixture p(t) = 1/N sum_i N(t; c_i, s^2 I). Its entropy has no closed
form, but it is bracketed by pairwise distances between the components (Kolchinsky & Tracey 2017, Theorems 2-3):

    H_D(T) = H(T | C) - 1/N sum_i ln( 1/N sum_j exp(-D(p_i || p_j)) ),     H(T | C) = d/2 ln(2 pi e s^2)

is an upper bound with D the Kullback-Leibler divergence, ||c_i - c_j||^2 / (2 s^2), and a lower bound with D the
Bhattacharyya distance, ||c_i - c_j||^2 / (8 s^2). With one centre per input, I(X;T) = H(T) - H(T | C), so the
``kl`` estimate is an upper bound on I(X;T) (and the ``bhattacharyya`` one a lower bound): at most ln N, which it
reaches when the centres are far apart compared with the noise, and 0 when they coincide.

For a discrete variable Y that groups the inputs (class labels), I(T;Y) = H(T) - sum_y p(y) H(T | Y = y), and each
term is bracketed the same way with the mixture of that group's centres. Saxe et al. report the difference of the two
upper bounds; it is an estimate, not a bound (the two terms' errors need not cancel), at most H(Y), the plug-in
entropy of the groups (``diagnostics["bound"]``), and it may be negative.

References:
    Kolchinsky & Tracey (2017). Estimating mixture entropy with pairwise distances. Entropy 19(7), 361.
    Kolchinsky, Tracey & Wolpert (2019). Nonlinear information bottleneck. Entropy 21(12), 1181.
    Saxe, Bansal, Dapello, Advani, Kolchinsky, Tracey & Cox (2018). On the information bottleneck theory of deep
    learning. ICLR. (Noise variance 1e-3 in their code.)
"""

from __future__ import annotations

import math

import torch

from ._validation import as_samples, check_same_length, resolve_device
from .discrete import plugin_entropy, row_codes
from .interface import MIEstimate, MIEstimator, register

__all__ = ["KDEBound"]

DISTANCES = ("kl", "bhattacharyya")
_CHUNK_ELEMENTS = 2**22  # float64 distances per chunk (32 MB)


def check_noise_variance(v) -> float:
    """The variance of the added noise: a positive finite number, else ``ValueError`` naming it."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"noise_variance must be a positive finite number, got {v!r}")
    return float(v)


def layer_and_groupings(x, ys, names, device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A layer's values ``x`` as float64 rows on ``device`` and each discrete ``y`` (named ``names``) as dense codes
    of its rows, checked to have as many rows as ``x``."""
    c = as_samples(x, "x", device=resolve_device(device), float_dtype=torch.float64)
    groupings = []
    for y, name in zip(ys, names):
        codes = row_codes(as_samples(y, name, keep_integer=True, device=c.device))
        check_same_length(c, codes, ("x", name))
        groupings.append(codes)
    return c, groupings


def _log_mean_kernels(c: torch.Tensor, groupings: list[torch.Tensor], scale: float) -> tuple[torch.Tensor, list]:
    """For every centre i: ln(1/N sum_j exp(-scale |c_i - c_j|^2)) over all centres, and for each grouping of the
    rows (dense codes) the same over the centres of its own group; float64, in chunks of rows, one pass over the
    kernels for all groupings.

    No log-sum-exp shift is needed: the largest kernel of every row is its own, exp(0) = 1, so each sum lies in
    [1, N] and the kernels that underflow to 0 weigh less than 1e-300 against it. Each chunk is three passes over
    its kernels: one matrix product gives the exponents, one ``exp`` in place, one reduction per grouping (a sum, or
    for a few groups a product with their indicator matrix); exponents below -700 are raised to it first (a kernel
    of 1e-304 instead of one that underflows, the same sums in float64)."""
    n = c.shape[0]
    sizes = [torch.bincount(codes).to(torch.float64) for codes in groupings]
    # every row its own group (input ids): its own kernel, ln 1 = 0; a few groups: an indicator matrix
    kinds = ["singletons" if bool((sz <= 1).all()) else "few" if len(sz) <= 64 else "many" for sz in sizes]
    indicators = [torch.nn.functional.one_hot(codes, len(sz)).to(torch.float64) if kind == "few" else None
                  for codes, sz, kind in zip(groupings, sizes, kinds)]  # fmt: skip
    sq = (c * c).sum(1)
    # -scale |a - b|^2 = [a, |a|^2, 1] . [2 scale b, -scale, -scale |b|^2] (one matrix product) unless the squares
    # overflow (values beyond ~1e150); then the differences themselves, whose squares may be infinite (a kernel of 0)
    # but never inf - inf
    direct = not bool(torch.isfinite(sq * (2.0 * scale)).all())
    if not direct:
        left = torch.cat([c, sq[:, None], torch.ones_like(sq)[:, None]], dim=1)
        right = torch.cat([2.0 * scale * c, torch.full_like(sq, -scale)[:, None], -scale * sq[:, None]], dim=1).T
    chunk = max(1, _CHUNK_ELEMENTS // max(n * (c.shape[1] if direct else 1), 1))
    all_out, own_out = [], [[] for _ in groupings]
    for lo in range(0, n, chunk):
        rows = slice(lo, lo + chunk)
        if direct:
            logk = ((c[rows, None, :] - c[None, :, :]) ** 2).sum(-1).mul_(-scale)
        else:
            logk = left[rows] @ right
        m = logk.shape[0]
        logk[torch.arange(m, device=c.device), torch.arange(lo, lo + m, device=c.device)] = 0.0
        k = logk.clamp_min_(-700.0).exp_()  # exp of underflowing arguments is a slow path (8x)
        all_out.append(k.sum(1).log_() - math.log(n))
        for out, codes, sz, kind, ind in zip(own_out, groupings, sizes, kinds, indicators):
            if kind == "singletons":
                out.append(torch.zeros(m, dtype=k.dtype, device=c.device))
                continue
            if kind == "few":
                own = (k @ ind).gather(1, codes[rows, None]).squeeze(1)
            else:
                own = torch.where(codes[rows, None] == codes[None, :], k, 0.0).sum(1)
            out.append(own.log_() - sz[codes[rows]].log())
    return torch.cat(all_out), [torch.cat(out) for out in own_out]


@register("kde")
class KDEBound(MIEstimator):
    """I(T;Y) of a layer made noisy, T = C + N(0, noise_variance I), by the pairwise-distance bounds on Gaussian
    mixture entropy (Kolchinsky & Tracey 2017; the "KDE" estimator of Saxe et al. 2018).

    Arguments:
        noise_variance: The variance of the added noise (Saxe et al.: 1e-3; it sets the scale at which two inputs
            count as distinct).
        distance: ``"kl"`` (Kullback-Leibler distances: the upper bound) or ``"bhattacharyya"`` (the lower bound).
        device: Where to compute (``None``: where the data are).

    ``estimate(x, y)``: rows of ``x`` are the layer's values (the centres), ``y`` a discrete variable of the same
    rows (input ids for I(X;T), class labels for I(T;Y)). With one row per value of ``y`` the ``kl`` estimate is an
    upper bound on I(X;T), the ``bhattacharyya`` one a lower bound; with groups it is the difference of two bounds.
    ``diagnostics``: ``h_t`` and ``h_t_given_x`` (the bounds on H(T) and on H(T | Y), nats), ``n_inputs`` (groups
    of ``y``) and ``bound`` (the plug-in entropy of ``y``, which the estimate cannot exceed).
    ``estimate_batch(x, [y1, y2, ...])`` with one ``x``: every estimate from one pass over the kernels of ``x``
    (about the cost of one), the same numbers as separate estimates.

    Example:
        >>> import torch
        >>> c = torch.tensor([[0.0], [0.0], [5.0], [5.0]])  # two pairs of coinciding centres, far apart
        >>> r = KDEBound(noise_variance=0.01).estimate(c, [0, 1, 2, 3])
        >>> round(r.value, 4), round(math.log(2), 4)  # two distinguishable values: ln 2, not ln 4
        (0.6931, 0.6931)
        >>> round(KDEBound(noise_variance=0.01).estimate(c, [0, 0, 1, 1]).value, 4)  # the labels are the pairs
        0.6931
    """

    # the layer's values as they are (a deterministic network, as Saxe et al. measure it), so that the information
    # plane gives it the layers; the centres of a noisy network's replicas can be passed directly, with input ids
    x_role, y_role = "continuous", "discrete"
    bound = "H(y), the plug-in entropy of the groups"

    def __init__(self, noise_variance: float = 1e-3, distance: str = "kl", device=None):
        self.noise_variance, self.distance, self.device = noise_variance, distance, device

    def _estimate(self, x, y, p) -> MIEstimate:
        return self._shared(x, [y], ["y"])[0]

    def _estimate_batch(self, xs, ys, ps, s) -> list[MIEstimate]:
        if len(xs) == 1 and len(ys) > 1:  # one layer, several groupings (input ids and labels): one kernel pass
            return self._shared(xs[0], ys, [f"y[{j}]" for j in range(len(ys))])
        return super()._estimate_batch(xs, ys, ps, s)

    def _shared(self, x, ys, names) -> list[MIEstimate]:
        v = check_noise_variance(self.noise_variance)
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}")
        c, groupings = layer_and_groupings(x, ys, names, self.device)
        n, d = c.shape
        scale = 1.0 / ((2.0 if self.distance == "kl" else 8.0) * v)
        log_all, log_own = _log_mean_kernels(c, groupings, scale)
        h_c = 0.5 * d * math.log(2 * math.pi * math.e * v)  # H(T | C): the Gaussian's entropy
        h_t = h_c - float(log_all.mean())
        out = []
        for codes, own in zip(groupings, log_own):
            h_t_y = h_c - float(own.mean())
            h_y, n_inputs = plugin_entropy(codes)
            out.append(MIEstimate(h_t - h_t_y, n, self.name, self.get_params(),
                                  diagnostics={"h_t": h_t, "h_t_given_x": h_t_y, "n_inputs": n_inputs,
                                               "bound": h_y}))  # fmt: skip
        return out
