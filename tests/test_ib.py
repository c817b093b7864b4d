"""The IB and dualIB solvers on discrete joints with known properties."""

import math

import numpy as np
import pytest
import torch

from ibcore.ib import critical_betas, first_critical_beta, ib_curve, ib_solve


def _bsc(eps=0.1):
    # X uniform on {0, 1}, Y = X flipped with probability eps: maximal correlation 1 - 2 eps
    return np.array([[0.5 * (1 - eps), 0.5 * eps], [0.5 * eps, 0.5 * (1 - eps)]])


def _mi(p):
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())


def _random_joint(nx=6, ny=3, seed=0):
    p = np.random.default_rng(seed).random((nx, ny)) + 0.05  # full support: the dualIB needs p(y|x) > 0
    return p / p.sum()


def test_the_first_critical_beta_of_a_binary_symmetric_channel():
    # closed form 1 / (1 - 2 eps)^2 (Wu et al. 2019): the trivial encoder below it, an informative one above it
    p = _bsc(0.1)
    assert first_critical_beta(p) == pytest.approx(1 / 0.8**2)
    below = ib_solve(p, 0.9 / 0.8**2, max_iter=20000)
    above = ib_solve(p, 1.2 / 0.8**2, max_iter=20000)
    assert below.i_xt < 1e-6 and below.clusters == 1
    assert above.i_xt > 0.05 and above.clusters == 2


def test_annealed_curves_stay_inside_the_bounds_are_monotone_and_reach_i_xy():
    p = _random_joint()
    i_xy, h_x = _mi(p), float(-(p.sum(1) * np.log(p.sum(1))).sum())
    betas = np.geomspace(0.5, 500, 40)
    for method in ("ib", "dualib"):
        curve = ib_curve(p, betas, method=method)
        ixt = np.array([s.i_xt for s in curve])
        ity = np.array([s.i_ty for s in curve])
        assert np.all(ity >= -1e-12) and np.all(ity <= i_xy + 1e-9) and np.all(ixt <= h_x + 1e-9)
        assert np.all(np.diff(ity) >= -1e-6) and np.all(np.diff(ixt) >= -1e-6), method
        assert ity[-1] == pytest.approx(i_xy, abs=1e-3), method
        assert ixt[0] < 1e-6  # at small beta: the trivial solution
        first = critical_betas(curve)[0]
        assert first[1:] == (1, 2)  # the trivial cluster divides in two
        if method == "ib":  # and not before 1 / rho_m^2 (Wu et al. 2019; a theorem about the IB only)
            assert first[0] >= first_critical_beta(p)


def test_the_ib_is_the_optimum_of_its_own_objective():
    # at every beta, the IB solution's Lagrangian I(X;T) - beta I(T;Y) is no larger than that of the dualIB's
    # encoder (which is a feasible encoder for the IB problem): no dualIB point lies above the IB curve
    p = _random_joint(seed=1)
    betas = np.geomspace(1.0, 100, 25)
    for a, b in zip(ib_curve(p, betas, method="ib"), ib_curve(p, betas, method="dualib")):
        assert a.i_xt - a.beta * a.i_ty <= b.i_xt - b.beta * b.i_ty + 1e-6, a.beta


def test_the_dualib_decoder_keeps_an_exponential_family():
    # p(y|x) ~ exp(theta_x y) / y! on y = 0..5 (truncated Poisson): the dualIB decoder, a normalised geometric mean,
    # is again exp(theta_t y) / y! (log p(y|t) + ln y! affine in y); the IB decoder, a mixture, is not
    y = np.arange(6)
    theta = np.log([0.5, 1.0, 2.0, 4.0])
    cond = np.exp(theta[:, None] * y[None, :] - np.array([math.lgamma(v + 1) for v in y])[None, :])
    cond /= cond.sum(1, keepdims=True)
    p = cond / 4
    lg = np.array([math.lgamma(v + 1) for v in y])

    def curvature(dec):
        v = np.log(dec.numpy()) + lg[None, :]
        return np.abs(np.diff(v, n=2, axis=1)).max()

    dual = ib_solve(p, 3.0, method="dualib", n_clusters=2, seed=0)
    ib = ib_solve(p, 3.0, method="ib", n_clusters=2, seed=0)
    assert dual.clusters == 2 and ib.clusters == 2
    assert curvature(dual.decoder) < 1e-9 < 1e-3 < curvature(ib.decoder)


def test_solver_errors_name_their_argument():
    with pytest.raises(ValueError, match="p_xy must be finite, >= 0 and sum to 1"):
        ib_solve([[0.5, 0.5], [0.5, 0.5]], 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        ib_solve(_bsc(), 1.0, method="dual")
    with pytest.raises(ValueError, match="beta must be a finite number > 0, got -1"):
        ib_solve(_bsc(), -1)
    with pytest.raises(ValueError, match="betas must be a non-empty increasing sequence"):
        ib_curve(_bsc(), [2.0, 1.0])
    with pytest.raises(ValueError, match="rows x of probability 0"):
        ib_solve([[0.5, 0.5], [0.0, 0.0]], 1.0)


def test_solver_is_deterministic_and_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = ib_solve(_random_joint(), 5.0, seed=3)
    assert torch.equal(torch.rand(2), expected)
    b = ib_solve(_random_joint(), 5.0, seed=3)
    assert torch.equal(a.encoder, b.encoder)


def test_distortions_of_the_identity_and_the_trivial_encoders():
    from ibcore.ib import distortions, mutual_information

    p = _random_joint(5, 3, seed=2)
    assert mutual_information(p) == pytest.approx(_mi(p))
    ident = distortions(p, np.eye(5))
    assert ident["log_loss"] == pytest.approx(0, abs=1e-12) and ident["error_exponent"] == pytest.approx(0, abs=1e-12)
    trivial = distortions(p, np.ones((5, 1)))
    # closed forms: E KL[p(y|x) || p(y)] = I(X;Y); E KL[q || p(y|x)] = -ln sum_y prod_x p(y|x)^p(x) for the
    # normalised geometric mean q
    px = p.sum(1)
    cond = p / px[:, None]
    assert trivial["log_loss"] == pytest.approx(_mi(p))
    assert trivial["error_exponent"] == pytest.approx(-math.log(np.exp(px @ np.log(cond)).sum()))
    with pytest.raises(ValueError, match="encoder must be a non-negative"):
        distortions(p, np.ones((4, 2)))
