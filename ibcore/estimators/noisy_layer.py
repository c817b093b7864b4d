"""The information of a noisy copy of a layer, estimated from samples: the lossy lens of the compression debate.

A deterministic layer of a network fed a finite set of inputs has I(X;T) = H(T), infinite for continuous T; Saxe et
al. (2018) measure it by adding Gaussian noise Z ~ N(0, s^2 I) and bounding I(X; T + Z) with pairwise distances
(:mod:`.kde`). This estimator measures the same noisy layer the way Butakov et al. (2024) measure theirs: compress the
layer to its ``n_components`` leading principal axes P (lossy compression: k-NN estimates are reliable only in a
few dimensions) and estimate entropies from samples:

    I(T~; Y) = h(T~) - sum_y p(y) h(T~ | Y = y),     T~ = P^T (T - mean) + Z',   Z' ~ N(0, s^2 I_m).

For orthonormal P, P^T Z has the law of Z', so T~ is the projection of the noisy layer T + Z, and by data processing
I(T~; Y) <= I(T + Z; Y), which the KDE upper bound bounds from above: on the same layer and noise the two lenses
should read the same where the layer has at most ``n_components`` units, and this one lower where compression loses
directions. ``y`` is discrete (input ids for I(X;T), class labels for I(T;Y)); ``replicas`` noisy draws of every
row are the samples.

``entropy="knn"`` (the default) is Butakov et al.'s continuous-discrete estimator, h(T~) - sum_y p(y) h(T~ | Y = y)
with every entropy by Kozachenko-Leonenko on the same draws, written as one sum over the M = N x replicas draws:

    I = psi(M) - sum_y p(y) psi(M_y) + m/M sum_j ln(eps_j / eps_j^y),

eps_j the distance from draw j to its k-th nearest draw, eps_j^y the same among the draws of its own group (M_y of
them: for input ids, the other draws of the same input). Both distances come from one sample in one metric, so the
estimator's bias largely cancels where the groups lie far apart: the two distances are then equal and I = psi(M) -
psi(replicas), ln N + 0.06 nats at 8 replicas, which is also the most it can read (eps_j <= eps_j^y). Where the
groups merge, eps_j < eps_j^y and I falls; when all rows share one value (I = 0) it reads within 0.1 nats of 0 in
1-4 dimensions at 8 replicas and k = 1 (measured on 4096 rows; k = 3 reads -0.3 nats in 4 dimensions, the
small-sample bias of a k-NN entropy of 8 draws). An exact h(T~ | X) against a k-NN h(T~) instead read 0.2 nats above
ln N on an SZT layer at initialisation (the bias does not cancel). It needs replicas > k for input ids.

Any other registered entropy estimator (``"flow-entropy"``) estimates h(T~) and each h(T~ | Y = y) on its own;
where all rows of a group share one value of the layer h(T~ | Y = y) is then the Gaussian's, m/2 ln(2 pi e s^2),
exactly (with input ids, every group), and a flow needs one draw per row.

References:
    Saxe, Bansal, Dapello, Advani, Kolchinsky, Tracey & Cox (2018). On the information bottleneck theory of deep
    learning. ICLR.
    Butakov, Tolmachev, Malanchuk, Neopryatnaya, Frolov & Salnikov (2024). Information bottleneck analysis of deep
    neural networks via lossy compression. ICLR.
    Kozachenko & Leonenko (1987). Sample estimate of the entropy of a random vector. Problems of Information
    Transmission 23(2).
"""

from __future__ import annotations

import math

import torch
from scipy.special import digamma

from ._validation import check_positive_int
from .discrete import plugin_entropy, row_codes
from .kde import check_noise_variance, layer_and_groupings
from .interface import EntropyEstimator, MIEstimate, MIEstimator, make, register
from .knn import KozachenkoLeonenko
from .lossy import PCA

__all__ = ["NoisyLayerMI"]

#: Groups of at most this many draws get their within-group distances from one batched distance matrix per size.
SMALL_GROUP = 256


@register("noisy-layer")
class NoisyLayerMI(MIEstimator):
    """I(T~; Y) of a layer's noisy, compressed copy against a discrete ``y`` (the module docstring).

    Arguments:
        noise_variance: s^2, the variance of the noise added to every kept coordinate (Saxe et al.: 1e-3).
        n_components: Principal axes kept (``None``: every column, no compression). A layer with at most this many
            columns is only centred.
        replicas: Noisy draws of every row.
        k: Neighbours of the k-NN estimate (``entropy="knn"``); at most ``replicas - 1`` for input ids.
        entropy: ``"knn"``, or a registered entropy estimator of h(T~) and each h(T~ | Y = y) (``"flow-entropy"``).
        entropy_params: Its hyperparameters (``None``: its defaults).
        seed: Seed of the noise (a local generator, drawn on the CPU so that every device gets the same draws).
        device: Where to compute (``None``: where the data are).

    ``diagnostics``: ``h_t`` and ``h_t_given_x`` (h(T~) and sum_y p(y) h(T~ | Y = y), nats), ``exact_conditional``
    (the second was the Gaussian's: not with ``knn``), ``n_inputs`` (groups of ``y``), ``components`` (m) and
    ``bound`` (the plug-in entropy of ``y``: the true I(T~; Y) cannot exceed it; the estimate can, by its error).
    ``estimate_batch(x, [y1, y2, ...])`` with one ``x`` estimates h(T~) once, from the same draws: the same numbers
    as separate estimates.

    Example:
        >>> c = torch.tensor([[0.0], [0.0], [5.0], [5.0]])  # two pairs of coinciding values, far apart
        >>> r = NoisyLayerMI(noise_variance=0.01, replicas=200).estimate(c, [0, 1, 2, 3])
        >>> abs(r.value - math.log(2)) < 0.05  # two distinguishable values: ln 2, not ln 4
        True
    """

    x_role, y_role = "continuous", "discrete"
    bound = "H(y), the plug-in entropy of the groups"

    def __init__(self, noise_variance: float = 1e-3, n_components: int | None = 4, replicas: int = 8, k: int = 1,
                 entropy: str = "knn", entropy_params: dict | None = None, seed: int = 0, device=None):  # fmt: skip
        self.noise_variance, self.n_components, self.replicas, self.k = noise_variance, n_components, replicas, k
        self.entropy, self.entropy_params, self.seed, self.device = entropy, entropy_params, seed, device

    def _estimate(self, x, y, p) -> MIEstimate:
        return self._shared(x, [y], ["y"])[0]

    def _estimate_batch(self, xs, ys, ps, s) -> list[MIEstimate]:
        if len(xs) == 1 and len(ys) > 1:  # one layer, several groupings (input ids and labels): h(T~) once
            return self._shared(xs[0], ys, [f"y[{j}]" for j in range(len(ys))])
        return super()._estimate_batch(xs, ys, ps, s)

    def _entropy_estimator(self) -> EntropyEstimator | None:
        params = self.entropy_params if self.entropy_params is not None else {}
        if not isinstance(params, dict):
            raise ValueError(f"entropy_params must be a dict or None, got {params!r}")
        if self.entropy == "knn":
            if params:
                raise ValueError(f"entropy_params are for a registered entropy estimator; with entropy='knn' set k "
                                 f"instead, got {params!r}")  # fmt: skip
            return None
        if not isinstance(self.entropy, str):
            raise ValueError(f"entropy must be the name of a registered entropy estimator, got {self.entropy!r}")
        h = make(self.entropy, **params)
        if h.kind != "entropy":
            raise ValueError(f"entropy must name an entropy estimator, got {self.entropy!r} (a {h.kind} estimator)")
        if "device" in h.param_names() and params.get("device") is None:
            h = h.clone(device=self.device)
        return h

    def _shared(self, x, ys, names) -> list[MIEstimate]:
        v = check_noise_variance(self.noise_variance)
        replicas = check_positive_int(self.replicas, "replicas")
        if self.n_components is not None:
            check_positive_int(self.n_components, "n_components")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        h = self._entropy_estimator()
        c, groupings = layer_and_groupings(x, ys, names, self.device)
        t = _compress(c, self.n_components)
        n, m = t.shape
        # the same draws on every device: a CPU generator, then moved
        noise = torch.randn(n * replicas, m, generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64)
        noisy = t.repeat_interleave(replicas, dim=0) + math.sqrt(v) * noise.to(t.device)
        if h is None:  # the k-th neighbour among all draws, once for every grouping
            k = check_positive_int(self.k, "k")
            kl = KozachenkoLeonenko(k=k, standardize=False, device=self.device)
            eps = kl._distances(noisy, [k])[1][:, 0].to(torch.float64)
            return [self._knn(kl, noisy, eps, codes, replicas, m, name) for codes, name in zip(groupings, names)]
        h_noise = 0.5 * m * math.log(2 * math.pi * math.e * v)  # h(Z'): the entropy of one group of one value
        h_t = _entropy(h, noisy, "the noisy layer")
        rows = torch.arange(n, device=t.device).repeat_interleave(replicas)
        value_codes = row_codes(t)
        out = []
        for codes in groupings:
            h_y, n_groups = plugin_entropy(codes)
            # groups whose rows share one value of the layer: h(T~ | Y = y) = h(Z'); the others estimated
            highest = torch.zeros(n_groups, dtype=torch.int64, device=t.device)
            lowest = torch.zeros(n_groups, dtype=torch.int64, device=t.device)
            highest.scatter_reduce_(0, codes, value_codes, reduce="amax", include_self=False)
            lowest.scatter_reduce_(0, codes, value_codes, reduce="amin", include_self=False)
            one_value = highest == lowest
            sizes = torch.bincount(codes, minlength=n_groups).to(torch.float64)
            h_cond = float((sizes[one_value] / n).sum()) * h_noise
            sample_codes = codes[rows]
            for g in (~one_value).nonzero().flatten().tolist():
                h_g = _entropy(h, noisy[sample_codes == g], f"the noisy layer of group {g}")
                h_cond += float(sizes[g]) / n * h_g
            out.append(MIEstimate(h_t - h_cond, n, self.name, self.get_params(),
                                  diagnostics={"h_t": h_t, "h_t_given_x": h_cond, "n_inputs": n_groups,
                                               "exact_conditional": bool(one_value.all()), "components": m,
                                               "bound": h_y}))  # fmt: skip
        return out

    def _knn(self, kl, noisy: torch.Tensor, eps: torch.Tensor, codes: torch.Tensor, replicas: int, m: int,
             name: str) -> MIEstimate:  # fmt: skip
        """The continuous-discrete k-NN estimate of the module docstring for one grouping ``codes`` of the rows, with
        ``eps`` the distance of every draw to its k-th nearest draw."""
        k = kl.k
        n = codes.numel()
        h_y, n_groups = plugin_entropy(codes)
        draw_codes = codes.repeat_interleave(replicas)
        sizes = torch.bincount(draw_codes, minlength=n_groups)
        smallest = int(sizes.min())
        if smallest <= k:
            g = int(sizes.argmin())
            raise ValueError(f"{name}: every group needs more than k={k} draws for its k-NN entropy; group {g} has "
                             f"{smallest // replicas} row(s) x replicas={replicas} = {smallest} (more replicas, or "
                             "a smaller k)")  # fmt: skip
        own = _own_group_distances(kl, noisy, draw_codes, sizes, k)
        big_m = noisy.shape[0]
        p = sizes.to(torch.float64) / big_m
        log_ratio = torch.log(eps) - torch.log(own)
        # h(T~) and sum_y p(y) h(T~ | Y = y) by Kozachenko-Leonenko (their shared constants omitted from both)
        log_vol = 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m + 1.0)
        h_t = float(digamma(big_m) - digamma(k)) + log_vol + m * float(torch.log(eps).mean())
        value = float(digamma(big_m)) - float((p * torch.special.digamma(sizes.to(torch.float64))).sum()) \
            + m * float(log_ratio.mean())
        return MIEstimate(value, n, self.name, self.get_params(),
                          diagnostics={"h_t": h_t, "h_t_given_x": h_t - value, "n_inputs": n_groups,
                                       "exact_conditional": False, "components": m, "bound": h_y})  # fmt: skip


def _own_group_distances(kl, x: torch.Tensor, codes: torch.Tensor, sizes: torch.Tensor, k: int) -> torch.Tensor:
    """For every row of ``x``: the distance to its k-th nearest row of its own group (``codes``), float64.

    Groups of up to :data:`SMALL_GROUP` rows are done together, a batched distance matrix per group size; larger ones
    one at a time by the k-NN entropy estimator's own search (k-d tree on the CPU)."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    order = torch.argsort(codes, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    for s in torch.unique(sizes).tolist():
        groups = (sizes == s).nonzero().flatten()
        if s <= SMALL_GROUP:
            idx = order[(starts[groups][:, None] + torch.arange(s, device=x.device)).reshape(-1)].reshape(-1, s)
            pts = x[idx].to(torch.float64)  # (G, s, m)
            d = torch.cdist(pts, pts)
            d.diagonal(dim1=1, dim2=2).fill_(math.inf)
            out[idx] = torch.kthvalue(d, k, dim=2).values
        else:
            for g in groups.tolist():
                idx = order[int(starts[g]) : int(starts[g]) + s]
                out[idx] = kl._distances(x[idx], [k])[1][:, 0].to(torch.float64)
    if bool((out <= 0).any()):
        raise ValueError("x has coinciding noisy draws within a group: the k-NN entropy would be -inf")
    return out


def _compress(c: torch.Tensor, n_components: int | None) -> torch.Tensor:
    """The rows on their ``n_components`` leading principal axes (:class:`~ibcore.estimators.PCA`: centred, the axes
    orthonormal); all columns, centred, if there are no more than that."""
    if n_components is None or n_components >= c.shape[1]:
        return c - c.mean(0)
    return PCA(n_components).fit(c).transform(c)


def _entropy(h: EntropyEstimator, samples: torch.Tensor, what: str) -> float:
    # the entropy estimator's errors name its argument x; say which sample it was
    try:
        return h.estimate(samples).value
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e
