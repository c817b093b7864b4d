"""The copula tools and the truth-blind default: rank transforms keep the MI, the elliptical copula estimator is
exact on Gaussian and t laws seen through monotone maps, and ``auto`` returns its largest candidate, says why, and
is right on tasks of every kind it claims (seeds not used while it was built: 0-2 were)."""

import math

import numpy as np
import pytest
import torch
from scipy import special

import ibcore.estimators as est
from ibcore import tasks
from ibcore.estimators import AutoMI, CopulaMI, GaussianMI, normal_scores, uniform_ranks
from ibcore.estimators.copula import t_shared_scale_mi


def test_normal_scores_are_the_normal_quantiles_of_the_ranks_and_ignore_monotone_maps():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1000, 3)))
    z = normal_scores(x, seed=1)
    expected = special.ndtri(np.arange(1, 1001) / 1001)
    for j in range(3):
        assert np.allclose(np.sort(z[:, j].numpy()), expected, rtol=0, atol=1e-12)
        assert (np.argsort(z[:, j].numpy()) == np.argsort(x[:, j].numpy())).all()
    warped = torch.stack([torch.sinh(x[:, 0]), x[:, 1] ** 3, torch.special.ndtr(x[:, 2])], 1)
    assert torch.equal(normal_scores(warped, seed=1), z)  # the same ranks, the same scores, exactly


def test_ties_are_ranked_in_a_random_order_fixed_by_the_seed():
    x = torch.zeros(200, 1)
    x[100:] = 1.0
    u1, u2, u3 = (uniform_ranks(x, seed=s)[:, 0] for s in (5, 5, 6))
    assert torch.equal(u1, u2) and not torch.equal(u1, u3)
    assert u1[:100].max() < u1[100:].min()  # ties stay below the larger values
    assert torch.equal(torch.sort(u1).values, torch.arange(1, 201, dtype=torch.float64) / 201)


def test_the_shared_scale_term_is_the_closed_form_of_the_multivariate_t():
    for dof, a, b in ((1, 1, 1), (3, 2, 5), (7, 10, 10)):
        assert t_shared_scale_mi(float(dof), a, b) == pytest.approx(tasks.student_t_mi(0.0, dof, a, b), rel=1e-12)
    assert t_shared_scale_mi(math.inf, 3, 3) == 0.0


@pytest.mark.parametrize("dof", [1, 3])
def test_the_t_copula_recovers_the_mi_of_a_t_through_monotone_maps(dof):
    x, y = tasks.student_t(20_000, 1.0, dim=2, dof=dof, seed=11)
    r = CopulaMI().estimate(np.arcsinh(x), y**3)
    assert r.diagnostics["dof"] == pytest.approx(dof, rel=0.35)
    assert r.value == pytest.approx(tasks.student_t_mi(1.0, dof, 2, 2), abs=0.05)
    g = CopulaMI(family="gaussian").estimate(x, y)
    assert g.diagnostics["dof"] == math.inf and g.value < r.value - 0.1  # the Gaussian copula misses the tails


def test_a_gaussian_copula_is_kept_for_gaussian_data_and_equals_the_gaussian_estimator_on_the_scores():
    x, y = tasks.gaussian_pair(20_000, 2.0, 3, 2, mix=True, seed=12)
    r = CopulaMI().estimate(special.ndtr(x), np.exp(y))
    assert r.diagnostics["dof"] == math.inf and r.value == pytest.approx(2.0, abs=0.05)
    zx, zy = normal_scores(torch.from_numpy(x), 0), normal_scores(torch.from_numpy(y), 0)
    seq = uniform_ranks(torch.cat([torch.from_numpy(x), torch.from_numpy(y)], 1), 0)
    z = torch.special.ndtri(seq)
    ref = GaussianMI().estimate(z[:, :3], z[:, 3:]).value - 3 * 2 / (2 * 20_000)
    # the copula's shape matrix is the scores' correlation matrix computed about 0 (the scores' exact mean)
    assert r.value == pytest.approx(ref, abs=2e-3)
    assert zx.shape == x.shape and zy.shape == y.shape


@pytest.mark.parametrize("params, argument", [
    ({"family": "clayton"}, "family"), ({"dofs": []}, "dofs"), ({"dofs": [0]}, "dofs"),
    ({"dofs": [math.inf]}, "dofs"), ({"iterations": 0}, "iterations")])  # fmt: skip
def test_bad_copula_settings_are_refused_by_name(params, argument):
    x, y = tasks.gaussian_pair(100, 0.5, 1, 1, seed=0)
    with pytest.raises(ValueError, match=argument):
        CopulaMI(**params).estimate(x, y)


AUTO_TASKS = ["normal-dense-25x25", "normal-high-mi-2x2", "independent-10x10", "student-2x2-dof1",
              "asinh-student-5x5-dof2", "half-cube-5x5", "swiss-roll-2x1", "additive-noise-1x1-eps0.1"]  # fmt: skip


@pytest.mark.parametrize("name", AUTO_TASKS)
def test_auto_is_within_the_benchmark_tolerance_on_tasks_of_every_kind(name):
    x, y, truth = tasks.suite_task(name, 5000, seed=7)
    r = AutoMI(seed=7).estimate(x, y)
    assert abs(r.value - truth) <= max(0.1, 0.1 * truth), (name, truth, r.diagnostics["candidates"])
    cands = r.diagnostics["candidates"]
    assert r.value == max(cands.values()) == cands[r.diagnostics["chosen"]]
    assert r.diagnostics["reason"].startswith(("the Gaussian MI", "the Gaussian copula", "the t copula", "KSG"))
    assert f"{r.value:.3f} nats, the largest" in r.diagnostics["reason"]


def test_auto_leaves_the_raw_gaussian_out_on_heavy_tails_and_ksg_out_in_high_dimension():
    x, y, truth = tasks.suite_task("student-2x2-dof1", 5000, seed=8)
    r = AutoMI().estimate(x, y)
    assert "gaussian" not in r.diagnostics["candidates"] and "not normal" in r.diagnostics["reason"]
    assert GaussianMI().estimate(x, y).value > truth + 0.3  # what it would have returned: the covariance overstates
    x, y, _ = tasks.suite_task("normal-dense-5x5", 2000, seed=8)
    assert "ksg" in AutoMI().estimate(x, y).diagnostics["candidates"]
    assert "ksg" not in AutoMI(ksg_max_dim=9).estimate(x, y).diagnostics["candidates"]


def test_auto_is_registered_and_refuses_bad_settings_by_name():
    assert "auto" in est.available("mi") and "copula" in est.available("mi")
    x, y = tasks.gaussian_pair(100, 0.5, 1, 1, seed=0)
    for params, argument in (({"k": 0}, "k"), ({"ksg_max_dim": -1}, "ksg_max_dim")):
        with pytest.raises(ValueError, match=argument):
            AutoMI(**params).estimate(x, y)
