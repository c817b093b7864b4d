"""The compression rule of the capstone chapter (ibcore.lenses): each verdict on curves whose answer is known."""

import math

import numpy as np
import pytest

from ibcore.lenses import VERDICTS, fall_verdict, verdict_table

EPOCHS = [0, 10, 100, 1000]


def curves(shape, *, models=5, noise=0.0, seed=0, lens="b", layer=1, offset=None):
    """Records of ``models`` networks following ``shape`` (values per epoch) plus per-network noise."""
    rng = np.random.default_rng(seed)
    out = []
    for m in range(models):
        shift = 0.0 if offset is None else offset[m]
        for e, v in zip(EPOCHS, shape):
            out.append({"estimator": lens, "layer": layer, "epoch": e, "model": m,
                        "i_xt": v + shift + noise * rng.standard_normal()})
    return out


def test_a_clear_fall_compresses_and_reports_its_numbers():
    v = fall_verdict(curves([1.0, 3.0, 2.5, 2.0], noise=0.01), estimator="b", layer=1)
    assert v["verdict"] == "compresses"
    assert v["peak_epoch"] == 10 and v["n"] == 5
    assert v["fall"] == pytest.approx(1.0, abs=0.03)
    assert v["threshold"] == pytest.approx(0.05 * v["peak"])
    assert v["fall_se"] < 0.02


def test_a_flat_curve_does_not_compress():
    v = fall_verdict(curves([1.0, 3.0, 3.0, 3.0], noise=0.01), estimator="b", layer=1)
    assert v["verdict"] == "does not"
    assert v["fall"] < v["threshold"]


def test_a_rise_to_the_end_does_not_compress():
    v = fall_verdict(curves([1.0, 2.0, 3.0, 4.0]), estimator="b", layer=1)
    assert v["verdict"] == "does not" and v["peak_epoch"] == 1000 and v["fall"] == 0.0


def test_a_fall_within_the_spread_over_networks_cannot_be_told():
    # networks disagree: two fall by 2, three rise by 1; the mean fall (0.2) is inside two standard errors of tau
    rng_falls = [2.0, 2.0, -1.0, -1.0, -1.0]
    recs = []
    for m, f in enumerate(rng_falls):
        for e, v in zip(EPOCHS, [1.0, 3.0, 3.0 - f / 2, 3.0 - f]):
            recs.append({"estimator": "b", "layer": 1, "epoch": e, "model": m, "i_xt": v})
    v = fall_verdict(recs, estimator="b", layer=1)
    assert v["verdict"] == "cannot tell"
    assert v["falls"] == pytest.approx(rng_falls) and v["fall"] == pytest.approx(0.2)


def test_one_network_cannot_tell_and_the_fall_is_paired():
    assert fall_verdict(curves([1.0, 3.0, 2.0, 1.0], models=1), estimator="b", layer=1)["verdict"] == "cannot tell"
    # networks at very different levels that fall by the same amount: the paired fall has no spread
    v = fall_verdict(curves([1.0, 3.0, 2.0, 2.5], offset=[0.0, 5.0, -0.5, 2.0, 9.0]), estimator="b", layer=1)
    assert v["fall_se"] == pytest.approx(0.0, abs=1e-12) and v["verdict"] == "compresses"


def test_min_fall_is_relative_to_the_peak():
    recs = curves([1.0, 10.0, 10.0, 9.7], noise=0.001)  # a 3% fall, clear of its standard error
    assert fall_verdict(recs, estimator="b", layer=1)["verdict"] == "does not"
    assert fall_verdict(recs, estimator="b", layer=1, min_fall=0.01)["verdict"] == "compresses"


def test_only_epochs_shared_by_every_network_are_used():
    recs = curves([1.0, 3.0, 2.0, 2.0], models=3)
    recs.append({"estimator": "b", "layer": 1, "epoch": 5000, "model": 0, "i_xt": 0.0})  # one network only
    v = fall_verdict(recs, estimator="b", layer=1)
    assert v["final"] == pytest.approx(2.0) and v["verdict"] == "compresses"


@pytest.mark.parametrize("kwargs, match", [
    ({"n_se": 0}, "n_se must be > 0"), ({"n_se": math.nan}, "n_se must be a finite"),
    ({"min_fall": 1.0}, r"min_fall must be in \[0, 1\)"), ({"min_fall": -0.1}, "min_fall"),
    ({"estimator": "nope"}, "no records with estimator='nope'"), ({"layer": 9}, "layer=9"),
])  # fmt: skip
def test_bad_arguments_name_themselves(kwargs, match):
    args = {"estimator": "b", "layer": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        fall_verdict(curves([1.0, 2.0, 1.0, 1.0]), **args)


def test_a_missing_value_is_an_error_not_a_verdict():
    recs = curves([1.0, 2.0, 1.0, 1.0])
    recs[3]["i_xt"] = math.nan
    with pytest.raises(ValueError, match="i_xt=nan"):
        fall_verdict(recs, estimator="b", layer=1)


def test_verdict_table_covers_every_setting_lens_and_layer():
    runs = {
        "tanh": curves([1.0, 3.0, 2.0, 1.5], lens="bins") + curves([1.0, 3.0, 3.0, 3.0], lens="bins", layer=2)
        + curves([1.0, 3.0, 2.0, 1.0], lens="exact"),
        "relu": curves([1.0, 3.0, 3.0, 3.0], lens="bins"),  # no "exact" lens here: skipped
    }  # fmt: skip
    table = verdict_table(runs, ["bins", "exact"])
    assert [(r["setting"], r["lens"], r["layer"], r["verdict"]) for r in table] == [
        ("tanh", "bins", 1, "compresses"), ("tanh", "bins", 2, "does not"), ("tanh", "exact", 1, "compresses"),
        ("relu", "bins", 1, "does not")]  # fmt: skip
    assert {r["verdict"] for r in table} <= set(VERDICTS)
    assert [r["layer"] for r in verdict_table(runs, ["bins"], layers=[2])] == [2]
    with pytest.raises(ValueError, match=r"lenses \['kde'\] are in no setting"):
        verdict_table(runs, ["bins", "kde"])
    with pytest.raises(ValueError, match="at least one setting"):
        verdict_table({}, ["bins"])


def test_float_lenses_bin_tanh_on_its_range_and_other_activations_on_the_layers():
    from ibcore.lenses import float_lenses

    tanh, relu = float_lenses("tanh", n_bins=12), float_lenses("relu", n_bins=12, flow=True)
    assert list(tanh) == ["12 bins", "equal-mass bins", "KDE upper bound", "PCA + k-NN"]
    assert list(relu)[-1] == "flow" and relu["flow"].replicas == 1
    assert tanh["12 bins"].bounds == (-1, 1) and relu["12 bins"].bounds == "layer"
    assert tanh["PCA + k-NN"].replicas == 8 and tanh["KDE upper bound"].noise_variance == 1e-3
    with pytest.raises(ValueError, match="flow must be True or False, got 'yes'"):
        float_lenses("tanh", flow="yes")


def test_lens_keys_are_short_and_unknown_labels_are_named():
    from ibcore.lenses import lens_key

    assert [lens_key(l) for l in ("100 bins", "exact, 4-bit", "SP, noisy")] == ["bins", "exact", "sp"]
    with pytest.raises(ValueError, match="'my lens'"):
        lens_key("my lens")


def test_verdict_glue_and_html_say_what_the_table_says():
    from ibcore.lenses import verdict_glue, verdict_html

    runs = {"a": curves([1.0, 3.0, 2.0, 1.0], noise=0.01, lens="30 bins")
            + curves([1.0, 3.0, 3.0, 3.0], noise=0.01, lens="KDE upper bound"),
            "b": curves([1.0, 3.0, 3.0, 3.0], noise=0.01, lens="30 bins")}  # fmt: skip
    table = verdict_table(runs, ["30 bins", "KDE upper bound"])
    glued = verdict_glue(table, "x", keys={"a": "A"})
    assert glued["x_A_bins_T1"] == "compresses" and glued["x_A_kde_T1"] == "does not"
    assert glued["x_A_bins_T1_fall"] == pytest.approx(2.0 / math.log(2), abs=0.05)
    assert (glued["x_A_split"], glued["x_A_all_flat"], glued["x_A_all_falls"]) == ("T1", "none", "none")
    assert (glued["x_b_split"], glued["x_b_all_flat"]) == ("none", "T1")
    html = verdict_html(table, ["30 bins", "KDE upper bound"], [1, 2])
    assert html.count("<table") == 2 and "<b>a</b>" in html and "<b>b</b>" in html
    assert html.count("compresses (2.8") == 1  # the fall in bits beside the verdict
    assert html.split("<b>b</b>")[1].count("<tr>") == 2  # the lens setting b lacks has no row


def test_last_epoch_lens_measures_one_network_of_the_stack():
    import torch

    from ibcore.estimators import Binning
    from ibcore.lenses import last_epoch_lens
    from ibcore.nets import MLP

    net, x = MLP((3, 5, 2), seeds=[0, 1]), torch.rand(64, 3, generator=torch.Generator().manual_seed(0))
    lens = Binning(n_bins=4, bounds=(-1, 1))
    got = last_epoch_lens(net, x, lens, model=1)
    with torch.no_grad():
        want = [lens.estimate(t[1], torch.arange(64)).value for t in net.layers(x)]
    assert got == want and len(got) == 2
    with pytest.raises(ValueError, match=r"model must be an index in \[0, 2\), got 2"):
        last_epoch_lens(net, x, lens, model=2)
