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


def test_mixture_density_integrates_to_one_and_splits_by_group():
    import numpy as np

    fig = plotting.mixture_density([-0.9, -0.3, 0.3, 0.9], 0.1, groups=[0, 1, 2, 3], grid=4000)
    ax = fig.axes[0]
    t, total = ax.lines[0].get_data()
    assert np.trapezoid(total, t) == pytest.approx(1.0, abs=1e-3)
    assert len(ax.collections) == 4  # one filled share per input
    with pytest.raises(ValueError, match="groups must give one group per centre"):
        plotting.mixture_density([0.0, 1.0], 0.1, groups=[0])
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        plotting.mixture_density([0.0], 0.0)


def test_representations_scatter_one_series_per_class_and_checks_dims():
    import numpy as np

    t = np.arange(30.0).reshape(10, 3)
    fig = plotting.representations(t, [0, 1] * 5, dims=(1, 2))
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert ax.collections[0].get_offsets()[:, 0].tolist() == [1.0, 7.0, 13.0, 19.0, 25.0]
    with pytest.raises(ValueError, match="out of range"):
        plotting.representations(t, [0] * 10, dims=(0, 3))


def test_suite_heatmap_and_error_curves_draw_every_task_and_estimator():
    import math

    from ibcore.comparison import compare, run_suite

    rs = run_suite({"gaussian": ("gaussian", {}), "ksg": ("ksg", {})}, ["bimodal-1x1", "normal-dense-50x50"], n=400)
    fig = plotting.suite_heatmap(rs)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 2) and image.mask[1, 1]  # KSG does not take 50 dimensions: a grey cell
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["gaussian", "ksg"]
    rs = compare({"ksg": ("ksg", {})}, ["gaussian"], [0.0, 1.0, 2.0], n=400, ci=0.9, resamples=3)
    fig = plotting.error_curves(rs, x="true_mi", task="gaussian")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # zero line and one estimator; tolerance and its band
    assert math.isclose(ax.collections[0].get_paths()[0].vertices[:, 1].max(), 0.2)  # max(0.1, 0.1 * 2)
    with pytest.raises(ValueError, match="task"):
        plotting.error_curves(rs, x="n", task="uniform")


def test_gradient_phases_draws_geometric_means_and_keeps_early_marks_on_the_axis():
    import math

    recs = [{"epoch": e, "layer": 1, "network": n, "mean_norm": m * (n + 1), "std_norm": 0.5 * (n + 1),
             "weight_norm": 1.0, "snr": m / 0.5} for e, m in ((1, 4.0), (10, 2.0), (100, 0.1)) for n in range(2)]
    fig = plotting.gradient_phases(recs, layer=1, marks={"SNR < 1": 100, "peak": 0, "none": None})
    ax = fig.axes[0]
    mean_line, std_line = ax.lines[:2]
    # the geometric mean over the two networks of mean_norm / weight_norm: m * sqrt(1 * 2)
    assert list(mean_line.get_ydata()) == pytest.approx([4 * math.sqrt(2), 2 * math.sqrt(2), 0.1 * math.sqrt(2)])
    assert list(std_line.get_ydata()) == pytest.approx([0.5 * math.sqrt(2)] * 3)
    marks = [line.get_xdata()[0] for line in ax.lines[2:]]
    assert marks == [100, 1]  # epoch 0 drawn at the first recorded epoch; None not drawn
    assert ax.get_xlim() == (1, 100)
    with pytest.raises(ValueError, match="layer 2"):
        plotting.gradient_phases(recs, layer=2)


def test_lens_grid_draws_one_curve_per_setting_and_marks_the_verdicts():
    import math

    import numpy as np

    from ibcore.lenses import verdict_table

    def recs(lens, layer, values, models=3):
        return [{"estimator": lens, "layer": layer, "epoch": e, "model": m, "i_xt": v + 0.01 * m}
                for m in range(models) for e, v in zip((0, 10, 100), values)]  # fmt: skip

    runs = {"tanh": recs("a", 1, (1, 3, 1)) + recs("a", 2, (1, 2, 2)) + recs("b", 1, (1, 1, 1)),
            "relu": recs("a", 1, (1, 2, 3))}  # no lens "b" and no layer 2: empty panels
    table = verdict_table(runs, ["a", "b"])
    fig = plotting.lens_grid(runs, lenses=["a", "b"], layers=[1, 2], verdicts=table, unit="nats")
    axes = np.array(fig.axes[:4]).reshape(2, 2)
    assert len(axes[0, 0].lines) == 2 and len(axes[0, 1].lines) == 1 and len(axes[1, 0].lines) == 1
    assert not axes[1, 1].axison  # lens "b" never measured layer 2
    marks = sorted(t.get_text() for t in axes[0, 0].texts)
    assert marks == ["relu \u2014", "tanh \u2193"]
    peak = max(axes[0, 0].lines[0].get_ydata())
    assert math.isclose(peak, 3.01)  # mean over networks, in nats
    with pytest.raises(ValueError, match="lenses and layers must not be empty"):
        plotting.lens_grid(runs, lenses=[], layers=[1])


def test_epoch_axes_draw_the_initialisation_apart_from_epoch_one():
    import matplotlib.pyplot as plt
    import numpy as np

    # a log axis would have to put epoch 0 at 1, on top of epoch 1; the epoch axes are linear on [0, 1], log above
    plane = [{"estimator": "b", "model": m, "layer": 1, "epoch": e, "i_xt": 1.0 + e, "i_ty": 0.5}
             for m in (0, 1) for e in (0, 1, 10, 100)]
    metrics = [{"model": m, "split": "train", "epoch": e, "accuracy": 0.5} for m in (0, 1) for e in (0, 1, 10, 100)]
    axes = [plotting.layer_curves(plane, estimator="b").axes[0], plotting.training_curves(metrics).axes[0],
            plotting.lens_grid({"tanh": plane}, lenses=["b"], layers=[1]).axes[0]]
    for ax in axes:
        drawn = np.asarray(ax.lines[0].get_xdata(), dtype=float)  # the epochs as drawn
        xs = ax.transData.transform(np.column_stack([drawn, np.zeros_like(drawn)]))[:, 0]
        assert np.all(np.isfinite(xs)) and np.all(np.diff(xs) > 1), (drawn, xs)  # every epoch its own place, in order
        assert abs((xs[3] - xs[2]) - (xs[2] - xs[1])) < 1e-6  # a decade is a decade above epoch 1
    plt.close("all")
