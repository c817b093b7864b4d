"""Infinite ensembles of infinitely wide networks trained by gradient flow on the squared error, and the
information quantities they make tractable (Shwartz-Ziv & Alemi 2019; Shwartz-Ziv's thesis 2022).

Every member starts from an independent random initialisation and follows gradient flow on
L = (1 / 2n) sum_i ||f(x_i) - y_i||^2 over the n training pairs. At infinite width each member evolves as its
linearisation, so the ensemble's outputs stay a Gaussian process (Lee et al. 2019): with K the NNGP kernel and
Theta the NTK (:func:`ibcore.ntk.kernels`), X the training inputs and A_t(x) = Theta(x, X) Theta^-1 (I - e^(-Theta t / n)),

    mean_t(x) = A_t(x) Y,
    cov_t(x, x') = K(x, x') - A_t(x) K(X, x') - K(x, X) A_t(x')^T + A_t(x) K(X, X) A_t(x')^T,

independently and identically for every output unit. ``t`` is the learning rate times the number of full-batch
gradient steps (gradient flow), so t = 0 is the prior and t = inf the converged ensemble (kernel regression with the
NTK on the mean). From the posterior, :class:`InfiniteEnsemble` gives

- the Bayes loss (of the ensemble mean) and the Gibbs loss (of one member drawn from the ensemble), train and test;
- I(X;T) for the representation T = f_t(X), X uniform on a set of inputs: each input gives a Gaussian
  N(mean_t(x), var_t(x) I), so T is a Gaussian mixture, bounded by :func:`mixture_mi_bounds`
  (:meth:`InfiniteEnsemble.training_information` for the training inputs, whose variances vanish as t grows);
- the KL divergence between the ensemble's outputs on the training inputs at t and at initialisation,
  KL[N(mean_t(X), cov_t(X, X)) || N(0, K(X, X))]. On the training inputs the posterior is
  N((I - E) Y, E K E) with E = e^(-Theta t / n), so the KL is closed-form: per output unit
  (1/2)[tr(K^-1 E K E) - n + 2 t tr(Theta) / n + y^T (I - E) K^-1 (I - E) y]. For the linear model whose prior
  covariance is the NTK itself (K = Theta) it equals the KL between the distributions of the weights after and
  before training, exactly (tested against the weight-space computation); it grows without bound as t -> inf,
  when the members interpolate the training labels.

References:
    - Shwartz-Ziv & Alemi (2019). Information in infinite ensembles of infinitely-wide neural networks. AABI,
      arXiv:1911.09189.
    - Lee et al. (2019). Wide neural networks of any depth evolve as linear models under gradient descent. NeurIPS.
    - Kolchinsky & Tracey (2017). Estimating mixture entropy with pairwise distances. Entropy 19, 361.
"""

from __future__ import annotations

import math

import torch

from .ntk import kernel_diagonals, kernels

__all__ = ["InfiniteEnsemble", "mixture_mi_bounds", "one_hot_targets"]


def one_hot_targets(labels, n_classes: int = 10, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Zero-mean one-hot regression targets: 1 - 1/C for the class, -1/C elsewhere, ``(n, C)``."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)}, dtype {labels.dtype}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype) - 1.0 / n_classes


def _time(t) -> float:
    t = float(t)
    if math.isnan(t) or t < 0:
        raise ValueError(f"t must be >= 0 (inf for the converged ensemble), got t={t!r}")
    return t


def mixture_mi_bounds(means, variances) -> tuple[float, float]:
    """Bounds on I(X;T) in nats for X uniform on N inputs and T | x_i ~ N(means[i], variances[i] I_k).

    Kolchinsky & Tracey (2017): with D a divergence between components, -1/N sum_i ln(1/N sum_j exp(-D_ij)) is a
    lower bound on I(X;T) for the Bhattacharyya distance and an upper bound for the KL divergence; both lie in
    [0, ln N].

    Arguments:
        means: ``(N, k)`` component means.
        variances: ``(N,)`` positive variances of the isotropic components.

    Returns:
        ``(lower, upper)``.

    Example:
        >>> lo, hi = mixture_mi_bounds(torch.tensor([[0.0], [100.0]]), torch.tensor([1.0, 1.0]))
        >>> round(lo, 4), round(hi, 4), round(math.log(2), 4)
        (0.6931, 0.6931, 0.6931)
    """
    mu = torch.as_tensor(means)
    var = torch.as_tensor(variances, device=mu.device)
    mu = mu.to(torch.float64)
    var = var.to(torch.float64)
    if mu.ndim != 2 or var.ndim != 1 or len(var) != len(mu) or len(mu) == 0:
        raise ValueError(f"means must be (N, k) and variances (N,), got {tuple(mu.shape)} and {tuple(var.shape)}")
    if not bool(torch.isfinite(mu).all()) or not bool(torch.isfinite(var).all()) or bool((var <= 0).any()):
        raise ValueError(f"means must be finite and variances positive and finite; variances range "
                         f"{float(var.min()):.3g}..{float(var.max()):.3g}")  # fmt: skip
    return _pairwise_bounds(_sq_dist(mu), var, mu.shape[1])


def _sq_dist(a: torch.Tensor) -> torch.Tensor:
    # exact differences, not the |a|^2 + |b|^2 - 2ab shortcut whose rounding swamps distances far below the norms
    return torch.cdist(a, a, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def _pairwise_bounds(d2: torch.Tensor, var: torch.Tensor, k: int) -> tuple[float, float]:
    # d2: (N, N) squared distances of the means (inf allowed off the diagonal: components that never overlap)
    n = len(var)
    vi, vj = var[:, None], var[None, :]
    kl = 0.5 * (k * vi / vj + d2 / vj - k + k * torch.log(vj / vi))  # KL(p_i || p_j)
    bhat = d2 / (4 * (vi + vj)) + 0.5 * k * torch.log((vi + vj) / (2 * torch.sqrt(vi * vj)))

    def pairwise(dist: torch.Tensor) -> float:
        return float(-(torch.logsumexp(-dist, dim=1) - math.log(n)).mean())

    return pairwise(bhat), pairwise(kl)


class InfiniteEnsemble:
    """The Gaussian process of an infinite ensemble of infinitely wide fully connected networks trained by
    gradient flow on the squared error to the targets ``y_train`` (module docstring).

    Arguments:
        x_train: Training inputs ``(n, d)`` (images are flattened).
        y_train: Regression targets ``(n, k)`` (e.g. :func:`one_hot_targets`).
        depth, activation, weight_std, bias_std: The architecture (:func:`ibcore.ntk.kernels`).
        device: Where to compute (``None``: where ``x_train`` is).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(20, 5, generator=g, dtype=torch.float64)
        >>> ens = InfiniteEnsemble(x, x[:, :1], depth=2, activation="erf")
        >>> mean, var = ens.predict(x, t=math.inf)
        >>> bool(torch.allclose(mean, x[:, :1], atol=1e-6)), bool(var.abs().max() < 1e-6), ens.weight_kl(0.0)
        (True, True, 0.0)
    """

    def __init__(self, x_train, y_train, *, depth: int = 2, activation: str = "erf", weight_std: float = 1.0,
                 bias_std: float = 0.0, device=None) -> None:  # fmt: skip
        device = device if device is not None else torch.as_tensor(x_train).device
        self._arch = dict(depth=depth, activation=activation, weight_std=weight_std, bias_std=bias_std)
        self.x_train = torch.as_tensor(x_train, device=device)
        y = torch.as_tensor(y_train, device=device, dtype=torch.float64)
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or len(y) != len(self.x_train):
            raise ValueError(f"y_train must be (n, k) with n = {len(self.x_train)} rows, got shape {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y_train holds non-finite values")
        self.y_train = y
        self.n = len(y)
        self.k_tt, self.theta_tt = kernels(self.x_train, **self._arch, device=device)
        lam, self.v = torch.linalg.eigh(self.theta_tt)
        if float(lam.min()) <= 1e-10 * float(lam.max()):
            raise ValueError(f"the NTK of the training inputs is numerically singular (eigenvalues "
                             f"{float(lam.min()):.3g}..{float(lam.max()):.3g}); remove duplicate inputs")  # fmt: skip
        self.lam = lam
        self._chol_k = None

    def _flow(self, t: float) -> torch.Tensor:
        """g(lambda) = (1 - exp(-lambda t / n)) / lambda, the spectral form of Theta^-1 (I - e^(-Theta t / n))."""
        if math.isinf(t):
            return 1.0 / self.lam
        return -torch.expm1(-self.lam * t / self.n) / self.lam

    def _decay(self, t: float) -> torch.Tensor:
        """E = e^(-Theta t / n) on the training inputs for a finite ``t``, ``(n, n)``."""
        return (self.v * torch.exp(-self.lam * t / self.n)) @ self.v.T

    def predict(self, x, t: float, *, full_cov: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's output distribution at inputs ``x`` after training time ``t``: the mean ``(m, k)`` and the
        variance ``(m,)`` of every output unit (or the covariance ``(m, m)`` with ``full_cov``)."""
        t = _time(t)
        k_xt, theta_xt = kernels(x, self.x_train, **self._arch, device=self.lam.device)
        a = (theta_xt @ self.v) * self._flow(t) @ self.v.T  # (m, n): A_t(x)
        mean = a @ self.y_train
        if full_cov:
            k_xx, _ = kernels(x, **self._arch, device=self.lam.device)
            cross = a @ k_xt.T
            cov = k_xx - cross - cross.T + a @ self.k_tt @ a.T
            return mean, 0.5 * (cov + cov.T)
        k_diag = self._prior_variance(x)
        var = k_diag - 2 * (a * k_xt).sum(1) + ((a @ self.k_tt) * a).sum(1)
        return mean, var

    def _prior_variance(self, x) -> torch.Tensor:
        return kernel_diagonals(x, **self._arch, device=self.lam.device)[0]

    def losses(self, x, y, t: float) -> dict[str, float]:
        """Mean squared errors per example (summed over output units) at ``t``: ``bayes`` for the ensemble mean,
        ``gibbs`` for one member drawn from the ensemble (= bayes + k * mean variance), and the ``accuracy`` of the
        ensemble mean's arg-max against the targets' arg-max."""
        y = torch.as_tensor(y, device=self.lam.device, dtype=torch.float64)
        y = y[:, None] if y.ndim == 1 else y
        mean, var = self.predict(x, t)
        if mean.shape != y.shape:
            raise ValueError(f"y must have shape {tuple(mean.shape)}, got {tuple(y.shape)}")
        bayes = float(((mean - y) ** 2).sum(1).mean())
        out = {"bayes": bayes, "gibbs": bayes + y.shape[1] * float(var.mean())}
        if y.shape[1] > 1:
            out["accuracy"] = float((mean.argmax(1) == y.argmax(1)).double().mean())
        return out

    def information(self, x, t: float) -> tuple[float, float]:
        """Bounds (lower, upper) on I(X;T) in nats, X uniform on the rows of ``x`` and T the ensemble's output at
        ``t`` (:func:`mixture_mi_bounds`). For the training inputs use :meth:`training_information`, which stays
        exact where their variances vanish."""
        mean, var = self.predict(x, t)
        if bool((var <= 0).any()):
            raise ValueError(f"posterior variance {float(var.min()):.3g} <= 0 at some input (a training input, or a "
                             f"duplicate of one?); use training_information for the training inputs")  # fmt: skip
        return mixture_mi_bounds(mean, var)

    def training_information(self, t: float) -> tuple[float, float]:
        """Bounds (lower, upper) on I(X;T) in nats for X uniform on the training inputs, at any ``t`` including inf.

        On the training inputs T ~ N(Y - E Y, E K E) with E = e^(-Theta t / n): means and variances shrink onto the
        targets together. Mutual information is invariant under rescaling T, so everything is computed for T / eps
        with eps = exp(-lambda_min t / n) (lambda_min the NTK's smallest eigenvalue): the decaying parts become
        O(1) and the limit t -> inf is the slowest mode's, where inputs with different targets never overlap and
        inputs with equal targets stay partly distinguishable.
        """
        t = _time(t)
        rel = self.lam - self.lam[0]  # eigh sorts ascending
        if math.isinf(t):
            scale = (rel <= 1e-12 * float(self.lam[-1])).to(self.lam.dtype)
        else:
            scale = torch.exp(-rel * t / self.n)
        e_scaled = (self.v * scale) @ self.v.T  # E / eps
        r = e_scaled @ self.y_train  # (n, k): E Y / eps
        var = torch.diagonal(e_scaled @ self.k_tt @ e_scaled)  # diag(E K E) / eps^2
        if bool((var <= 0).any()):
            raise ValueError(f"posterior variance {float(var.min()):.3g} <= 0 on a training input: ill-conditioned "
                             f"kernels")  # fmt: skip
        d2 = _sq_dist(r)  # same targets: the distance of the scaled means is that of E Y / eps
        log_eps = -float(self.lam[0]) * t / self.n if math.isfinite(t) else -math.inf
        differ = _sq_dist(self.y_train) > 0
        if bool(differ.any()):
            # different targets: |(y_i - y_j) / eps - (r_i - r_j)|^2, computed without forming 1 / eps when it overflows
            if log_eps > -300:
                y_scaled = self.y_train * math.exp(-log_eps)
                d2_diff = _sq_dist(y_scaled - r)
            else:
                d2_diff = torch.full_like(d2, math.inf)
            d2 = torch.where(differ, d2_diff, d2)
        return _pairwise_bounds(d2, var, self.y_train.shape[1])

    def weight_kl(self, t: float) -> float:
        """KL[posterior || prior] of the ensemble's outputs on the training inputs at ``t``, in nats, summed over
        the output units (module docstring); 0 at t = 0, increasing in t, infinite at t = inf."""
        t = _time(t)
        if t == 0:
            return 0.0
        if math.isinf(t):
            return math.inf
        if self._chol_k is None:
            self._chol_k, info = torch.linalg.cholesky_ex(self.k_tt)
            if int(info) != 0:
                raise ValueError("the NNGP kernel of the training inputs is not positive definite; remove duplicates")
        e = self._decay(t)
        k_inv = lambda m: torch.cholesky_solve(m, self._chol_k)  # noqa: E731
        n, k = self.n, self.y_train.shape[1]
        trace = float(torch.diagonal(k_inv(e @ self.k_tt @ e)).sum())
        log_det = 2 * t * float(self.lam.sum()) / n  # ln det K - ln det (E K E) = -2 ln det E
        r = self.y_train - e @ self.y_train  # (I - E) Y
        mahalanobis = float((r * k_inv(r)).sum())
        return 0.5 * (k * (trace - n + log_det) + mahalanobis)
