"""The pairwise-distance (KDE) bounds against closed forms and a numerical integral of Gaussian mixtures."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from ibcore.estimators import KDEBound, SamplePropagation


def _mixture_mi_1d(centres, s):
    """I(X;T) of T = c_X + N(0, s^2), X uniform over the centres: H(T) by quadrature minus the Gaussian's entropy."""
    c = np.asarray(centres, float)

    def integrand(t):
        p = norm.pdf(t, c, s).mean()
        return -p * math.log(p) if p > 0 else 0.0

    lo, hi = c.min() - 12 * s, c.max() + 12 * s
    h_t, _ = integrate.quad(integrand, lo, hi, points=list(c), limit=500, epsabs=1e-12)
    return h_t - 0.5 * math.log(2 * math.pi * math.e * s * s)


@pytest.mark.parametrize("centres, s", [([0.0, 1.0], 1.0), ([0.0, 0.3, 2.0, 2.1], 0.5), ([-1.0, 0.0, 0.5, 3.0], 0.2),
                                        (np.linspace(0, 1, 12).tolist(), 0.05)])
def test_the_bounds_bracket_the_mixture_information(centres, s):
    ids = list(range(len(centres)))
    x = torch.tensor(centres, dtype=torch.float64)[:, None]
    truth = _mixture_mi_1d(centres, s)
    upper = KDEBound(noise_variance=s * s).estimate(x, ids).value
    lower = KDEBound(noise_variance=s * s, distance="bhattacharyya").estimate(x, ids).value
    assert lower <= truth + 1e-9 and truth <= upper + 1e-9, (lower, truth, upper)
    assert upper <= math.log(len(centres)) + 1e-12


def test_closed_forms_at_the_extremes():
    n = 16
    far = torch.arange(n, dtype=torch.float64)[:, None] * 100.0
    for distance in ("kl", "bhattacharyya"):
        r = KDEBound(noise_variance=1.0, distance=distance).estimate(far, range(n))
        assert r.value == pytest.approx(math.log(n), abs=1e-12)  # distinct centres: ln N
        same = KDEBound(noise_variance=1.0, distance=distance).estimate(torch.zeros(n, 3), range(n))
        assert same.value == pytest.approx(0.0, abs=1e-12)  # one centre: nothing about X
    # two well-separated Gaussians: the upper bound is exact in the limit, H(T) = H(N) + ln 2
    r = KDEBound(noise_variance=1.0).estimate(torch.tensor([[0.0], [50.0]]), [0, 1])
    assert r.diagnostics["h_t"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e) + math.log(2), abs=1e-12)


def test_upper_bound_is_above_sample_propagation_in_several_dimensions():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(64, 3, generator=g, dtype=torch.float64)
    ids = torch.arange(64)
    sp = SamplePropagation(noise_std=0.5, n_mc=40000, seed=1).estimate(c, ids)
    upper = KDEBound(noise_variance=0.25).estimate(c, ids).value
    lower = KDEBound(noise_variance=0.25, distance="bhattacharyya").estimate(c, ids).value
    assert lower - 4 * sp.std <= sp.value <= upper + 4 * sp.std, (lower, sp.value, sp.std, upper)


def test_labels_give_the_difference_of_the_group_bounds_and_at_most_h_y():
    g = torch.Generator().manual_seed(1)
    c = torch.randn(200, 2, generator=g, dtype=torch.float64)
    labels = (c[:, 0] > 0).long()  # the layer separates the classes along its first coordinate
    r = KDEBound(noise_variance=0.01).estimate(c, labels)
    share = torch.bincount(labels).double() / 200
    h_y = float(-(share * share.log()).sum())
    assert r.diagnostics["bound"] == pytest.approx(h_y) and 0.5 * h_y < r.value <= h_y + 1e-12
    # the same value from the definitions: H(T) - sum_y p(y) H(T | Y = y), each term the mixture bound
    h_t = r.diagnostics["h_t"]
    parts = [KDEBound(noise_variance=0.01).estimate(c[labels == k], torch.zeros(int((labels == k).sum())))
             for k in (0, 1)]
    # a single group: value 0 and h_t the group's mixture bound
    h_groups = sum(float(share[k]) * p.diagnostics["h_t"] for k, p in enumerate(parts))
    assert r.value == pytest.approx(h_t - h_groups, abs=1e-10)
    assert all(p.value == pytest.approx(0.0, abs=1e-12) for p in parts)
    # labels unrelated to the layer, with noise wide enough for the centres to overlap: near zero. (With noise far
    # below the centres' spacing every centre is its own input and Y a function of it: the mixture then carries
    # H(Y) about any labels, which is what it is asked.)
    shuffled = labels[torch.randperm(200, generator=g)]
    assert abs(KDEBound(noise_variance=1.0).estimate(c, shuffled).value) < 0.05
    assert KDEBound(noise_variance=1e-10).estimate(c, shuffled).value == pytest.approx(h_y, abs=1e-6)


@pytest.mark.parametrize("kwargs, name", [({"noise_variance": 0.0}, "noise_variance"),
                                          ({"noise_variance": float("nan")}, "noise_variance"),
                                          ({"distance": "euclid"}, "distance")])
def test_bad_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        KDEBound(**kwargs).estimate(torch.zeros(4, 1), [0, 1, 2, 3])


def test_it_measures_every_layer_in_the_information_plane():
    # the KDE lens of Saxe et al. on the SZT network: I(X;T) <= ln 4096 and I(T;Y) <= H(Y) at every layer, and the
    # first tanh layer of an untrained network keeps the inputs apart (near ln 4096) at Saxe et al.'s noise 1e-3
    from ibcore.data import szt_dataset
    from ibcore.infoplane import InformationPlane
    from ibcore.nets import MLP, SZT_WIDTHS
    from ibcore.training import fit

    data = szt_dataset()
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0])
    plane = InformationPlane(data.x, data.y, {"kde": KDEBound(noise_variance=1e-3)}, epochs=[0])
    fit(net, (data.x[:256], data.y[:256]), epochs=0, batch_size=256, lr=1e-3, callbacks=[plane])
    share = float(data.y.double().mean())
    h_y = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert len(plane.records) == len(SZT_WIDTHS) - 1
    for r in plane.records:
        assert r["i_xt"] <= math.log(4096) + 1e-9 and r["i_ty"] <= h_y + 1e-9, r
    assert plane.records[0]["i_xt"] > math.log(4096) - 0.5


def test_huge_centres_are_far_apart_not_nan():
    c = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    for scale in (1e200, 1e308 / 3):
        r = KDEBound().estimate(c * scale, [0, 1, 2])
        assert r.value == pytest.approx(math.log(3), abs=1e-12)


@pytest.mark.parametrize("distance", ["kl", "bhattacharyya"])
def test_one_pass_for_several_groupings_gives_the_separate_estimates(distance):
    # estimate_batch(layer, [ids, labels, many groups]) shares the kernels; the numbers must be the separate ones
    g = torch.Generator().manual_seed(3)
    t = torch.tanh(2 * torch.randn(700, 3, generator=g))
    ids, labels, many = torch.arange(700), torch.randint(0, 2, (700,), generator=g), torch.randint(0, 90, (700,),
                                                                                                   generator=g)
    k = KDEBound(noise_variance=0.01, distance=distance)
    shared = k.estimate_batch(t, [ids, labels, many])
    for r, y in zip(shared, (ids, labels, many)):
        alone = k.estimate(t, y)
        assert r.value == pytest.approx(alone.value, rel=1e-12, abs=1e-12)
        assert r.diagnostics["n_inputs"] == alone.diagnostics["n_inputs"]
    with pytest.raises(ValueError, match=r"y\[1\]"):
        k.estimate_batch(t, [ids, labels[:5]])


def test_the_information_plane_takes_both_sides_from_one_pass():
    # one KDEBound for both sides (the shared pass) against two separate objects (one estimate per side)
    from ibcore.infoplane import InformationPlane
    from ibcore.nets import MLP

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = (x[:, 0] > 0).long()
    net = MLP((4, 5, 3, 2), "tanh", seeds=[0, 1])
    state = type("S", (), {"epoch": 0, "model": net})()
    one, two = KDEBound(noise_variance=0.01), (KDEBound(noise_variance=0.01), KDEBound(noise_variance=0.01))
    planes = [InformationPlane(x, y, {"kde": est}, epochs=[0]) for est in (one, two)]
    for plane in planes:
        plane.on_epoch_end(state)
    assert len(planes[0].records) == 2 * 3
    for a, b in zip(*(p.records for p in planes)):
        assert (a["model"], a["layer"]) == (b["model"], b["layer"])
        assert a["i_xt"] == pytest.approx(b["i_xt"], rel=1e-12) and a["i_ty"] == pytest.approx(b["i_ty"], rel=1e-12)
