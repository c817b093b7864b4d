"""Figures: the plotting functions draw what they say from tidy records."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from ibcore import plotting  # noqa: E402


def _records():
    return [
        {"epoch": e, "model": m, "layer": l, "estimator": "exact", "i_xt": 1.0 + l + 0.1 * m, "i_ty": 0.1 * l * (e + 1)}
        for e in (0, 1, 10, 100) for m in range(3) for l in (1, 2)
    ]  # fmt: skip


def test_information_plane_draws_spread_at_the_requested_number_of_epochs():
    fig = plotting.information_plane(_records(), estimator="exact", spread_epochs=3)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars) == 3
    assert len(ax.collections) >= 4  # one scatter per recorded epoch
    assert len(fig.axes) == 2  # the epoch colour bar
    fig = plotting.information_plane(_records(), estimator="exact", colorbar=False)
    assert len(fig.axes) == 1 and not fig.axes[0].containers


def test_plots_reject_unknown_estimators_and_units():
    with pytest.raises(ValueError, match="no records with estimator='bins'"):
        plotting.information_plane(_records(), estimator="bins")
    with pytest.raises(ValueError, match="unit must be one of"):
        plotting.layer_curves(_records(), estimator="exact", unit="bans")
