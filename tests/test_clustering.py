"""The clustering measure plotted beside I(X;T) for noisy networks."""

import numpy as np
import pytest

from ibcore.clustering import class_separation


def test_within_plus_between_is_the_total_spread():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(500, 3))
    y = rng.integers(0, 4, 500)
    r = class_separation(t, y)
    total = ((t - t.mean(0)) ** 2).sum(1).mean()
    assert r["total"] == pytest.approx(total, rel=1e-12)
    assert r["n_classes"] == 4


def test_separation_grows_as_classes_collapse():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 200)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0]])
    ratios = [class_separation(centres[y] + s * rng.normal(size=(400, 2)), y)["separation"] for s in (1.0, 0.3, 0.01)]
    assert ratios[0] < ratios[1] < ratios[2]
    assert class_separation(centres[y], y)["separation"] == float("inf")


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="labels must be one integer class per row"):
        class_separation(np.zeros((4, 2)), np.array([0.5, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"same number of samples, got \[4, 3\]"):
        class_separation(np.zeros((4, 2)), np.array([0, 1, 0]))
