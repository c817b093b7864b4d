"""Analytic NNGP and NTK kernels against Monte Carlo expectations and against wide finite networks; the infinite
ensemble's posterior, information bounds and KL against closed forms and brute force."""

import math

import numpy as np
import pytest
import torch

from ibcore.ensembles import InfiniteEnsemble, mixture_mi_bounds, one_hot_targets
from ibcore.ntk import ACTIVATIONS, WideMLP, empirical_ntk, kernel_diagonals, kernels
from ibcore.ntk import _expectations


def _inputs(n=6, d=12, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_closed_form_expectations_match_monte_carlo(activation):
    # E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for a bivariate Gaussian, against 2e6 samples
    g = torch.Generator().manual_seed(1)
    k11, k22, k12 = 1.7, 0.6, -0.55
    z = torch.randn(2_000_000, 2, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(torch.tensor([[k11, k12], [k12, k22]], dtype=torch.float64))
    u, v = (z @ chol.T).unbind(1)
    if activation == "relu":
        phi, dphi = torch.relu, lambda a: (a > 0).double()
    else:
        phi, dphi = torch.erf, lambda a: 2 / math.sqrt(math.pi) * torch.exp(-a * a)
    e, e_dot, e11, e22 = _expectations(activation, *(torch.tensor(v, dtype=torch.float64) for v in (k12, k11, k22)))
    for closed, samples in ((e, phi(u) * phi(v)), (e_dot, dphi(u) * dphi(v)), (e11, phi(u) ** 2), (e22, phi(v) ** 2)):
        se = float(samples.std()) / math.sqrt(len(samples))
        assert abs(float(closed) - float(samples.mean())) < 5 * se, (float(closed), float(samples.mean()), se)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias_std", [0.0, 0.3])
def test_kernels_are_the_wide_network_limit(activation, bias_std):
    # The empirical NTK and the last hidden layer's feature covariance of a wide finite network fluctuate around
    # the analytic kernels with relative size ~ 1/sqrt(width): averaged over 3 networks, width 2048 is within 6%
    # and closer than width 64.
    x = _inputs(n=6, d=10).float()
    nngp, ntk = kernels(x, depth=2, activation=activation, weight_std=1.4, bias_std=bias_std)
    errors = {}
    for width in (64, 2048):
        emp_ntk, emp_nngp = 0.0, 0.0
        for seed in range(3):
            net = WideMLP(10, width, 2, activation=activation, weight_std=1.4, bias_std=bias_std,
                          generator=torch.Generator().manual_seed(seed))  # fmt: skip
            emp_ntk = emp_ntk + empirical_ntk(net, x).double() / 3
            with torch.no_grad():
                h = net.hidden(x).double()
            emp_nngp = emp_nngp + (1.4**2 * h @ h.T / width + bias_std**2) / 3
        errors[width] = (float((emp_ntk - ntk).norm() / ntk.norm()), float((emp_nngp - nngp).norm() / nngp.norm()))
    assert max(errors[2048]) < 0.06, errors
    assert errors[2048][0] < errors[64][0] and errors[2048][1] < errors[64][1], errors


def test_one_layer_relu_kernel_is_the_arc_cosine_kernel():
    # depth 1, no bias, w^2 = 2: Sigma_1 = 2 x.x'/d and K(x, x') = 2 |x||x'|/d (sin t + (pi - t) cos t) / pi, the
    # order-1 arc-cosine kernel of the scaled inputs (Cho & Saul 2009)
    x = _inputs(n=5, d=7)
    nngp, ntk = kernels(x, depth=1, activation="relu", weight_std=math.sqrt(2.0))
    norms = x.norm(dim=1)
    cos = (x @ x.T / (norms[:, None] * norms[None, :])).clamp(-1, 1)
    t = torch.arccos(cos)
    ref = 2 * norms[:, None] * norms[None, :] / 7 * (torch.sin(t) + (math.pi - t) * cos) / math.pi
    assert torch.allclose(nngp, ref, atol=1e-10)
    # Theta_2 = Sigma_1 * 2 E[phi' phi'] + Sigma_2, with 2 E[phi' phi'] = (pi - t) / pi
    assert torch.allclose(ntk, (2 * x @ x.T / 7) * (math.pi - t) / math.pi + ref, atol=1e-10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernels_are_symmetric_psd_and_diagonals_agree(activation):
    x = _inputs(n=9, d=5)
    nngp, ntk = kernels(x, depth=3, activation=activation, weight_std=1.2, bias_std=0.1)
    for k in (nngp, ntk):
        assert torch.allclose(k, k.T, atol=1e-12)
        assert float(torch.linalg.eigvalsh(k).min()) > -1e-10
    d_nngp, d_ntk = kernel_diagonals(x, depth=3, activation=activation, weight_std=1.2, bias_std=0.1)
    assert torch.allclose(d_nngp, torch.diagonal(nngp)) and torch.allclose(d_ntk, torch.diagonal(ntk))
    cross, _ = kernels(x[:4], x[4:], depth=3, activation=activation, weight_std=1.2, bias_std=0.1)
    assert torch.allclose(cross, nngp[:4, 4:])


def test_kernels_reject_bad_arguments():
    x = _inputs()
    with pytest.raises(ValueError, match="activation"):
        kernels(x, activation="tanh")
    with pytest.raises(ValueError, match="depth"):
        kernels(x, depth=0)
    with pytest.raises(ValueError, match="weight_std"):
        kernels(x, weight_std=-1.0)
    with pytest.raises(ValueError, match="same number of features"):
        kernels(x, x[:, :3])
    with pytest.raises(ValueError, match="non-finite"):
        kernels(torch.full((2, 3), float("nan")))


# --- the infinite ensemble -------------------------------------------------------------------------------------


def _ensemble(n=12, k=3, seed=0, **arch):
    x = _inputs(n=n, d=6, seed=seed)
    y = torch.randn(n, k, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    return InfiniteEnsemble(x, y, **{"depth": 2, "activation": "erf", "weight_std": 1.3, "bias_std": 0.2, **arch}), x, y


def test_posterior_is_the_prior_at_zero_and_interpolates_at_infinity():
    ens, x, y = _ensemble()
    xs = _inputs(n=5, d=6, seed=3)
    mean, cov = ens.predict(xs, 0.0, full_cov=True)
    nngp, _ = kernels(xs, depth=2, activation="erf", weight_std=1.3, bias_std=0.2)
    assert torch.allclose(mean, torch.zeros_like(mean)) and torch.allclose(cov, nngp, atol=1e-12)
    mean, var = ens.predict(x, math.inf)
    assert torch.allclose(mean, y, atol=1e-8) and float(var.abs().max()) < 1e-8
    assert ens.losses(x, y, math.inf)["gibbs"] < 1e-8


def test_posterior_matches_a_step_by_step_gradient_flow_of_the_linear_model():
    # Integrate df/dt = -(1/n) Theta (f - y) and its covariance with small Euler steps on train + test inputs jointly
    ens, x, y = _ensemble(n=8, k=2)
    xs = _inputs(n=4, d=6, seed=5)
    z = torch.cat([x, xs])
    nngp, ntk = kernels(z, depth=2, activation="erf", weight_std=1.3, bias_std=0.2)
    n, t_end, steps = 8, 3.0, 30000
    dt = t_end / steps
    # f_t(z) = f_0(z) + B_t (f_0(x) - y) with dB/dt = -(1/n) Theta(z, x) (S + B_t restricted to x)
    b = torch.zeros(len(z), n, dtype=torch.float64)
    eye_n = torch.eye(n, dtype=torch.float64)
    for _ in range(steps):
        b = b - dt / n * ntk[:, :n] @ (eye_n + b[:n])
    mean_ref = -b @ y  # E f_0 = 0
    select = torch.eye(len(z), dtype=torch.float64)[:n]  # (n, m): the training rows of z
    m = torch.eye(len(z), dtype=torch.float64) + b @ select  # f_t = M f_0(z) - B y
    cov_ref = m @ nngp @ m.T
    mean, cov = ens.predict(z, t_end, full_cov=True)
    assert torch.allclose(mean, mean_ref, atol=1e-3) and torch.allclose(cov, cov_ref, atol=1e-3)


def test_weight_kl_equals_the_weight_space_kl_of_the_linear_model():
    # A linear model f(x) = J(x) theta with theta ~ N(0, I_P) has prior covariance K = Theta = J J^T; gradient flow
    # moves theta_t = (I - J^T G J) theta_0 + J^T G y with G = Theta^-1 (I - exp(-Theta t / n)). Its KL to the prior,
    # computed in the P-dimensional weight space, is what weight_kl computes in function space with K = Theta.
    n, p, t = 6, 40, 7.0
    j = torch.randn(n, p, generator=torch.Generator().manual_seed(2), dtype=torch.float64) / math.sqrt(p)
    y = torch.randn(n, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    theta = j @ j.T
    lam, v = torch.linalg.eigh(theta)
    g = (v * (-torch.expm1(-lam * t / n) / lam)) @ v.T
    a = torch.eye(p, dtype=torch.float64) - j.T @ g @ j
    mean, cov = j.T @ g @ y, a @ a.T
    kl_weights = 0.5 * (float(torch.trace(cov)) - p + float((mean**2).sum()) - float(torch.logdet(cov)))
    ens = InfiniteEnsemble.__new__(InfiniteEnsemble)  # the ensemble's algebra with the kernels replaced
    ens.y_train, ens.n, ens.k_tt, ens.lam, ens.v, ens._chol_k = y, n, theta, lam, v, None
    assert ens.weight_kl(t) == pytest.approx(kl_weights, rel=1e-6)


def test_weight_kl_is_zero_at_the_start_and_grows_with_time():
    ens, _, _ = _ensemble()
    kls = [ens.weight_kl(t) for t in (0.0, 0.1, 1.0, 10.0, 100.0)]
    assert kls[0] == 0.0 and all(b > a for a, b in zip(kls, kls[1:])), kls
    assert ens.weight_kl(math.inf) == math.inf
    with pytest.raises(ValueError, match="t must be"):
        ens.weight_kl(-1.0)


def _mixture_mi_by_quadrature(means, sds):
    # I(X;T) = h(T) - mean_i h(T | x_i) for a 1-D uniform Gaussian mixture, h(T) on a fine grid
    grid = np.linspace(min(means) - 12 * max(sds), max(means) + 12 * max(sds), 400_001)
    dens = np.mean([np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)) for m, s in zip(means, sds)], 0)
    h_t = -np.trapezoid(np.where(dens > 0, dens * np.log(np.maximum(dens, 1e-300)), 0.0), grid)
    return h_t - np.mean([0.5 * np.log(2 * np.pi * np.e * s * s) for s in sds])


@pytest.mark.parametrize("means, sds", [([0.0, 1.0, 3.0], [1.0, 0.5, 2.0]), ([0.0, 0.2], [1.0, 1.0]),
                                        ([0.0, 4.0, 4.5, 9.0], [0.3, 1.0, 0.7, 2.5])])  # fmt: skip
def test_mixture_bounds_bracket_the_true_information(means, sds):
    lo, hi = mixture_mi_bounds(torch.tensor(means)[:, None], torch.tensor(sds) ** 2)
    true = _mixture_mi_by_quadrature(means, sds)
    assert 0 <= lo <= true + 1e-6 and true <= hi + 1e-6 and hi <= math.log(len(means)) + 1e-12, (lo, true, hi)


def test_mixture_bounds_limits_and_errors():
    lo, hi = mixture_mi_bounds(torch.zeros(5, 3), torch.ones(5))
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.0, abs=1e-12)
    lo, hi = mixture_mi_bounds(100 * torch.eye(5), torch.ones(5))
    assert lo == pytest.approx(math.log(5), abs=1e-9) and hi == pytest.approx(math.log(5), abs=1e-9)
    with pytest.raises(ValueError, match="variances"):
        mixture_mi_bounds(torch.zeros(3, 2), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="means must be"):
        mixture_mi_bounds(torch.zeros(3), torch.ones(3))


def test_training_information_is_the_mixture_information_and_has_a_limit():
    # On the training inputs the rescaled computation equals the direct one where the direct one is accurate, is
    # continuous into t = inf, and lies between H(labels) (inputs with different targets never overlap) and ln n.
    x = _inputs(n=16, d=6, seed=9)
    labels = torch.arange(16) % 4
    ens = InfiniteEnsemble(x, one_hot_targets(labels, 4), depth=2, activation="relu", weight_std=1.0)
    for t in (0.5, 5.0, 50.0):
        assert ens.training_information(t) == pytest.approx(ens.information(x, t), rel=1e-6, abs=1e-9)
    late, limit = ens.training_information(1e9), ens.training_information(math.inf)
    assert late == pytest.approx(limit, abs=1e-6)
    assert math.log(4) - 1e-9 <= limit[0] <= limit[1] <= math.log(16) + 1e-9
    # two inputs with distinct targets only: at t = inf they are told apart exactly
    ens2 = InfiniteEnsemble(x[:2], torch.tensor([[1.0], [-1.0]], dtype=torch.float64), depth=1)
    assert ens2.training_information(math.inf) == pytest.approx((math.log(2), math.log(2)))


def test_ensemble_rejects_bad_input():
    x = _inputs(n=4, d=3)
    with pytest.raises(ValueError, match="y_train"):
        InfiniteEnsemble(x, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="singular"):
        InfiniteEnsemble(torch.cat([x, x[:1]]), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="labels must lie"):
        one_hot_targets(torch.tensor([0, 10]), 10)
    ens, _, _ = _ensemble()
    with pytest.raises(ValueError, match="t must be"):
        ens.predict(x, float("nan"))
