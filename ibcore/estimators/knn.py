"""k-nearest-neighbour estimators: Kozachenko-Leonenko differential entropy and KSG mutual information.

Both estimators need, for every sample, the distance to its k-th nearest neighbour, and KSG also the number of
points inside that radius in each marginal space. Two backends compute these and give the same numbers on
``float64`` data:

- ``"torch"``: batched brute force on the data's device, chunked over query rows so that memory stays bounded
  (O(N^2) work, O(chunk * N) memory). Device-agnostic; it is tested on the CPU only and untested on CUDA.
- ``"kdtree"``: :class:`scipy.spatial.cKDTree` on the CPU (all cores), fast at low dimension.

``backend="auto"`` takes the k-d tree for CPU data of low dimension and brute force otherwise.

References:
    Kozachenko & Leonenko (1987). Sample estimate of the entropy of a random vector. Problems of Information
    Transmission 23(2), 95-101.
    Kraskov, Stoegbauer & Grassberger (2004). Estimating mutual information. Phys. Rev. E 69, 066138.
    https://arxiv.org/abs/cond-mat/0305641
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import gammaln as special_gammaln

from ._validation import as_samples, check_choice, check_positive_int, check_same_length, dtype_name, resolve_device
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, MIEstimator, register

__all__ = ["KozachenkoLeonenko", "WeightedKozachenkoLeonenko", "wkl_weights", "KSG"]

BACKENDS = ("auto", "torch", "kdtree")
METRICS = ("euclidean", "chebyshev")

# "auto" takes the k-d tree for CPU data up to these dimensions and brute force above. Measured with
# benchmarks/bench_knn.py on a shared 2-core CPU at N = 1e4 (wall seconds, two runs): KSG by joint dimension,
# tree vs brute force, 0.7-1.5 vs 3.1 at 5+5, 2.7 vs 3.2 at 8+8, 3.6-5.9 vs 3.4-4.5 at 10+10, 10 vs 4.3 at 15+15;
# KL (one k-NN query, no counts) 0.5 vs 1.1 at 10 dims, 2.0 vs 1.6 at 15, 4.6 vs 3.5 at 50. Smaller N favours the
# tree a little (N = 1e3: 0.07 vs 0.09 s at 10+10), larger N does not change the picture much.
KDTREE_MAX_DIM = 16
KL_KDTREE_MAX_DIM = 12

# Memory budget of one chunk of the brute-force backend. On the GPU a quarter of the free memory: large chunks
# keep the number of kernel launches low.
CPU_CHUNK_BYTES = 256 * 2**20
CUDA_FREE_FRACTION = 0.25

# Leaf size of the trees that count marginal neighbours. The count queries have large radii (the joint k-NN
# radius), so most of their time goes to leaves that straddle the query box; larger leaves halve it at 5 dims and
# cost nothing at 1-2 dims (scipy's default is 16; measured at N = 1e4, 1 to 8 dims, leaf sizes 16 to 256).
COUNT_LEAFSIZE = 128


@register("kl")
class KozachenkoLeonenko(EntropyEstimator):
    r"""Kozachenko-Leonenko k-NN estimator of differential entropy.

    .. math:: \hat h = \psi(N) - \psi(k) + \ln V_d + \frac{d}{N} \sum_i \ln \varepsilon_i

    where :math:`\varepsilon_i` is the distance from sample i to its k-th nearest neighbour and :math:`V_d` the
    volume of the unit ball of the chosen norm in d dimensions (:math:`\pi^{d/2} / \Gamma(d/2 + 1)` for the
    Euclidean norm, :math:`2^d` for the max norm).

    Arguments:
        k: Number of neighbours.
        metric: ``"euclidean"`` or ``"chebyshev"`` (max norm).
        backend: ``"auto"``, ``"torch"`` (brute force on the data's device) or ``"kdtree"`` (scipy, CPU only).
        chunk_size: Query rows per brute-force chunk; ``None`` picks it from a memory budget.
        device: Where to compute; ``None`` follows the data.
        whiten: Estimate h(W x) for the whitening W = L^-1 of the sample covariance L L^T and add back
            ``ln |det L|`` (exact for any invertible linear map). The estimate then no longer depends on the scale or
            correlation of the coordinates, which otherwise bias a k-NN estimate at finite N (a joint sample whose
            parts have very different scales is all but ignored along the small ones); Butakov et al.'s entropy
            estimators do this by default.
        standardize: Estimate h(D^-1 x) for D the columns' standard deviations and add back sum_j ln d_j (exact),
            so that a change of units changes nothing (default; skipped when ``whiten`` is on, which already does
            it). A constant column (zero variance: the entropy is -inf) is refused in every setting. With
            ``standardize=False`` (and no whitening) values beyond a quarter of the dtype's largest number are
            refused (their differences overflow), and so is an estimate that Euclidean distances overflowing or
            underflowing their squares would make infinite (from about 1e154 and 1e-154 in ``float64``).

    Duplicate rows give zero k-NN distances, for which the estimate is -inf; they raise ``ValueError`` instead.
    The brute-force backend works in the data's floating dtype (at least ``float32``); the k-d tree in ``float64``.

    References:
        Kozachenko & Leonenko (1987). Sample estimate of the entropy of a random vector. Problems of Information
        Transmission 23(2), 95-101.
        Kraskov, Stoegbauer & Grassberger (2004). Estimating mutual information. Phys. Rev. E 69, 066138, eq. (20).

    Example:
        >>> import numpy as np
        >>> from ibcore.estimators import KozachenkoLeonenko
        >>> x = np.random.default_rng(0).standard_normal((2000, 2))
        >>> h = KozachenkoLeonenko(k=3).estimate(x)
        >>> round(h.value, 1)  # closed form: ln(2 pi e) = 2.84
        2.8
    """

    #: k-NN estimates degrade as O(N^(-1/d)) (../shared/research/estimators.md, failure mode 1): at the book's
    #: N of a few thousand, beyond a few tens of dimensions a layer must be compressed first (Butakov et al. 2024)
    max_dim = 32

    def __init__(self, *, k: int = 3, metric: str = "euclidean", backend: str = "auto", chunk_size=None, device=None,
                 whiten: bool = False, standardize: bool = True):  # fmt: skip
        self.standardize = standardize
        self.k = k
        self.metric = metric
        self.backend = backend
        self.chunk_size = chunk_size
        self.device = device
        self.whiten = whiten

    def _estimate(self, x, p) -> EntropyEstimate:
        """Estimate the differential entropy of the samples ``x``.

        Arguments:
            x: Samples, shape ``(n_samples,)`` or ``(n_samples, n_dims)``.

        Returns:
            The estimate in nats; ``diagnostics`` holds the backend used and the spread of the per-sample terms.
        """
        k = check_positive_int(self.k, "k")
        x, eps, backend, chunk, shift = self._distances(x, [k])
        terms = self._terms(x, eps[:, 0], k) + shift  # (n,) per-sample terms; their mean is the estimate
        value = float(terms.mean())
        _check_finite(value, x, "x")
        return EntropyEstimate(
            value=value,
            n_samples=x.shape[0],
            estimator=self.name,
            params=self.get_params(),
            std=None,
            diagnostics=_diagnostics(backend, x, chunk, terms) | {"standardized": self._scaled()},
        )

    def _scaled(self) -> bool:
        return bool(self.standardize) and not self.whiten

    def _distances(self, x, ks: list[int]):
        # The distances from every sample to its ks-th nearest neighbours among the others: (n, len(ks)).
        metric = check_choice(self.metric, "metric", METRICS)
        chunk_size = _check_chunk_size(self.chunk_size)
        x = _as_float(as_samples(x, "x", min_samples=max(ks) + 1, device=resolve_device(self.device)))
        _check_flag(self.standardize, "standardize")
        _check_flag(self.whiten, "whiten")
        scale = _column_scales(x, "x")  # also refuses constant columns, which make the entropy -inf
        if not (self.whiten or self.standardize):
            _check_magnitude(x, x.dtype, "x")
        shift = 0.0
        if self.whiten:
            x, shift = _whiten(x)
        elif self.standardize:
            x, shift = (x.to(torch.float64) / scale).to(x.dtype), float(torch.log(scale).sum())
        backend = _pick_backend(self.backend, x.device, x.shape[1], KL_KDTREE_MAX_DIM)
        n, d = x.shape
        if backend == "kdtree":
            xn = _to_numpy64(x)
            p = 2.0 if metric == "euclidean" else np.inf
            # The (k+1)-th neighbour of a point among all points, itself included at distance 0, is its k-th
            # neighbour among the others, whatever the ties.
            eps = torch.from_numpy(cKDTree(xn).query(xn, k=[j + 1 for j in ks], p=p, workers=-1)[0])
            chunk = None
        else:
            chunk = _chunk_rows(chunk_size, n, d, x)
            dist = _chebyshev if metric == "chebyshev" else _euclidean
            eps = torch.empty(n, len(ks), dtype=x.dtype, device=x.device)
            top = max(ks) + 1
            # the columns as a tensor on the device, made once: indexing with the list would copy it to the
            # device, a host sync, in every chunk
            cols = torch.tensor(ks, device=x.device)
            for i0 in range(0, n, chunk):
                dq = dist(x[i0 : i0 + chunk], x)  # (chunk, n)
                nearest = torch.topk(dq, top, dim=1, largest=False, sorted=True).values
                eps[i0 : i0 + chunk] = nearest[:, cols]  # column j is the j-th neighbour among the others
        n_zero = int((eps[:, 0] <= 0).sum())
        if n_zero:
            raise ValueError(
                f"x has {n_zero} of {n} samples whose k-th nearest neighbour (k={ks[0]}) is at distance 0 (duplicate "
                f"rows{_underflow_hint(x, metric, backend)}); the Kozachenko-Leonenko estimate would be -inf. Remove "
                "the duplicates or add noise."
            )
        return x, eps, backend, chunk, shift

    def _terms(self, x: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        # Per-sample terms of the KL estimate with the k-th neighbour distances eps.
        n, d = x.shape
        if self.metric == "euclidean":
            log_vol = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
        else:
            log_vol = d * math.log(2.0)
        return _digamma(n) - _digamma(k) + log_vol + d * torch.log(eps.to(torch.float64))


def _whiten(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    # (x - mean) L^-T with L L^T the sample covariance of the standardized columns (Cholesky, in float64), and
    # ln |det L| + sum ln sd = 1/2 ln det Cov: standardizing first keeps columns of very different scales (1e6 and
    # 1e-3) from making the covariance look singular.
    sd = _column_scales(x, "x")
    x64 = x.to(torch.float64) / sd
    centred = x64 - x64.mean(0)
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)
    chol, info = torch.linalg.cholesky_ex(cov)
    eig = torch.linalg.eigvalsh(cov)
    if int(info) != 0 or float(eig[0]) <= 1e-12 * max(float(eig[-1]), 1e-300):
        raise ValueError(f"x has a singular sample covariance ({x.shape[1]} columns, eigenvalues from "
                         f"{float(eig[0]):.3g} to {float(eig[-1]):.3g}): it cannot be whitened; drop constant or "
                         "dependent columns (a softmax output sums to 1), or use whiten=False")  # fmt: skip
    white = torch.linalg.solve_triangular(chol, centred.T, upper=False).T
    return white.to(x.dtype), float(torch.log(torch.diagonal(chol)).sum() + torch.log(sd).sum())


def wkl_weights(k: int, d: int) -> np.ndarray:
    """Weights w_1..w_k of the weighted Kozachenko-Leonenko estimator (Berrett, Samworth & Yuan 2019, eq. (4)).

    The minimum-norm w with sum_j w_j = 1 and sum_j w_j Gamma(j + 2l/d) / Gamma(j) = 0 for l = 1..floor(d/4): the
    constraints cancel the leading bias terms of the unweighted estimator, which dominate from d = 4 on. Below
    d = 4 there is no constraint besides the sum and the weights are uniform.

    Example:
        >>> wkl_weights(3, 2).round(4).tolist()
        [0.3333, 0.3333, 0.3333]
        >>> w = wkl_weights(5, 8)  # d = 8: l = 1, 2, sum_j w_j Gamma(j + l/4) / Gamma(j) = 0
        >>> bias = [sum(w[j - 1] * math.gamma(j + l / 4) / math.gamma(j) for j in range(1, 6)) for l in (1, 2)]
        >>> round(float(w.sum()), 6), bool(max(map(abs, bias)) < 1e-9)
        (1.0, True)
    """
    k, d = check_positive_int(k, "k"), check_positive_int(d, "d")
    m = d // 4
    if k <= m:
        raise ValueError(f"the weighted KL estimator in d={d} dimensions needs k > floor(d/4) = {m}, got k={k}")
    j = np.arange(1, k + 1, dtype=np.float64)
    rows = [np.ones(k)] + [np.exp(special_gammaln(j + 2.0 * ell / d) - special_gammaln(j)) for ell in range(1, m + 1)]
    a = np.stack(rows)
    b = np.zeros(m + 1)
    b[0] = 1.0
    return np.linalg.lstsq(a, b, rcond=None)[0]


@register("wkl")
class WeightedKozachenkoLeonenko(KozachenkoLeonenko):
    r"""Weighted Kozachenko-Leonenko entropy estimator (Berrett, Samworth & Yuan 2019): a weighted average of the
    KL estimates with the 1st, ..., k-th neighbours, the weights (:func:`wkl_weights`) chosen so that the leading
    bias terms cancel; efficient in any dimension where the plain estimator is not (d >= 4).

    Arguments as :class:`KozachenkoLeonenko` (default ``k=5``, Butakov et al.'s setting).

    References:
        Berrett, Samworth & Yuan (2019). Efficient multivariate entropy estimation via k-nearest neighbour
        distances. Annals of Statistics 47(1), 288-318.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((4000, 6))
        >>> round(WeightedKozachenkoLeonenko().estimate(x).value, 1)  # closed form: 3 ln(2 pi e) = 8.51
        8.5
    """

    def __init__(self, *, k: int = 5, metric: str = "euclidean", backend: str = "auto", chunk_size=None, device=None,
                 whiten: bool = False, standardize: bool = True):  # fmt: skip
        super().__init__(k=k, metric=metric, backend=backend, chunk_size=chunk_size, device=device, whiten=whiten,
                         standardize=standardize)

    def _estimate(self, x, p) -> EntropyEstimate:
        k = check_positive_int(self.k, "k")
        ks = list(range(1, k + 1))
        x, eps, backend, chunk, shift = self._distances(x, ks)
        w = torch.from_numpy(wkl_weights(k, x.shape[1])).to(eps.device)
        terms = sum(w[j - 1] * self._terms(x, eps[:, j - 1], j) for j in ks) + shift  # (n,)
        diagnostics = _diagnostics(backend, x, chunk, terms)
        diagnostics["weights"] = w.tolist()
        diagnostics["standardized"] = self._scaled()
        value = float(terms.mean())
        _check_finite(value, x, "x")
        return EntropyEstimate(value, x.shape[0], self.name, self.get_params(), None, diagnostics)


@register("ksg")
class KSG(MIEstimator):
    r"""Kraskov-Stoegbauer-Grassberger k-NN estimator of mutual information (their algorithm 1).

    .. math:: \hat I = \psi(k) + \psi(N) - \langle \psi(n_x + 1) + \psi(n_y + 1) \rangle

    With the max norm in the joint space, :math:`\varepsilon_i` is the distance from sample i to its k-th nearest
    neighbour in the joint space, and :math:`n_x` (:math:`n_y`) the number of other samples strictly closer than
    :math:`\varepsilon_i` in the x (y) space, also in the max norm.

    Arguments:
        k: Number of neighbours.
        jitter: Relative size of the Gaussian noise added to break ties (see below); ``0`` disables it.
        seed: Seed of the local generator that draws the jitter; the same seed gives the same value.
        backend: ``"auto"``, ``"torch"`` (brute force on the data's device) or ``"kdtree"`` (scipy, CPU only).
        chunk_size: Query rows per brute-force chunk; ``None`` picks it from a memory budget.
        device: Where to compute; ``None`` follows the data.

    Ties (repeated values) break the estimator, so, as scikit-learn's ``mutual_info_regression`` does, each column
    c of x and of y gets noise ``jitter * max(1, mean|c|) * N(0, 1)``. The noise is drawn in ``float64`` on the
    CPU from ``torch.Generator().manual_seed(seed)`` (so CPU and GPU runs see the same noise) and added in the
    data's dtype; at the default 1e-10 it vanishes in ``float32``. With ``jitter=0``, duplicate joint rows raise
    ``ValueError``. With ``standardize`` (the default) each column of x and of y is first divided by its standard
    deviation, which leaves the MI unchanged and makes the estimate independent of the units (the max norm would
    otherwise all but ignore columns on a small scale); a constant column is then refused.
    ``standardize=False`` weighs the columns as given; it refuses values whose differences could overflow (beyond a
    quarter of the dtype's largest number) and columns whose standard deviation is within a factor
    ``JITTER_MARGIN`` (1000) of the tie-breaking noise, which would then decide the neighbours (columns of
    ``|values| <= 1`` and standard deviation below 1e-7 at the default jitter).

    The two backends give identical estimates on ``float64`` data. The brute-force backend computes in the data's
    floating dtype (at least ``float32``), the k-d tree always in ``float64``.

    The result has ``std=None``: the per-sample terms are not independent, so no honest standard error follows from
    them. ``diagnostics["per_sample_term_std"]`` is their standard deviation, for reference only.

    References:
        Kraskov, Stoegbauer & Grassberger (2004). Estimating mutual information. Phys. Rev. E 69, 066138, eq. (8).
        https://arxiv.org/abs/cond-mat/0305641

    Example:
        >>> import numpy as np
        >>> from ibcore.estimators import KSG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal(2000)
        >>> y = x + rng.standard_normal(2000)
        >>> mi = KSG(k=3).estimate(x, y)
        >>> round(mi.value, 2)  # closed form: ln(2) / 2 = 0.35
        0.34
    """

    #: k-NN estimates degrade as O(N^(-1/d)) (../shared/research/estimators.md, failure mode 1): at the book's
    #: N of a few thousand, beyond a few tens of dimensions a layer must be compressed first (Butakov et al. 2024)
    max_dim = 32

    def __init__(
        self, *, k: int = 3, jitter: float = 1e-10, seed: int = 0, backend: str = "auto", chunk_size=None, device=None,
        standardize: bool = True,
    ):
        self.standardize = standardize
        self.k = k
        self.jitter = jitter
        self.seed = seed
        self.backend = backend
        self.chunk_size = chunk_size
        self.device = device

    def _estimate(self, x, y, p) -> MIEstimate:
        """Estimate I(X;Y) from paired samples.

        Arguments:
            x: Samples of X, shape ``(n_samples,)`` or ``(n_samples, dx)``.
            y: Samples of Y, shape ``(n_samples,)`` or ``(n_samples, dy)``.

        Returns:
            The estimate in nats, never clipped (it can be negative); ``diagnostics`` holds the backend used, the
            mean marginal counts and the spread of the per-sample terms.
        """
        k = check_positive_int(self.k, "k")
        jitter = _check_jitter(self.jitter)
        chunk_size = _check_chunk_size(self.chunk_size)
        seed = check_positive_int(self.seed, "seed", minimum=0)
        dev = resolve_device(self.device)
        x = as_samples(x, "x", min_samples=k + 1, device=dev)
        y = as_samples(y, "y", min_samples=k + 1, device=dev)
        check_same_length(x, y)
        dtype = _float_dtype(torch.promote_types(x.dtype, y.dtype))
        _check_flag(self.standardize, "standardize")
        if self.standardize:  # MI is invariant to it: no correction
            x, y = ((t.to(torch.float64) / _column_scales(t, name)) for t, name in ((x, "x"), (y, "y")))
        else:
            _check_magnitude(x, dtype, "x")
            _check_magnitude(y, dtype, "y")
        x, y = x.to(dtype), y.to(dtype)
        n, dx = x.shape
        backend = _pick_backend(self.backend, x.device, dx + y.shape[1], KDTREE_MAX_DIM)

        if jitter > 0:
            # Tie-breaking noise scaled per column as in scikit-learn (feature_selection/_mutual_info.py):
            # jitter * max(1, mean |column|) * standard normal. Drawn on the CPU so every device sees the same noise.
            if not self.standardize:  # standardized columns have unit scale: the noise cannot swamp them
                _check_jitter_swamps(x, jitter, "x")
                _check_jitter_swamps(y, jitter, "y")
            gen = torch.Generator().manual_seed(seed)
            x = _add_jitter(x, jitter, gen)
            y = _add_jitter(y, jitter, gen)

        if backend == "kdtree":
            eps, nx, ny = _ksg_kdtree(_to_numpy64(x), _to_numpy64(y), k)
            chunk = None
        else:
            chunk = _chunk_rows(chunk_size, n, x.shape[1] + y.shape[1], x)
            eps, nx, ny = _ksg_torch(x, y, k, chunk)

        n_zero, n_inf = (int(v) for v in torch.stack([(eps <= 0).sum(), (~torch.isfinite(eps)).sum()]).tolist())
        if n_inf:  # max-norm distances overflow only near the dtype's largest number (float32: 3.4e38)
            raise ValueError(
                f"x and y: {n_inf} of {n} k-NN distances overflowed {dtype_name(x.dtype)} (values up "
                f"to {float(x.abs().max()):.3g} in x and {float(y.abs().max()):.3g} in y); use standardize=True (the "
                "default) or rescale x and y"
            )
        if n_zero:
            raise ValueError(
                f"x and y have {n_zero} of {n} samples whose k-th nearest neighbour (k={k}) in the joint space is at "
                f"distance 0 (duplicate rows); KSG needs distinct points: set jitter > 0 (got jitter={jitter!r})."
            )
        terms = _digamma(k) + _digamma(n) - _digamma_t(nx + 1) - _digamma_t(ny + 1)  # (n,) float64
        diagnostics = _diagnostics(backend, x, chunk, terms)
        diagnostics["mean_count_x"] = float(nx.double().mean())
        diagnostics["mean_count_y"] = float(ny.double().mean())
        diagnostics["standardized"] = bool(self.standardize)
        value = float(terms.mean())
        if not math.isfinite(value):  # a last guard: the checks above leave no known way here
            raise ValueError(f"x and y gave a non-finite KSG estimate ({value}) with values up to "
                             f"{float(x.abs().max()):.3g} in x and {float(y.abs().max()):.3g} in y; use "
                             "standardize=True (the default) or rescale them")  # fmt: skip
        return MIEstimate(
            value=value,
            n_samples=n,
            estimator=self.name,
            params=self.get_params(),
            std=None,
            diagnostics=diagnostics,
        )


def _ksg_torch(x: torch.Tensor, y: torch.Tensor, k: int, chunk: int):
    """Joint k-NN radius and strict marginal counts by brute force, ``chunk`` query rows at a time.

    No per-row Python loop and no host synchronisation inside the loop, so on a GPU the chunks queue back to back.
    Untested on CUDA. On a GPU the work is memory-bound: per sample pair about 2 (dx + dy) + 20 reads and writes of
    one value (writing and reducing the (b, n, d) differences dominates). For N = 1e5 and 10+10 dims that is about
    5e12 bytes in ``float64``, roughly 1.5 s at an H100's 3.35 TB/s, and half that in ``float32`` (an estimate, not
    a measurement). Going well below needs a fused distance kernel (Triton or ``torch.compile``).
    """
    n = x.shape[0]
    eps = torch.empty(n, dtype=x.dtype, device=x.device)
    nx = torch.empty(n, dtype=torch.int64, device=x.device)
    ny = torch.empty(n, dtype=torch.int64, device=x.device)
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        dxq = _chebyshev(x[i0:i1], x)  # (b, n)
        dyq = _chebyshev(y[i0:i1], y)  # (b, n)
        # The joint max-norm distance is the larger marginal one, exactly; eps and the counts below therefore come
        # from the very same floating-point values, so the neighbour that defines eps is never counted.
        e = _kth_smallest(torch.maximum(dxq, dyq), k + 1)  # (b,), self included at distance 0
        eps[i0:i1] = e
        # Subtract the point itself (distance 0 < eps). Where eps == 0 the count is -1; the caller raises there.
        nx[i0:i1] = (dxq < e[:, None]).sum(dim=1) - 1
        ny[i0:i1] = (dyq < e[:, None]).sum(dim=1) - 1
    return eps, nx, ny


def _ksg_kdtree(x: np.ndarray, y: np.ndarray, k: int):
    """Same quantities as :func:`_ksg_torch` with scipy k-d trees (max norm, all cores)."""
    z = np.hstack([x, y])
    eps = cKDTree(z).query(z, k=[k + 1], p=np.inf, workers=-1)[0][:, 0]
    eps = np.ascontiguousarray(eps)
    # Strictly closer than eps == at most the next float below eps; each point counts itself, hence the - 1.
    r = np.nextafter(eps, 0.0)
    counts = []
    for t in (x, y):
        c = cKDTree(t, leafsize=COUNT_LEAFSIZE).query_ball_point(t, r, p=np.inf, return_length=True, workers=-1)
        counts.append(torch.from_numpy(np.asarray(c, dtype=np.int64) - 1))
    return torch.from_numpy(eps), counts[0], counts[1]


def _chebyshev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-norm distances ``(len(a), len(b))``, exact: each is one rounded coordinate difference."""
    # On the CPU cdist is one fused, multithreaded pass (3-10x faster than the broadcast). On CUDA it runs one
    # 256-thread block per output element, far too slow for N^2 outputs, so broadcast there.
    if a.device.type == "cpu":
        return torch.cdist(a, b, p=math.inf)
    return _chebyshev_broadcast(a, b)


def _chebyshev_broadcast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape[1] == 1:
        return (a - b.T).abs_()
    diff = a[:, None, :] - b[None, :, :]  # (m, n, d)
    # max_j |d_j| == max(max_j d_j, -min_j d_j) exactly (rounding is sign-symmetric); one read of diff, not three.
    lo, hi = torch.aminmax(diff, dim=-1)
    return torch.maximum(hi, lo.neg_())


def _euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(len(a), len(b))`` from coordinate differences (not the inexact |a|^2 + |b|^2 - 2ab)."""
    if a.device.type == "cpu":
        return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    return _euclidean_broadcast(a, b)


def _euclidean_broadcast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    diff = a[:, None, :] - b[None, :, :]  # (m, n, d)
    return diff.square_().sum(dim=-1).sqrt_()


def _kth_smallest(d: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest value of each row (topk is faster than kthvalue on CPU and GPU)."""
    return torch.topk(d, k, dim=1, largest=False, sorted=False).values.amax(dim=1)


def _chunk_rows(chunk_size, n: int, width: int, x: torch.Tensor) -> int:
    """Query rows per brute-force chunk: ``chunk_size`` if given, else what fits the memory budget."""
    if chunk_size is not None:
        return min(chunk_size, n)
    if x.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(x.device)
        budget = int(free * CUDA_FREE_FRACTION)
        # (b, n, width) coordinate differences plus about eight (b, n) distance, mask and top-k buffers
        per_row = n * x.element_size() * (width + 8)
    else:
        budget = CPU_CHUNK_BYTES
        per_row = n * x.element_size() * 8  # cdist writes (b, n) directly
    return max(1, min(n, budget // per_row))


def _column_std(t: torch.Tensor) -> torch.Tensor:
    # Standard deviation of each column in float64, computed on columns divided by their largest magnitude so that
    # huge values (1e200) do not overflow the squares nor tiny ones (1e-200) underflow.
    t = t.to(torch.float64)
    top = t.abs().amax(0).clamp_min(torch.finfo(torch.float64).tiny)
    return (t / top).std(0) * top


def _column_scales(t: torch.Tensor, name: str) -> torch.Tensor:
    # _column_std, where a constant column is a ValueError.
    sd = _column_std(t)
    const = (~(sd > 0) | ~torch.isfinite(sd)).nonzero().flatten().tolist()
    if const:
        raise ValueError(f"{name} has constant columns {const} (zero variance): they cannot be standardized and make "
                         "a k-NN entropy -inf; drop them (they carry no information)")  # fmt: skip
    return sd


def _check_flag(value, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_magnitude(t: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    # Unstandardized data: differences of values beyond a quarter of the dtype's largest number can overflow (and
    # scipy's k-d tree then fails in its worker threads, leaving garbage counts behind).
    top = float(t.abs().max())
    if top > torch.finfo(dtype).max / 4:
        raise ValueError(f"{name} has values up to {top:.3g} in magnitude: differences between them overflow "
                         f"{dtype_name(dtype)} (largest {torch.finfo(dtype).max:.3g}); use "
                         f"standardize=True (the default) or rescale {name}")  # fmt: skip


def _check_finite(value: float, x: torch.Tensor, name: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} has values up to {float(x.abs().max()):.3g} and the k-NN distances overflowed "
                         f"(the estimate came out {value}); use standardize=True or rescale {name}")  # fmt: skip


# The tie-breaking noise must stay this far below a column's spread (standardize=False), or it would decide which
# points are neighbours: with the default jitter 1e-10, columns of |values| <= 1 need a standard deviation >= 1e-7.
JITTER_MARGIN = 1e3


def _check_jitter_swamps(t: torch.Tensor, jitter: float, name: str) -> None:
    sd = _column_std(t)
    noise = jitter * _mean_abs(t).clamp(min=1.0)  # as _add_jitter draws it
    cols = ((sd > 0) & (noise * JITTER_MARGIN > sd)).nonzero().flatten().tolist()
    if cols:
        raise ValueError(
            f"{name} has columns {cols} whose standard deviation ({float(sd[cols].min()):.3g} at the least) is within "
            f"a factor {JITTER_MARGIN:g} of the tie-breaking noise jitter * max(1, mean |column|) = "
            f"{float(noise[cols].max()):.3g}: the noise would decide the neighbours. Use standardize=True (the "
            "default), which scales the columns before the noise, or a smaller jitter"
        )


def _underflow_hint(x: torch.Tensor, metric: str, backend: str) -> str:
    # Part of the zero-distance error: when x's values are so close together that their squared differences
    # underflow (Euclidean distances of unstandardized data below 1e-154 in float64, 1e-19 in float32).
    dtype = torch.float64 if backend == "kdtree" else x.dtype
    spread = float((x.amax(0) - x.amin(0)).max())
    if metric != "euclidean" or spread >= 1e4 * math.sqrt(torch.finfo(dtype).tiny):
        return ""
    return (f", or values so close that their squared differences underflow {dtype_name(dtype)}: "
            f"x spans at most {spread:.3g}; use standardize=True, the default")  # fmt: skip


def _check_jitter(jitter) -> float:
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float, np.integer, np.floating)):
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
    if not math.isfinite(jitter) or jitter < 0:
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
    return float(jitter)


def _check_chunk_size(chunk_size) -> int | None:
    return None if chunk_size is None else check_positive_int(chunk_size, "chunk_size")


def _pick_backend(backend, device: torch.device, dim: int, kdtree_max_dim: int) -> str:
    backend = check_choice(backend, "backend", BACKENDS)
    if backend == "kdtree" and device.type != "cpu":
        raise ValueError(f"backend='kdtree' runs on the CPU only, but the data is on {device}; use backend='torch'")
    if backend == "auto":
        return "kdtree" if device.type == "cpu" and dim <= kdtree_max_dim else "torch"
    return backend


def _mean_abs(t: torch.Tensor) -> torch.Tensor:
    # mean |column| in float64; where the sum overflows (values near 1e308), of the columns divided by their largest
    # magnitude first (no host sync: both are computed, the second kept only where the first is not finite)
    plain = t.abs().mean(dim=0, dtype=torch.float64)
    top = t.abs().amax(0).to(torch.float64).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(torch.isfinite(plain), plain, (t.abs().to(torch.float64) / top).mean(0) * top)


def _add_jitter(t: torch.Tensor, jitter: float, gen: torch.Generator) -> torch.Tensor:
    scale = jitter * _mean_abs(t).clamp(min=1.0)  # (d,)
    noise = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device)
    return t + (noise * scale).to(t.dtype)  # a new tensor: the caller's data is never modified


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision distances tie far too often; compute in at least float32.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.to(_float_dtype(x.dtype))


def _to_numpy64(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)


def _digamma(v: int) -> float:
    return float(torch.special.digamma(torch.tensor(float(v), dtype=torch.float64)))


def _digamma_t(counts: torch.Tensor) -> torch.Tensor:
    return torch.special.digamma(counts.to(torch.float64))


def _diagnostics(backend: str, x: torch.Tensor, chunk, terms: torch.Tensor) -> dict:
    return {
        "backend": backend,
        "dtype": dtype_name(x.dtype),
        "chunk_size": chunk,
        "per_sample_term_std": float(terms.std()),
    }
