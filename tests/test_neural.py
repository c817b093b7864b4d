"""Critic-based estimators (MINE, NWJ, InfoNCE, SMILE): the bounds, their known behaviour, diagnostics and errors."""

import math

import numpy as np
import pytest
import torch

import ibcore.estimators as est
from ibcore.estimators.neural import bound_values
from ibcore.tasks import correlated_gaussian

CRITICS = ["mine", "nwj", "infonce", "smile"]
FAST = {"hidden": (64,), "embed": 16, "epochs": 60, "batch_size": 128, "lr": 2e-3, "patience": 15}


def test_off_diagonal_scores_are_those_of_the_mask_in_its_order():
    # the view that replaced masked_select(~eye) (a host sync on CUDA): the same values in the same order
    from ibcore.estimators.neural import _off_diagonal

    for b in (1, 2, 3, 7):
        s = torch.randn(b, b, dtype=torch.float64)
        assert torch.equal(_off_diagonal(s), s.masked_select(~torch.eye(b, dtype=torch.bool)))


def test_bounds_match_their_formulas_on_a_score_matrix():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 5))
    d, off = np.diag(s), s[~np.eye(5, dtype=bool)]
    lme = lambda v: np.log(np.mean(np.exp(v)))  # noqa: E731
    expected = {
        "dv": d.mean() - lme(off),
        "nwj": d.mean() - np.mean(np.exp(off - 1)),
        "infonce": np.mean(d - np.log(np.exp(s).sum(1))) + np.log(5),
        "smile": d.mean() - lme(np.clip(off, -0.5, 0.5)),
    }
    for bound, value in expected.items():
        assert float(bound_values(torch.from_numpy(s), bound, tau=0.5)) == pytest.approx(value, abs=1e-12)
    with pytest.raises(ValueError, match="bound must be one of"):
        bound_values(torch.from_numpy(s), "js")


@pytest.mark.parametrize("name", CRITICS)
def test_critic_estimators_recover_one_nat_and_zero(name, device):
    # Correlated Gaussian, 2 + 2 dims: every bound is within 0.25 nats of I = 1 at N = 2000 and near 0 for
    # independent data (the anchors of estimators.md have errors of 0.02-0.03 at I = 2 with N = 10,000).
    x, y = correlated_gaussian(2000, mi=1.0, dim=2, seed=1)
    r = est.make(name, **FAST, device=device).estimate(x, y)
    assert abs(r.value - 1.0) < 0.25, r
    x0, y0 = correlated_gaussian(2000, mi=0.0, dim=2, seed=2)
    r0 = est.make(name, **FAST, device=device).estimate(x0, y0)
    assert abs(r0.value) < 0.1, r0


def test_critic_is_built_on_the_device(device, on_device):
    from ibcore.estimators.neural import Critic

    for kind in ("separable", "joint"):
        critic = Critic(3, 2, kind=kind, hidden=(8,), embed=4, device=device)
        on_device(critic)
        scores = critic(torch.randn(5, 3).to(device), torch.randn(5, 2).to(device))
        assert scores.shape == (5, 5)
        on_device(scores, bound_values(scores, "smile"))
        # the initialisation is drawn on the CPU: the same critic on every device
        cpu = Critic(3, 2, kind=kind, hidden=(8,), embed=4)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(critic.state_dict().values(), cpu.state_dict().values()))


@pytest.mark.parametrize("name", CRITICS)
def test_critic_training_does_not_sync_with_the_host_inside_an_epoch(name, device, host_syncs):
    # Twice the training steps per epoch (batch 32 instead of 64), the same host syncs: what remains is per epoch
    # (the held-out bound read back for early stopping and the curve, fit's two) or once per estimate.
    host_syncs.require()
    x, y = correlated_gaussian(400, mi=1.0, dim=2, seed=1)
    counts = [host_syncs(lambda b=b: est.make(name, hidden=(16,), embed=8, epochs=2, batch_size=b, patience=0,
                                              device=device).estimate(x, y)) for b in (64, 32)]  # fmt: skip
    assert counts[1] == counts[0], counts


def test_infonce_never_exceeds_ln_batch(device):
    x, y = correlated_gaussian(2000, mi=8.0, dim=2, seed=3)
    r = est.make("infonce", **(FAST | {"batch_size": 16}), device=device).estimate(x, y)
    assert r.value <= math.log(16) + 1e-6
    assert r.diagnostics["bound"] == pytest.approx(math.log(16))


def test_a_batch_larger_than_the_held_out_part_still_gives_a_standard_error(device):
    # 400 held-out rows, batch 256: evaluated in two minibatches of 200, and InfoNCE's ceiling is ln 200
    x, y = correlated_gaussian(2000, mi=1.0, dim=2, seed=5)
    for name in ("mine", "infonce"):
        r = est.make(name, **(FAST | {"batch_size": 256, "epochs": 3}), device=device).estimate(x, y)
        assert r.std is not None and r.std > 0, r
    assert r.diagnostics["bound"] == pytest.approx(math.log(200))


def test_diagnostics_report_the_curve_and_the_last_value_not_the_best(device):
    x, y = correlated_gaussian(1000, mi=1.0, dim=2, seed=4)
    r = est.make("mine", **(FAST | {"epochs": 12, "patience": 0}), device=device).estimate(x, y)
    assert r.params["device"] == device
    d = r.diagnostics
    assert d["epochs_run"] == 12 and not d["stopped_early"] and len(d["curve"]) == 12
    assert r.value == d["curve"][-1] and d["best"] == max(d["curve"])
    assert d["n_train"] + d["n_held_out"] == 1000 and d["n_held_out"] == 200
    assert len(d["train_loss"]) == 12
    stopped = est.make("mine", **(FAST | {"epochs": 400, "patience": 3}), device=device).estimate(x, y).diagnostics
    assert stopped["stopped_early"] and stopped["epochs_run"] < 400


def test_joint_critic(device):
    x, y = correlated_gaussian(1500, mi=1.0, dim=1, seed=5)
    r = est.make("nwj", **(FAST | {"critic": "joint"}), device=device).estimate(x, y)
    assert abs(r.value - 1.0) < 0.3, r


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("mine", {"critic": "bilinear"}, "critic must be one of"),
        ("mine", {"held_out": 1.5}, "held_out must be a fraction"),
        ("nwj", {"lr": 0.0}, "lr must be a positive finite number"),
        ("infonce", {"patience": -1}, "patience must be an integer >= 0"),
        ("mine", {"ema": 0.0}, "ema must be a rate"),
        ("smile", {"tau": 0}, "tau must be > 0"),
        ("smile", {"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_hyperparameters_raise(name, params, message):
    x, y = correlated_gaussian(100, mi=1.0, dim=1, seed=0)
    with pytest.raises(ValueError, match=message):
        est.make(name, **(FAST | {"epochs": 2} | params)).estimate(x, y)


def test_on_a_few_independent_points_the_training_rows_show_mi_the_held_out_rows_do_not():
    # Butakov et al. (2024), Appendix C: trained on a handful of points, MINE "hallucinates" MI. Independent pairs
    # (I = 0, closed form): the bound on the rows trained on is above the held-out bound the estimator reports.
    rng = np.random.default_rng(0)
    for seed in range(3):
        x, y = rng.standard_normal((20, 1)), rng.standard_normal((20, 1))
        r = est.make("mine", epochs=200, patience=0, seed=seed).estimate(x, y)
        assert r.diagnostics["training_value"] > r.value, (seed, r.diagnostics["training_value"], r.value)
    # with plenty of data the two agree (within 0.15 nats on 2,000 rows of a 1-nat Gaussian)
    x, y = correlated_gaussian(2000, mi=1.0, dim=1, seed=0)
    r = est.make("mine", **FAST).estimate(x, y)
    assert abs(r.diagnostics["training_value"] - r.value) < 0.15, (r.diagnostics["training_value"], r.value)


@pytest.mark.parametrize("name", ["mine", "nwj"])
def test_images_are_standardised_as_images_so_near_constant_pixels_stay_finite(name):
    # rectangles leave many border pixels 0 on almost every training image: standardised per column, a held-out image
    # with such a pixel lit sends the critic's exp(T) to overflow (MINE read -4.6e7 nats here, NWJ diverged)
    from ibcore.tasks import sample_task

    x, y, _ = sample_task("rectangles", 1000, 0.0, size=16, seed=0)
    assert est.capabilities(name)["images"]
    r = est.make(name, epochs=20, batch_size=128, patience=20, seed=0).estimate(x, y)
    assert -2.0 < r.value < 0.5, r.value  # independent images: a bound near 0 (slightly below: the critic overfits)


def test_the_training_row_value_exists_when_the_training_part_is_smaller_than_a_held_out_batch():
    x, y = correlated_gaussian(20, mi=0.5, dim=1, seed=0)
    r = est.make("nwj", epochs=3, held_out=0.9, seed=0).estimate(x, y)  # 2 training rows, held-out batches of 9
    assert r.diagnostics["n_train"] == 2 and math.isfinite(r.diagnostics["training_value"])
