"""The sample-propagation (SP) estimator of Goldfeld et al. (ICML 2019) for noisy networks.

In a noisy network every hidden layer is T = f(T_prev) + Z with Z ~ N(0, noise_std^2 I). Given the input X = x, the
layer is a Gaussian mixture: centred at f(x) for the first layer, and at the values f(t_prev) of noisy-propagated
replicas of the previous layer for deeper ones. Over a finite input set the layer T is itself a Gaussian mixture
with all those centres. Both are smoothed versions of a finite set of points, so

    h(T)     = - E log p(T),          p(t)     = mean_k N(t; c_k, noise_std^2 I)        (all centres)
    h(T | X) = - E log p(T | X),      p(t | x) = mean_{k in x} N(t; c_k, noise_std^2 I)  (the centres of x)

and I(X;T) = h(T) - h(T|X) = E[log p(T|X) - log p(T)] over (X, T) drawn from the joint. The expectations are
Monte Carlo averages over points t = c_k + noise_std * z; the densities are exact log-sum-exps over the centres,
computed in float64 in chunks on the data's device. Using the same points for both terms makes the MI estimate's
Monte Carlo error much smaller than either entropy's; the reported ``std`` is its standard error. Centres that
spread over 1e6 noise standard deviations, or a noise_std outside 1e-100..1e100, would lose the precision (or
overflow the range) of the fast ``|t|^2 + |c|^2 - 2 t.c`` form of the squared distances: their distances are then
taken from the centre differences in units of the noise, exactly at any scale (1e200 or 1e-200 included).

The estimators take the centres as data:

* ``SamplePropagation.estimate(x, y)``: ``x`` holds the centres (the representation side), one row each (several
  rows per input for deeper layers: the replicas); ``y`` says which input (or class) each row belongs to. Inputs
  are weighted by their share of rows. For the first layer (one centre per input) p(t | x) is the Gaussian itself
  and h(T | X) is d/2 ln(2 pi e noise_std^2) exactly. I(T;Y) is ``estimate(centres, labels)``;
  ``estimate_batch(centres, [ids, labels])`` gives both from the same points and one pass over the distances.
* ``GaussianMixtureEntropy.estimate(x)``: h of the equal-weight mixture of N(x_k, noise_std^2 I).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._validation import as_samples, check_positive_int, check_same_length, resolve_device
from .discrete import row_codes
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, MIEstimator, register

__all__ = ["SamplePropagation", "GaussianMixtureEntropy", "gaussian_entropy"]

# float64 distances per chunk: 128 MB on a GPU; 16 MB on the CPU, where the passes over a chunk (distances, max,
# exp, sums) are bound by memory and a chunk nearer the cache's size makes an estimate of 409,600 centres about 1.6
# times faster (measured on a 2-core EPYC VM)
_CHUNK_ELEMENTS = {"cuda": 2**24, "cpu": 2**21}


def _chunk_elements(device: torch.device) -> int:
    return _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS["cpu"])


def gaussian_entropy(dim: int, noise_std: float) -> float:
    """Differential entropy (nats) of N(0, noise_std^2 I_dim): dim/2 ln(2 pi e noise_std^2).

    Example:
        >>> round(gaussian_entropy(2, 1.0), 4), round(gaussian_entropy(2, 1e200) - 2 * math.log(1e200), 4)
        (2.8379, 2.8379)
    """
    if _SAFE_NOISE[0] <= noise_std <= _SAFE_NOISE[1]:
        return 0.5 * dim * math.log(2 * math.pi * math.e * noise_std**2)
    return dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(noise_std))  # noise_std**2 would overflow


def _check_noise_std(noise_std) -> float:
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not (
        math.isfinite(noise_std) and noise_std > 0
    ):
        raise ValueError(f"noise_std must be a positive finite number, got {noise_std!r}")
    return float(noise_std)


# The squared distances are computed as |t|^2 + |c|^2 - 2 t.c (a matrix product, fast) relative to the centres'
# mean. That form loses the precision of a point's distance to its own centre when the centres spread far in units
# of the noise (relative error about spread^2 * 2^-52: 1e-4 at a spread of 1e6, all of it from 1e8 on) and
# overflows when noise_std**2 or the coordinates' squares leave float64's range. Beyond these limits the distances
# are taken from the centre differences directly, in units of the noise: u = (c_k - c_j) / noise_std + z for the
# point c_k + noise_std * z, exact for the own centre (u = z) and overflowing only to a kernel of exactly 0.
_EXPANDED_MAX_SPREAD = 1e6
_SAFE_NOISE = (1e-100, 1e100)


def _direct(c: torch.Tensor, noise_std: float) -> bool:
    # whether the distances must come from the centre differences (see _EXPANDED_MAX_SPREAD); one host sync
    if not _SAFE_NOISE[0] <= noise_std <= _SAFE_NOISE[1]:
        return True
    spread = float((c - c.mean(0)).abs().max()) / noise_std  # NaN where the mean overflows: direct too
    return not spread <= _EXPANDED_MAX_SPREAD


def _mc_points(c: torch.Tensor, n_mc: int, noise_std: float, generator: torch.Generator):
    # Points t = c_k + noise_std * z, with the centres k stratified: every centre equally often (+- 1).
    k = c.shape[0]
    order = torch.randperm(k, generator=generator)
    idx = order.repeat(n_mc // k + 1)[:n_mc].to(c.device)
    z = torch.randn(n_mc, c.shape[1], generator=generator, dtype=torch.float64).to(c.device)
    return idx, c[idx] + noise_std * z, z


_BLOCK_GROUPS = 16  # a partition with at most this many groups is read off the full distance pass


def _logsumexp_rows(x: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp(x, dim=1)`` to float rounding, faster on mixture kernels: with a narrow noise most terms
    lie thousands below the row's largest, and ``exp`` of arguments that underflow takes a slow path (about 8x).
    Terms more than 700 below the largest are raised to that (each then weighs e^-700 ~ 1e-304 against the largest
    term's 1: the sum is unchanged in float64). Rows that are all -inf stay -inf."""
    m = x.amax(1, keepdim=True)
    finite = torch.isfinite(m)
    shift = torch.where(finite, m, torch.zeros_like(m))
    out = (x - shift).clamp_min_(-700.0).exp_().sum(1, keepdim=True).log_() + shift
    return torch.where(finite, out, m).squeeze(1)


def _log_densities(t, c, noise_std, partitions=(), points=None):
    """log p(t) under the mixture of all centres, and log p(t | group) for each partition of the centres.

    ``partitions`` is a sequence of ``(groups_t, groups_c)``: the group of each point and of each centre (codes
    0..G-1). Returns ``(log_p, [log_p_group, ...])``. One pass over the point-centre distances, chunked over points,
    serves log p(t) and the first partition with few groups (labels): the centres are sorted by that partition and
    each group's log-sum-exp is taken over its contiguous block. The other partitions (input ids: many small groups)
    gather each point's own centres. Coordinates are taken relative to the centres' mean, which keeps the
    ``|t|^2 + |c|^2 - 2 t.c`` form of the distances accurate. ``points``, the ``(idx, z)`` that made
    ``t = c[idx] + noise_std * z``, lets centres that spread too far for that form (:func:`_direct`) be handled
    exactly, from the centre differences.
    """
    k, d = c.shape
    direct = points is not None and _direct(c, noise_std)
    if direct:
        norm = -0.5 * d * math.log(2 * math.pi) - d * math.log(noise_std)
    else:
        origin = c.mean(0)
        t, c = t - origin, c - origin
        norm = -0.5 * d * math.log(2 * math.pi * noise_std**2)
    sizes = [torch.bincount(gc) for _, gc in partitions]
    block = next((j for j, n in enumerate(sizes) if n.numel() <= _BLOCK_GROUPS), None)
    if block is not None:
        c_sorted = c[torch.argsort(partitions[block][1], stable=True)]
        ends = torch.cumsum(sizes[block], 0).tolist()
        bounds = list(zip([0] + ends[:-1], ends))
    else:
        c_sorted = c
    if direct:
        chunk = max(1, _chunk_elements(c.device) // max(k * d, 1))
    else:
        c_sq = (c_sorted * c_sorted).sum(1)
        c_t = c_sorted.T.contiguous()
        chunk = max(1, _chunk_elements(c.device) // max(k, 1))
    out, out_block = [], []
    for lo in range(0, t.shape[0], chunk):
        if direct:
            logk = _direct_log_kernels(c, c_sorted[None], points, lo, chunk, noise_std)
        else:
            tc = t[lo : lo + chunk]
            d2 = torch.addmm(c_sq + (tc * tc).sum(1, keepdim=True), tc, c_t, alpha=-2.0).clamp_min_(0.0)  # one pass
            logk = d2.mul_(-0.5 / noise_std**2)
        if block is None:
            out.append(_logsumexp_rows(logk))
            continue
        per_group = torch.stack([_logsumexp_rows(logk[:, a:b]) for a, b in bounds], dim=1)
        out.append(torch.logsumexp(per_group, dim=1))
        out_block.append(per_group.gather(1, partitions[block][0][lo : lo + chunk].unsqueeze(1)).squeeze(1))
    log_p = torch.cat(out) - math.log(k) + norm
    log_groups = []
    for j, (gt, gc) in enumerate(partitions):
        if j == block:
            log_groups.append(torch.cat(out_block) - sizes[j][gt].to(torch.float64).log() + norm)
        else:
            log_groups.append(_group_log_density(t, gt, c, gc, sizes[j], noise_std, norm, points if direct else None))
    return log_p, log_groups


def _direct_log_kernels(c, centres, points, lo, chunk, noise_std):
    # -|t - c_j|^2 / (2 noise_std^2) for the points lo:lo+chunk, t = c[idx] + noise_std * z, from the centre
    # differences in units of the noise; ``centres`` (1 or chunk, m, d) are the c_j each point is compared with.
    idx, z = points
    u = (c[idx[lo : lo + chunk]].unsqueeze(1) - centres) / noise_std + z[lo : lo + chunk].unsqueeze(1)
    return u.square_().sum(-1).mul_(-0.5)


def _group_log_density(t, groups_t, c, groups_c, sizes, noise_std, norm, points=None):
    # log p(t | group) for each point, against only the centres of its own group (gathered, padded to the largest
    # group): O(points x group size) instead of O(points x all centres).
    d = c.shape[1]
    order = torch.argsort(groups_c, stable=True)
    sorted_c = c[order]
    starts = torch.cumsum(sizes, 0) - sizes
    width = int(sizes.max())
    offsets = torch.arange(width, device=c.device)
    chunk = max(1, _chunk_elements(c.device) // (width * d))
    out = []
    for lo in range(0, t.shape[0], chunk):
        g = groups_t[lo : lo + chunk]
        valid = offsets < sizes[g].unsqueeze(1)
        idx = torch.where(valid, starts[g].unsqueeze(1) + offsets, 0)
        if points is not None:  # the direct form (see _log_densities)
            logk = _direct_log_kernels(c, sorted_c[idx], points, lo, chunk, noise_std).masked_fill_(~valid, -math.inf)
        else:
            d2 = ((t[lo : lo + chunk].unsqueeze(1) - sorted_c[idx]) ** 2).sum(-1)
            logk = (-d2 / (2.0 * noise_std**2)).masked_fill_(~valid, -math.inf)
        out.append(_logsumexp_rows(logk) - sizes[g].to(torch.float64).log() + norm)
    return torch.cat(out)


@register("sp")
class SamplePropagation(MIEstimator):
    """I(X;T) of a noisy layer T = C + noise_std * Z, from the centres C of each input (sample propagation).

    Arguments:
        noise_std: The standard deviation of the network's Gaussian noise (Goldfeld et al.'s beta).
        n_mc: Monte Carlo points (stratified over the centres).
        seed: Seed of the local generator of the Monte Carlo points.
        device: Where to compute (``None``: where the centres are).

    ``estimate(x, y)``: rows of ``x`` are the centres, rows of ``y`` discrete input ids (or labels); each input's
    conditional law is the equal-weight mixture of its centres. Returns nats, with ``std`` the Monte Carlo standard
    error and ``diagnostics`` holding ``h_t``, ``h_t_given_x`` (and their standard errors), the number of inputs and
    whether the conditional entropy was exact (one centre per input).

    Example:
        >>> import torch
        >>> c = torch.tensor([[0.0], [10.0]])  # two inputs, far apart compared with the noise
        >>> r = SamplePropagation(noise_std=1.0, n_mc=2000).estimate(c, [0, 1])
        >>> abs(r.value - math.log(2)) < 0.01, r.diagnostics["exact_conditional"]
        (True, True)
    """

    x_role, y_role = "centres", "discrete"
    batched = True
    bound = "ln(number of inputs of y)"

    def __init__(self, noise_std: float = 1.0, n_mc: int = 10000, seed: int = 0, device=None):
        self.noise_std, self.n_mc, self.seed, self.device = noise_std, n_mc, seed, device

    def _estimate(self, x, y, p) -> MIEstimate:
        return self._shared_points(x, [y])[0]

    def _estimate_batch(self, xs, ys, ps, s) -> list[MIEstimate]:
        if len(xs) == 1:  # one layer, several other sides: the same Monte Carlo points for all
            return self._shared_points(xs[0], ys)
        return super()._estimate_batch(xs, ys, ps, s)

    def _shared_points(self, x, ys: Sequence) -> list[MIEstimate]:
        """I(T;Y_j) of the layer with centres ``x`` for each discrete variable ``Y_j`` in ``ys`` (e.g. input ids
        and labels), all from the same Monte Carlo points and one pass over the distances to the centres, which
        costs about as much as a single estimate."""
        sigma = _check_noise_std(self.noise_std)
        n_mc = check_positive_int(self.n_mc, "n_mc", 2)
        dev = resolve_device(self.device)
        names = [f"y[{j}]" if len(ys) > 1 else "y" for j in range(len(ys))]
        tc = as_samples(x, "x", device=dev, float_dtype=torch.float64)
        txs = [as_samples(v, name, keep_integer=True, device=tc.device) for v, name in zip(ys, names)]
        for tx, name in zip(txs, names):
            check_same_length(tc, tx, ("x", name))
        groups = [row_codes(tx) for tx in txs]
        g = torch.Generator().manual_seed(int(self.seed))
        idx, t, z = _mc_points(tc, n_mc, sigma, g)
        log_p, log_groups = _log_densities(t, tc, sigma, [(gr[idx], gr) for gr in groups], points=(idx, z))
        h_t, h_t_std = float(-log_p.mean()), float(log_p.std() / math.sqrt(n_mc))
        results = []
        for gr, log_pg in zip(groups, log_groups):
            n_inputs = int(gr.max()) + 1
            exact = n_inputs == tc.shape[0]
            if exact:  # one centre per input: p(t | x) is the Gaussian itself
                h_tx, se_tx = gaussian_entropy(tc.shape[1], sigma), 0.0
            else:
                h_tx, se_tx = float(-log_pg.mean()), float(log_pg.std() / math.sqrt(n_mc))
            diff = log_pg - log_p  # log p(t|x) - log p(t) at points from the joint
            results.append(MIEstimate(
                float(diff.mean()), tc.shape[0], self.name, self.get_params(), std=float(diff.std() / math.sqrt(n_mc)),
                diagnostics={"h_t": h_t, "h_t_std": h_t_std, "h_t_given_x": h_tx, "h_t_given_x_std": se_tx,
                             "n_inputs": n_inputs, "exact_conditional": exact, "bound": math.log(n_inputs)},
            ))  # fmt: skip
        return results


@register("sp-entropy")
class GaussianMixtureEntropy(EntropyEstimator):
    """Differential entropy of the equal-weight Gaussian mixture (1/K) sum_k N(c_k, noise_std^2 I), Monte Carlo.

    Arguments: as :class:`SamplePropagation`. ``std`` is the Monte Carlo standard error.

    Example:
        >>> r = GaussianMixtureEntropy(noise_std=1.0, n_mc=20000).estimate([[0.0, 0.0]])
        >>> abs(r.value - gaussian_entropy(2, 1.0)) < 4 * r.std
        True
    """

    x_role = "centres"

    def __init__(self, noise_std: float = 1.0, n_mc: int = 10000, seed: int = 0, device=None):
        self.noise_std, self.n_mc, self.seed, self.device = noise_std, n_mc, seed, device

    def _estimate(self, x, p) -> EntropyEstimate:
        sigma = _check_noise_std(self.noise_std)
        n_mc = check_positive_int(self.n_mc, "n_mc", 2)
        tc = as_samples(x, "x", device=resolve_device(self.device), float_dtype=torch.float64)
        g = torch.Generator().manual_seed(int(self.seed))
        idx, t, z = _mc_points(tc, n_mc, sigma, g)
        log_p, _ = _log_densities(t, tc, sigma, points=(idx, z))
        return EntropyEstimate(float(-log_p.mean()), tc.shape[0], self.name, self.get_params(),
                               std=float(log_p.std() / math.sqrt(n_mc)))  # fmt: skip
