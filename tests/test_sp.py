"""The sample-propagation estimator of Goldfeld et al. (2019) against closed forms and numerical integration."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from ibcore.estimators import GaussianMixtureEntropy, KozachenkoLeonenko, SamplePropagation
from ibcore.estimators.sp import gaussian_entropy


@pytest.mark.parametrize("dim, sigma", [(1, 1.0), (3, 0.005), (10, 0.1)])
def test_single_gaussian_entropy_matches_the_closed_form(dim, sigma):
    r = GaussianMixtureEntropy(noise_std=sigma, n_mc=20000, seed=1).estimate(np.zeros((1, dim)))
    want = gaussian_entropy(dim, sigma)
    assert abs(r.value - want) < 4 * r.std + 1e-12
    assert r.std < 0.02 * math.sqrt(dim)


@pytest.mark.parametrize("k, dim", [(2, 1), (8, 2), (64, 5)])
def test_well_separated_mixture_is_ln_k_plus_the_gaussian_entropy(k, dim):
    rng = np.random.default_rng(k)
    centres = rng.normal(size=(k, dim)) * 1e3  # pairwise distances in the hundreds of noise_std
    r = GaussianMixtureEntropy(noise_std=1.0, n_mc=20000).estimate(centres)
    assert r.value == pytest.approx(math.log(k) + gaussian_entropy(dim, 1.0), abs=4 * r.std + 1e-9)
    mi = SamplePropagation(noise_std=1.0, n_mc=20000).estimate(np.arange(k), centres)
    assert mi.value == pytest.approx(math.log(k), abs=1e-6)  # paired points: no Monte Carlo error left
    assert mi.diagnostics["exact_conditional"]


def test_one_dimensional_mixture_matches_numerical_integration():
    centres = np.array([0.0, 0.7, 1.5, 4.0])
    sigma = 0.6

    def p(t):
        return np.mean(np.exp(-((t - centres) ** 2) / (2 * sigma**2))) / math.sqrt(2 * math.pi * sigma**2)

    want, _ = integrate.quad(lambda t: -p(t) * math.log(p(t)), -10, 14, limit=200)
    r = GaussianMixtureEntropy(noise_std=sigma, n_mc=40000, seed=3).estimate(centres)
    assert abs(r.value - want) < 4 * r.std
    assert r.std < 0.01


def test_mixture_entropy_agrees_with_kozachenko_leonenko_on_samples():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-2, 2, size=(30, 2))
    sigma = 0.3
    samples = centres[rng.integers(0, 30, 20000)] + sigma * rng.normal(size=(20000, 2))
    sp = GaussianMixtureEntropy(noise_std=sigma, n_mc=20000).estimate(centres)
    kl = KozachenkoLeonenko().estimate(samples)
    assert sp.value == pytest.approx(kl.value, abs=0.05)


def test_replicas_of_separated_inputs_give_ln_n_and_shared_replicas_give_zero():
    rng = np.random.default_rng(1)
    n, r, sigma = 6, 20, 0.1
    anchors = rng.normal(size=(n, 3)) * 100
    ids = np.repeat(np.arange(n), r)
    centres = anchors[ids] + 0.5 * sigma * rng.normal(size=(n * r, 3))  # each input: a cloud of replicas
    est = SamplePropagation(noise_std=sigma, n_mc=20000)
    sep = est.estimate(ids, centres)
    assert not sep.diagnostics["exact_conditional"]
    assert sep.value == pytest.approx(math.log(n), abs=4 * sep.std + 1e-6)
    shared = np.tile(centres[:r], (n, 1))  # every input has the same conditional law: I = 0
    zero = est.estimate(ids, shared)
    assert abs(zero.value) < 1e-9  # log p(t|x) = log p(t) at every point


def test_standard_error_matches_the_spread_over_seeds():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 2))
    ids = np.arange(40) % 10  # 10 inputs, 4 overlapping centres each
    values, stds = [], []
    for seed in range(20):
        r = SamplePropagation(noise_std=0.5, n_mc=2000, seed=seed).estimate(ids, centres)
        values.append(r.value)
        stds.append(r.std)
    ratio = np.std(values, ddof=1) / np.mean(stds)
    assert 0.5 < ratio < 2.0, ratio


@pytest.mark.parametrize("params, message", [
    ({"noise_std": 0.0}, r"noise_std must be a positive finite number, got 0.0"),
    ({"noise_std": float("nan")}, "noise_std must be a positive finite number"),
    ({"n_mc": 1}, r"n_mc must be an integer >= 2, got 1"),
])  # fmt: skip
def test_bad_hyperparameters_raise(params, message):
    with pytest.raises(ValueError, match=message):
        SamplePropagation(**params).estimate([0, 1], [[0.0], [1.0]])
    with pytest.raises(ValueError, match=message):
        GaussianMixtureEntropy(**params).estimate([[0.0], [1.0]])


@pytest.mark.cuda
def test_cpu_and_cuda_agree():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(500, 4))
    ids = np.arange(500) % 50
    cpu = SamplePropagation(noise_std=0.3, n_mc=5000).estimate(ids, centres)
    gpu = SamplePropagation(noise_std=0.3, n_mc=5000).estimate(torch.from_numpy(ids).to("cuda"),
                                                                torch.from_numpy(centres).to("cuda"))
    assert gpu.value == pytest.approx(cpu.value, abs=1e-9)  # same points: the generator lives on the CPU


def test_gathered_and_masked_group_densities_agree():
    # Small groups are gathered, large ones masked out of the full distance matrix: both give log p(t | group).
    from ibcore.estimators import sp

    rng = np.random.default_rng(5)
    c = torch.from_numpy(rng.normal(size=(300, 3)))
    groups = torch.from_numpy(rng.integers(0, 2, 300))  # two large groups: the masked path
    t = c[:50] + 0.2 * torch.from_numpy(rng.normal(size=(50, 3)))
    _, masked = sp._log_densities(t, c, 0.2, groups[:50], groups)
    norm = -0.5 * 3 * math.log(2 * math.pi * 0.2**2)
    gathered = sp._group_log_density(t, groups[:50], c, groups, torch.bincount(groups), 0.2, norm)
    assert torch.allclose(masked, gathered, atol=1e-9)
