"""Confidence intervals and the shuffle baseline of every estimator (issue 21, item 2): an interval from each,
coverage on closed-form tasks, the permutation p-value, bad arguments refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ibcore.estimators as est
from ibcore.estimators import Estimate, MIEstimate
from ibcore.tasks import correlated_gaussian
from test_contract import DEVICE_PARAMS, ENTROPY, MI, _data

METHODS = {"standard error", "subsampling", "exact"}


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_every_estimator_returns_an_interval(name):
    x, y = _data(name=name)
    e = est.make(name, **DEVICE_PARAMS.get(name, {}))
    r = e.estimate(x, y, ci=0.95, resamples=4) if name in MI else e.estimate(x, ci=0.95, resamples=4)
    lo, hi = r.ci
    assert r.ci_level == 0.95 and r.ci_method in METHODS
    assert math.isfinite(lo) and math.isfinite(hi) and lo <= r.value <= hi
    if r.std is not None:  # the method's own standard error: value +- 1.96 std
        assert r.ci_method == "standard error" and hi - r.value == pytest.approx(1.959964 * r.std, rel=1e-5)
    else:
        assert r.ci_method == "subsampling" and len(r.diagnostics["subsample_values"]) == 4
    back = type(r).from_dict(r.to_dict())
    assert back.ci == pytest.approx(r.ci) and back.ci_method == r.ci_method


def test_exact_population_interval_is_the_point():
    codes = np.arange(8)[:, None] % 4
    r = est.make("exact").estimate(codes, np.arange(8) % 2, p=np.full(8, 1 / 8), ci=0.9)
    assert r.ci == (r.value, r.value) and r.ci_method == "exact"


@pytest.mark.parametrize("name, n, reps, band", [
    ("gaussian", 1000, 200, (0.83, 0.97)),  # 90% nominal; 200 repetitions: +-3 binomial sd (0.021)
    ("ksg", 600, 60, (0.72, 1.0)),  # 90% nominal; 60 repetitions: +-3 sd (0.039), and KSG's small bias at d = 1
])
def test_coverage_on_a_closed_form_task(name, n, reps, band):
    # 1-D correlated Gaussian pair with I = 0.5 nats (closed form: -ln(1 - rho^2) / 2); a 90% interval must contain
    # the truth in about 90% of independent repetitions.
    hits = 0
    for rep in range(reps):
        x, y = correlated_gaussian(n, mi=0.5, dim=1, seed=1000 + rep)
        r = est.make(name).estimate(x, y, ci=0.9, resamples=20, resample_seed=rep)
        hits += r.ci[0] <= 0.5 <= r.ci[1]
    assert band[0] <= hits / reps <= band[1], hits / reps


def test_shuffle_baseline_tells_dependence_from_none():
    x, y = correlated_gaussian(500, mi=0.3, dim=1, seed=0)
    dep = est.make("ksg").estimate(x, y, shuffles=19)
    assert dep.diagnostics["shuffle_p"] == pytest.approx(1 / 20) and not dep.warnings
    assert max(dep.diagnostics["shuffle_values"]) < dep.value
    g = np.random.default_rng(3)
    ind = est.make("ksg").estimate(g.standard_normal((500, 1)), g.standard_normal((500, 1)), shuffles=19, resample_seed=2)
    assert ind.diagnostics["shuffle_p"] > 0.05
    assert any(w.startswith("not distinguishable from independence") for w in ind.warnings)


@pytest.mark.parametrize("kw, match", [({"ci": 1.5}, "ci must be"), ({"ci": True}, "ci must be"),
                                       ({"ci": 0.9, "resamples": 1}, "resamples"), ({"shuffles": -1}, "shuffles"),
                                       ({"shuffles": 5}, "cannot reach p")])  # fmt: skip
def test_bad_arguments_raise(kw, match):
    x, y = correlated_gaussian(100, mi=0.3, dim=1, seed=0)
    with pytest.raises(ValueError, match=match):
        est.make("ksg").estimate(x, y, **kw)


def test_records_without_an_interval_read_back():
    old = {"value": 1.0, "n_samples": 10, "estimator": "ksg"}
    r = MIEstimate.from_dict(old)
    assert r.ci is None and r.ci_method is None and isinstance(r, Estimate)


def test_probe_and_plane_tables_carry_intervals_and_figures_draw_them():
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from ibcore import plotting
    from ibcore.estimators import Binning
    from ibcore.nets import MLP
    from ibcore.probe import Probe

    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g)
    y = (x[:, 0] > 0.5).long()
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    probe = Probe(x, y, {"b": Binning(n_bins=10)}, layers=["1", "2"], ci=0.9, resamples=5, shuffles=19)
    probe(net, 0)
    probe(net, 3)
    for r in probe.records:
        assert r["i_ty_ci"][0] <= r["i_ty"] <= r["i_ty_ci"][1]
        assert r["i_xt_shuffle_p"] == 1.0  # binning against ids: H(T) whatever the pairing (the module's text)
    fig = plotting.layer_curves(probe.records, estimator="b", value="i_ty")
    assert len(fig.axes[0].lines) == 2 * 3  # per layer: the mean and the two interval ends
    from ibcore.infoplane import InformationPlane

    plane = InformationPlane(x, y, {"b": Binning(n_bins=10)}, epochs=[0], ci=0.9, resamples=5)
    plane.on_epoch_end(type("S", (), {"epoch": 0, "model": MLP((3, 4, 2), seeds=[7, 8])})())
    assert len(plane.records) == 4 and all(len(r["i_xt_ci"]) == 2 for r in plane.records)
