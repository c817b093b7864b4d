"""Equal-mass (adaptive) binning: quantile edges per coordinate, ties kept together, invariant under increasing maps."""
import math

import numpy as np
import pytest
import torch

from ibcore.estimators import BinnedEntropy, Binning
from ibcore.estimators.binning import mass_bin_codes


def test_every_bin_holds_the_same_share_and_ties_share_a_bin():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 2, generator=g, dtype=torch.float64)
    codes = mass_bin_codes(x, 30)
    for j in range(2):
        assert torch.bincount(codes[:, j]).tolist() == [20] * 30
    t = torch.tensor([[0.1], [0.5], [0.5], [0.5], [2.0], [3.0], [4.0], [5.0]])
    assert mass_bin_codes(t, 4).flatten().tolist() == [0, 0, 0, 0, 2, 2, 3, 3]


def test_increasing_maps_do_not_change_the_bins():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64)
    mapped = torch.stack([torch.exp(x[:, 0]), x[:, 1] ** 3, torch.tanh(5 * x[:, 2])], dim=1)
    assert torch.equal(mass_bin_codes(x, 16), mass_bin_codes(mapped, 16))
    ids = np.arange(500)
    a = Binning(n_bins=16, spacing="mass").estimate(ids, x).value
    b = Binning(n_bins=16, spacing="mass").estimate(ids, mapped).value
    assert a == b


def test_entropy_of_equal_mass_bins_is_ln_n_bins_per_coordinate():
    x = np.random.default_rng(2).normal(size=(1000, 1))
    assert BinnedEntropy(n_bins=10, spacing="mass").estimate(x).value == pytest.approx(math.log(10), abs=1e-12)
    # equal-width bins of the same Gaussian are far from uniform
    assert BinnedEntropy(n_bins=10).estimate(x).value < math.log(10) - 0.2


@pytest.mark.parametrize("kwargs", [{"bin_width": 0.1}, {"bounds": (-1, 1)}, {"rounding": "nearest"}])
def test_mass_spacing_takes_n_bins_only(kwargs):
    with pytest.raises(ValueError, match="spacing='mass'"):
        Binning(spacing="mass", **kwargs).estimate(np.arange(10), np.linspace(-0.9, 0.9, 10)[:, None])
    with pytest.raises(ValueError, match="spacing must be one of"):
        Binning(spacing="quantile").estimate(np.arange(10), np.linspace(-0.9, 0.9, 10)[:, None])
