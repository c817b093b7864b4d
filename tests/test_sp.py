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
    mi = SamplePropagation(noise_std=1.0, n_mc=20000).estimate(centres, np.arange(k))
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


def test_replicas_of_separated_inputs_give_ln_n_and_shared_replicas_give_zero(device):
    rng = np.random.default_rng(1)
    n, r, sigma = 6, 20, 0.1
    anchors = rng.normal(size=(n, 3)) * 100
    ids = np.repeat(np.arange(n), r)
    centres = anchors[ids] + 0.5 * sigma * rng.normal(size=(n * r, 3))  # each input: a cloud of replicas
    est = SamplePropagation(noise_std=sigma, n_mc=20000, device=device)
    sep = est.estimate(centres, ids)
    assert not sep.diagnostics["exact_conditional"]
    assert sep.value == pytest.approx(math.log(n), abs=4 * sep.std + 1e-6)
    shared = np.tile(centres[:r], (n, 1))  # every input has the same conditional law: I = 0
    zero = est.estimate(shared, ids)
    assert abs(zero.value) < 1e-9  # log p(t|x) = log p(t) at every point


def test_standard_error_matches_the_spread_over_seeds():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 2))
    ids = np.arange(40) % 10  # 10 inputs, 4 overlapping centres each
    values, stds = [], []
    for seed in range(20):
        r = SamplePropagation(noise_std=0.5, n_mc=2000, seed=seed).estimate(centres, ids)
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
        SamplePropagation(**params).estimate([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match=message):
        GaussianMixtureEntropy(**params).estimate([[0.0], [1.0]])


def test_device_and_cpu_agree(device):
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(500, 4))
    ids = np.arange(500) % 50
    cpu = SamplePropagation(noise_std=0.3, n_mc=5000).estimate(centres, ids)
    dev = SamplePropagation(noise_std=0.3, n_mc=5000).estimate(torch.from_numpy(centres).to(device),
                                                                torch.from_numpy(ids).to(device))
    # the same points (the generator lives on the CPU), float64 distances: 1e-9
    assert dev.value == pytest.approx(cpu.value, abs=1e-9)
    h = GaussianMixtureEntropy(noise_std=0.3, n_mc=5000, device=device).estimate(centres)
    assert h.value == pytest.approx(GaussianMixtureEntropy(noise_std=0.3, n_mc=5000).estimate(centres).value, abs=1e-9)


def test_distance_chunks_do_not_sync_with_the_host(device, host_syncs, monkeypatch):
    # Twice the chunks of the point-centre distances (both paths: the few label groups of the full pass and the
    # many small input groups gathered), the same host syncs.
    from ibcore.estimators import sp

    host_syncs.require()
    rng = np.random.default_rng(4)
    c = torch.from_numpy(rng.normal(size=(300, 3))).to(device)
    ids = (torch.arange(300) // 3).to(device)

    def run(elements):
        monkeypatch.setattr(sp, "_CHUNK_ELEMENTS", {"cpu": elements, "cuda": elements})
        return host_syncs(lambda: SamplePropagation(noise_std=0.3, n_mc=2000).estimate_batch(c, [ids, ids % 2]))

    assert run(300 * 250) == run(300 * 500)  # 8 vs 4 chunks of the full pass, more of the gathered one


def test_block_and_gathered_group_densities_agree_with_a_direct_sum(device, on_device):
    # Few large groups are read off the full distance pass (blocks of sorted centres), many small ones gathered:
    # both must equal log p(t | group) summed directly, and log p(t) must not depend on the partitions asked for.
    from ibcore.estimators import sp

    rng = np.random.default_rng(5)
    c = torch.from_numpy(rng.normal(size=(300, 3))).to(device)
    labels = torch.from_numpy(rng.integers(0, 3, 300)).to(device)  # three large groups: the block path
    ids = (torch.arange(300) // 4).to(device)  # 75 groups of 4: the gather path
    idx = torch.from_numpy(rng.integers(0, 300, 50)).to(device)
    t = c[idx] + 0.2 * torch.from_numpy(rng.normal(size=(50, 3))).to(device)
    log_p, (by_label, by_id) = sp._log_densities(t, c, 0.2, [(labels[idx], labels), (ids[idx], ids)])
    (by_id_alone,) = sp._log_densities(t, c, 0.2, [(ids[idx], ids)])[1]
    alone, _ = sp._log_densities(t, c, 0.2)
    on_device(log_p, by_label, by_id, by_id_alone, alone)

    def direct(members):
        d2 = ((t[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        dens = torch.exp(-d2 / (2 * 0.2**2)) / (2 * math.pi * 0.2**2) ** 1.5
        return torch.log((dens * members).sum(1) / members.sum(1))

    assert torch.allclose(log_p, direct(torch.ones(50, 300, dtype=torch.float64, device=device)), atol=1e-9)
    assert torch.allclose(alone, log_p, atol=1e-12)
    assert torch.allclose(by_label, direct((labels[None, :] == labels[idx, None]).double()), atol=1e-9)
    assert torch.allclose(by_id, direct((ids[None, :] == ids[idx, None]).double()), atol=1e-9)
    assert torch.allclose(by_id_alone, by_id, atol=1e-12)


def test_a_batch_of_other_sides_equals_separate_estimates(device):
    rng = np.random.default_rng(6)
    c = rng.normal(size=(400, 2))
    ids, labels = np.arange(400) // 8, (np.arange(400) // 8) % 2
    est = SamplePropagation(noise_std=0.3, n_mc=3000, seed=4, device=device)
    a, b = est.estimate_batch(c, [ids, labels])
    assert a.value == pytest.approx(est.estimate(c, ids).value, abs=1e-12)
    assert b.value == pytest.approx(est.estimate(c, labels).value, abs=1e-12)
    assert a.diagnostics["h_t"] == b.diagnostics["h_t"]  # the same Monte Carlo points
    with pytest.raises(ValueError, match="y is empty"):
        est.estimate_batch(c, [])
    with pytest.raises(ValueError, match=r"y\[1\]"):
        est.estimate_batch(c, [ids, labels[:10]])
    # several layers against one other side: one estimate each, as separate calls give
    two = est.estimate_batch(np.stack([c, 2 * c]), ids)
    assert [r.value for r in two] == pytest.approx([est.estimate(c, ids).value, est.estimate(2 * c, ids).value],
                                                   abs=1e-12)


def test_fast_row_logsumexp_equals_torch_including_underflow_and_empty_rows():
    from ibcore.estimators.sp import _logsumexp_rows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 500, generator=g, dtype=torch.float64) * 3000  # most terms far below each row's largest
    x[3] = -math.inf  # a row with no mass
    x[4, :7] = -math.inf
    x[5] = torch.linspace(-5, 0, 500, dtype=torch.float64)  # no term below the floor: the plain sum
    a, b = torch.logsumexp(x, dim=1), _logsumexp_rows(x)
    assert torch.equal(torch.isneginf(a), torch.isneginf(b)) and bool(torch.isneginf(b[3]))
    finite = torch.isfinite(a)
    assert torch.allclose(a[finite], b[finite], rtol=1e-14, atol=1e-12)
