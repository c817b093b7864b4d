"""Smoothing and phases of long per-epoch information-plane records (Butakov et al. 2024), and information planes
measured with a pair of estimators."""

import math

import numpy as np
import pytest
import torch

from ibcore.infoplane import InformationPlane, aggregate, phases, smooth


def test_smooth_removes_noise_without_moving_a_smooth_curve():
    t = np.linspace(0, 3, 300)
    clean = np.sin(t)
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(300)
    out = smooth(noisy)  # the paper's settings for 300 epochs
    assert np.sqrt(np.mean((out - clean) ** 2)) < 0.05  # at most half the noise's standard deviation 0.1
    assert np.abs(smooth(clean) - clean).max() < 0.01  # the ends are not bent (the paper's 5-point padding: 0.08)
    short = smooth(noisy[:20], window=5, polyorder=2, cutoff=None)
    assert short.shape == (20,)
    assert np.array_equal(smooth([1.0, 2.0]), [1.0, 2.0])


@pytest.mark.parametrize("kwargs, message", [
    ({"values": [[1.0, 2.0]]}, "values must be a 1-D sequence of finite numbers"),
    ({"values": [1.0, math.nan, 2.0]}, "values must be a 1-D sequence of finite numbers"),
    ({"values": [1.0, 2.0, 3.0], "window": 0}, "window must be an integer >= 1, got 0"),
    ({"values": [1.0, 2.0, 3.0], "cutoff": 1.5}, r"cutoff must be in \(0, 1\)"),
])  # fmt: skip
def test_smooth_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        smooth(**kwargs)


def test_phases_split_rises_and_falls_and_merge_small_falls():
    ep = np.arange(7)
    v = [0.0, 1.0, 2.0, 1.0, 0.98, 1.5, 1.4]
    got = phases(ep, v)
    assert [(p["phase"], p["start"], p["end"]) for p in got] == [
        ("fitting", 0, 2), ("compression", 2, 4), ("fitting", 4, 5), ("compression", 5, 6)]
    assert got[1]["change"] == pytest.approx(-1.02)
    merged = phases(ep, v, min_drop=0.2)  # the last fall (0.1) is too small to turn the zigzag
    assert [(p["phase"], p["start"], p["end"]) for p in merged] == [("fitting", 0, 2), ("compression", 2, 4),
                                                                   ("fitting", 4, 6)]
    # a small rise inside a compression does not end it either
    small_rise = phases(np.arange(6), [0.0, 2.0, 1.9, 1.95, 1.0, 0.5], min_drop=0.2)
    assert [(p["phase"], p["start"], p["end"]) for p in small_rise] == [("fitting", 0, 1), ("compression", 1, 5)]
    with pytest.raises(ValueError, match="equal length >= 2"):
        phases([0, 1], [1.0])
    with pytest.raises(ValueError, match="min_drop must be a finite number >= 0, got -1"):
        phases([0, 1], [1.0, 2.0], min_drop=-1)


def test_information_plane_takes_a_pair_of_estimators(device):
    from ibcore.estimators import PCA, LossyMI
    from ibcore.nets import MLP

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g).to(device)  # the network, the compression and the estimators follow it
    y = (x[:, 0] > 0).long()
    # one principal component per layer: the 2-unit softmax output sums to 1 and cannot be whitened whole
    pair = (LossyMI("entropy-mi", x_compressor=PCA(1)), LossyMI("class-mi", x_compressor=PCA(1)))
    plane = InformationPlane(x, y, {"lossy": pair}, epochs=[0], x_ids=x[:, :2])
    net = MLP((5, 6, 4, 2), seeds=[3], activation="tanh", device=device)
    plane.on_epoch_end(type("S", (), {"epoch": 0, "model": net})())
    assert [r["layer"] for r in plane.records] == [1, 2, 3]
    for r in plane.records:
        assert r["model"] == 3 and -0.2 < r["i_ty"] <= math.log(2) + 0.1 and r["i_xt"] > 0
    with pytest.raises(ValueError, match=r"estimators\['bad'\] must be an MI estimator or a pair"):
        InformationPlane(x, y, {"bad": (pair[0], pair[1], pair[0])})


def test_information_plane_refuses_a_labels_estimator_for_input_ids():
    from ibcore.estimators import ClassMI

    x = torch.randn(40, 3)
    with pytest.raises(ValueError, match="takes class labels as y, but I\\(X;T\\) gives it input ids"):
        InformationPlane(x, (x[:, 0] > 0).long(), {"c": ClassMI()})


def test_records_written_before_the_schema_still_aggregate(tmp_path):
    from ibcore.infoplane import load_records, save_records

    old = [{"epoch": e, "model": m, "layer": 1, "estimator": "b", "i_xt": 1.0 + e, "i_ty": 0.5} for e in (0, 1)
           for m in (0, 1)]
    save_records(old, tmp_path / "old.json")
    agg = aggregate(load_records(tmp_path / "old.json"), "i_xt", by=("epoch",))
    assert agg[(1,)]["mean"] == 2.0


def test_train_and_track_is_the_recipe_of_the_chapters(tmp_path):
    from ibcore.estimators import Binning
    from ibcore.infoplane import load_records, mean_of, train_and_track
    from ibcore.nets import MLP
    from ibcore.training import Metrics, fit

    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 4, generator=g)
    y = (x[:, 0] > 0.5).long()
    splits = {"train": (x[:48], y[:48]), "test": (x[48:], y[48:])}
    ests = {"bins": Binning(n_bins=10)}
    run = train_and_track(MLP((4, 5, 2), seeds=[0, 1]), (x[:48], y[:48]), ests, measure_on=(x, y), at=[0, 3],
                          splits=splits, epochs=3, batch_size=16, lr=1e-2, seed=2, save_to=tmp_path, name="demo")
    # the same by hand
    plane = InformationPlane(x, y, ests, epochs=[0, 3])
    metrics = Metrics(splits, epochs=[0, 3])
    fit(MLP((4, 5, 2), seeds=[0, 1]), (x[:48], y[:48]), epochs=3, batch_size=16, lr=1e-2, seed=2,
        callbacks=[metrics, plane])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "estimates"} for r in rs]  # noqa: E731 (seconds differ)
    assert strip(run["plane"]) == strip(plane.records) and run["metrics"] == metrics.records
    assert strip(load_records(tmp_path / "demo_plane.json")) == strip(run["plane"])
    assert load_records(tmp_path / "demo_metrics.json") == run["metrics"]
    acc = [r["accuracy"] for r in metrics.records if r["epoch"] == 3 and r["split"] == "test"]
    assert mean_of(run["metrics"], "accuracy", epoch=3, split="test") == pytest.approx(sum(acc) / len(acc))
    with pytest.raises(ValueError, match="no records with"):
        mean_of(run["metrics"], "accuracy", epoch=99)
