"""The noisy-layer estimator (ibcore.estimators.noisy_layer) against closed forms and the KDE bounds."""

import math

import pytest
import torch
from scipy.special import digamma

from ibcore.estimators import KDEBound, NoisyLayerMI


def _layer(n=1024, d=3, scale=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.tanh(scale * torch.randn(n, d, generator=g, dtype=torch.float64))


def test_far_apart_values_give_ln_n_and_coinciding_ones_ln_of_the_distinct_values():
    # 64 values on a grid 1 apart with noise of standard deviation 0.03: I(X; T + Z) = ln 64 to within the overlap
    # of the Gaussians (exp(-1/(8 s^2)) ~ 1e-60); every value twice: ln 64 of 128 input ids, and ln 2 for labels that
    # pair the values. Tolerance 0.1 nats: the k-NN entropy of 64 draws per Gaussian is biased by up to 0.07 nats
    # (measured at 8 to 64 replicas, k = 1 and 3)
    grid = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0)).to(torch.float64)
    est = NoisyLayerMI(noise_variance=1e-3)
    assert est.estimate(grid, torch.arange(64)).value == pytest.approx(math.log(64), abs=0.1)
    twice = torch.cat([grid, grid])
    r = est.estimate(twice, torch.arange(128))
    assert r.value == pytest.approx(math.log(64), abs=0.1) and not r.diagnostics["exact_conditional"]
    assert r.diagnostics["bound"] == pytest.approx(math.log(128))
    labels = torch.arange(64) // 32  # the left and the right half of the grid: one bit
    assert est.estimate(grid, labels).value == pytest.approx(math.log(2), abs=0.1)
    # with a registered entropy estimator, each input's h(T~ | X = x) is the Gaussian's, exactly
    r = NoisyLayerMI(noise_variance=1e-3, entropy="kl").estimate(twice, torch.arange(128))
    assert r.value == pytest.approx(math.log(64), abs=0.1) and r.diagnostics["exact_conditional"]


def test_far_apart_groups_read_psi_m_minus_psi_replicas():
    # the k-NN form's limit where every input's draws are nearer each other than any other input's: psi(M) -
    # psi(replicas), the same distances on both sides (tests the formula, not the estimator's accuracy)
    grid = torch.arange(50.0, dtype=torch.float64)[:, None] * 100
    r = NoisyLayerMI(replicas=8).estimate(grid, torch.arange(50))
    expected = digamma(400.0) - digamma(8.0)
    assert r.value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("m", [1, 2, 4])
def test_one_value_gives_zero(m):
    # all inputs on one value: I = 0, read within 0.1 nats at the defaults (8 draws, k = 1; the module docstring)
    r = NoisyLayerMI().estimate(torch.ones(2000, m), torch.arange(2000))
    assert abs(r.value) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_it_lies_between_the_kde_bounds_of_the_same_noisy_layer(seed):
    # Kolchinsky & Tracey (2017), Theorems 2-3: the true I(X; T + Z) of the Gaussian mixture lies between the
    # Bhattacharyya (lower) and KL (upper) pairwise-distance bounds; with every column kept (3 <= n_components),
    # the k-NN estimate of the same quantity must land there, up to its own error (0.1 nats; when written it lay 0.39 to
    # 1.25 nats inside both bounds at each of these seeds)
    t = _layer(seed=seed, scale=[0.3, 1.0, 3.0, 1.5][seed])
    ids = torch.arange(len(t))
    knn = NoisyLayerMI(noise_variance=1e-2, seed=seed).estimate(t, ids)
    upper = KDEBound(noise_variance=1e-2).estimate(t, ids).value
    lower = KDEBound(noise_variance=1e-2, distance="bhattacharyya").estimate(t, ids).value
    assert lower - 0.1 <= knn.value <= upper + 0.1, (lower, knn.value, upper)
    assert knn.diagnostics["components"] == 3


def test_compression_keeps_no_more_than_the_whole_layer():
    # data processing: I(P^T T + Z'; X) <= I(T + Z; X), here a 6-unit layer of rank 6 kept whole or on 2 axes
    t = _layer(d=6, scale=0.5)
    ids = torch.arange(len(t))
    whole = NoisyLayerMI(noise_variance=1e-2, n_components=None).estimate(t, ids)
    two = NoisyLayerMI(noise_variance=1e-2, n_components=2).estimate(t, ids)
    assert two.diagnostics["components"] == 2 and whole.diagnostics["components"] == 6
    assert two.value < whole.value - 0.5


def test_a_batch_gives_what_separate_calls_give():
    t = _layer(n=600)
    ids, labels = torch.arange(600), (t[:, 0] > 0).long()
    est = NoisyLayerMI(seed=3)
    a, b = est.estimate_batch(t, [ids, labels])
    assert a.value == est.estimate(t, ids).value and b.value == est.estimate(t, labels).value


@pytest.mark.parametrize(("params", "match"), [
    ({"replicas": 0}, r"replicas must be .*got 0"),
    ({"noise_variance": -1.0}, r"noise_variance must be a positive finite number, got -1.0"),
    ({"noise_variance": float("nan")}, r"noise_variance must be a positive finite number, got nan"),
    ({"n_components": 0}, r"n_components must be .*got 0"),
    ({"entropy": "ksg"}, r"entropy must name an entropy estimator, got 'ksg'"),
    ({"entropy": "nope"}, r"unknown estimator name='nope'"),
    ({"entropy_params": [3]}, r"entropy_params must be a dict or None, got \[3\]"),
    ({"entropy_params": {"k": 5}}, r"with entropy='knn' set k instead, got \{'k': 5\}"),
    ({"k": 0}, r"k must be .*got 0"),
    ({"seed": 1.5}, r"seed must be an integer, got 1.5"),
])  # fmt: skip
def test_bad_hyperparameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        NoisyLayerMI(**params).estimate(_layer(n=50), torch.arange(50))


def test_too_few_draws_per_group_are_named():
    t = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y: every group needs more than k=3 draws .* group 0 has 1 row\(s\) x "
                                         r"replicas=3 = 3"):  # fmt: skip
        NoisyLayerMI(replicas=3, k=3).estimate(t, [0, 1, 2, 3])
    # a registered entropy estimator names the group whose estimate failed: two rows, one draw each
    with pytest.raises(ValueError, match=r"the noisy layer of group 0: .*has 2 samples"):
        NoisyLayerMI(replicas=1, entropy="kl").estimate(t, [0, 0, 1, 1])
