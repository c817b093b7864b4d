"""Accuracy of the plug-in, binning and Gaussian estimators against closed forms and slow references."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from ibcore.estimators import discrete

from ibcore.estimators import BinnedEntropy, Binning, DiscreteEntropy, DiscreteMI, GaussianMI, bin_codes
from ibcore.estimators.discrete import row_codes
from ibcore.tasks import correlated_gaussian, gaussian_mi, transformed_gaussian, uniform_quantization


def plugin_mi_reference(xs, ys):
    """Textbook plug-in MI of two sequences of hashable symbols: sum p(x,y) ln p(x,y) / (p(x) p(y))."""
    n = len(xs)
    pxy, px, py = Counter(zip(xs, ys)), Counter(xs), Counter(ys)
    return sum(c / n * math.log(c * n / (px[a] * py[b])) for (a, b), c in pxy.items())


def rows(a):
    return [tuple(r) for r in np.atleast_2d(a.T).T.tolist()]


# --- discrete ---------------------------------------------------------------------------------------------------


def test_discrete_mi_closed_forms(device):
    x = (torch.arange(8) % 4).to(device)  # uniform on 4 symbols; the estimators follow their data's device
    assert DiscreteMI().estimate(x, x).value == pytest.approx(math.log(4), abs=1e-12)
    assert DiscreteMI().estimate(x, x % 2).value == pytest.approx(math.log(2), abs=1e-12)
    assert DiscreteMI().estimate(x, torch.zeros_like(x)).value == pytest.approx(0.0, abs=1e-12)
    assert DiscreteEntropy().estimate(x).bits == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_row_codes_stay_on_the_device(dtype, device, on_device):
    t = torch.from_numpy(np.random.default_rng(0).integers(-3, 3, size=(300, 4))).to(device=device, dtype=dtype)
    groups = torch.from_numpy(np.random.default_rng(1).integers(0, 3, 300)).to(device)
    codes, grouped = row_codes(t), row_codes(t, groups)
    on_device(codes, grouped)
    assert _same_partition(codes.cpu(), row_codes(t.cpu()))
    assert _same_partition(grouped.cpu(), row_codes(t.cpu(), groups.cpu()))


@pytest.mark.parametrize("seed", range(5))
def test_discrete_mi_matches_reference_to_float_error(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=(300, 2))
    y = (x[:, :1] + rng.integers(0, 3, size=(300, 1))) % 4
    assert DiscreteMI().estimate(x, y).value == pytest.approx(plugin_mi_reference(rows(x), rows(y)), abs=1e-12)


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_row_codes_hash_path_equals_exact_packing_and_survives_collisions(dtype, monkeypatch):
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.integers(-3, 3, size=(2000, 5))).to(dtype)
    groups = torch.from_numpy(rng.integers(0, 3, 2000))
    packed = discrete._packed_row_codes(t, None)
    assert _same_partition(row_codes(t), packed)
    assert _same_partition(row_codes(t, groups), discrete._packed_row_codes(t, groups))
    # every key colliding: the check against each code's representative row must catch it and fall back
    monkeypatch.setattr(discrete, "_HASH_MULTIPLIERS", torch.zeros(4096, dtype=torch.int64))
    assert _same_partition(row_codes(t), packed)


def test_row_codes_treat_negative_zero_as_zero_and_groups_apart():
    t = torch.tensor([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]])
    c = row_codes(t, torch.tensor([0, 0, 1])).tolist()
    assert c[0] == c[1] != c[2]


def test_float_rows_are_symbols_by_exact_equality():
    t = torch.tensor([[0.5, -1.0], [0.5, -1.0], [0.25, 1.0], [0.5, 1.0]])
    c = row_codes(t).tolist()
    assert c[0] == c[1] and len({c[0], c[2], c[3]}) == 3 and sorted(set(c)) == [0, 1, 2]
    assert DiscreteEntropy().estimate(t).value == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_row_codes_survive_key_overflow():
    # 10 columns of 1e5 distinct values overflow one int64 key: codes must still identify rows exactly.
    rng = np.random.default_rng(0)
    base = rng.integers(0, 100_000, size=(50, 10))
    t = torch.from_numpy(np.concatenate([base, base[:20]]))
    codes = row_codes(t)
    assert codes.unique().numel() == len({tuple(r) for r in base.tolist()})
    assert torch.equal(codes[:20], codes[50:])


def test_miller_madow_adds_its_correction():
    x = np.array([0, 1, 2, 2])
    plain = DiscreteEntropy().estimate(x).value
    assert DiscreteEntropy(correction="miller-madow").estimate(x).value == pytest.approx(plain + 2 / 8)
    with pytest.raises(ValueError, match="correction"):
        DiscreteEntropy(correction="jackknife").estimate(x)


# --- binning ----------------------------------------------------------------------------------------------------


def binning_reference(t, n_bins, lo, hi):
    """np.digitize on n_bins equal bins with the top edge in the last bin."""
    edges = np.linspace(lo, hi, n_bins + 1)
    return np.clip(np.digitize(t, edges[1:-1], right=False), 0, n_bins - 1)


@pytest.mark.parametrize("n_bins", [2, 7, 30])
def test_bin_codes_match_digitize(n_bins):
    t = np.random.default_rng(n_bins).uniform(-1, 1, size=(500, 3))
    t[0, 0], t[1, 1] = -1.0, 1.0  # both edges
    codes = bin_codes(torch.from_numpy(t), n_bins=n_bins, bounds=(-1, 1)).numpy()
    np.testing.assert_array_equal(codes, binning_reference(t, n_bins, -1, 1))


def test_binning_mi_matches_reference(device, on_device):
    rng = np.random.default_rng(1)
    t = np.tanh(rng.normal(size=(1000, 3)))
    ids = np.arange(1000)
    labels = (t[:, 0] > 0).astype(np.int64)
    b = binning_reference(t, 10, -1, 1)
    on_device(bin_codes(torch.from_numpy(t).to(device), n_bins=10, bounds=(-1, 1)))
    est = Binning(n_bins=10, bounds=(-1, 1), device=device)
    assert est.estimate(ids, t).value == pytest.approx(plugin_mi_reference(ids.tolist(), rows(b)), abs=1e-12)
    assert est.estimate(t, labels).value == pytest.approx(plugin_mi_reference(rows(b), labels.tolist()), abs=1e-12)


def test_binning_with_distinct_inputs_gives_binned_entropy():
    t = np.random.default_rng(2).uniform(size=(256, 2))
    ids = np.arange(256)
    assert Binning(n_bins=4).estimate(ids, t).value == pytest.approx(BinnedEntropy(n_bins=4).estimate(t).value)
    # Bins small enough to separate every input: H(Bin(T)) = H(X) = ln 256.
    assert Binning(bin_width=1e-9).estimate(ids, t).value == pytest.approx(math.log(256), abs=1e-12)
    # One bin: nothing is left.
    assert Binning(n_bins=1).estimate(ids, t).value == pytest.approx(0.0, abs=1e-12)


def test_a_layer_paired_with_ids_and_labels_is_binned_once_with_the_values_of_separate_estimates(monkeypatch):
    from ibcore.infoplane import layer_information

    g = torch.Generator().manual_seed(3)
    layers = [torch.relu(torch.randn(600, w, generator=g)) * 2 for w in (6, 3)]
    ids, y = torch.arange(600), torch.randint(0, 4, (600,), generator=g)
    est = Binning(n_bins=12, bounds="layer")
    calls = []
    codes = Binning._codes
    monkeypatch.setattr(Binning, "_codes", lambda self, x, name: calls.append(name) or codes(self, x, name))
    pair = est.estimate_batch(layers[0], [ids, y])
    assert calls == ["x", "y", "y"]  # the layer once, then each partner
    assert [r.value for r in pair] == [est.estimate(layers[0], ids).value, est.estimate(layers[0], y).value]
    stacked = est.estimate_batch(torch.stack([layers[0][:, :3], layers[1]]), ids)
    assert [r.value for r in stacked] == [est.estimate(layers[0][:, :3], ids).value, est.estimate(layers[1], ids).value]
    # the information plane with shared (global) bounds: one call per layer, the values of one estimate per side
    rows = layer_information(layers, ids, y, {"b": est}, shared_bounds=True, details=False)
    hi = max(float(t.max()) for t in layers)
    shared = est.clone(bounds=(0.0, hi))
    assert [(r["i_xt"], r["i_ty"]) for r in rows] == [
        (shared.estimate(t, ids).value, shared.estimate(t, y).value) for t in layers]


def test_bin_width_bins_are_anchored_at_the_lower_bound():
    t = torch.tensor([[0.0], [0.49], [0.5], [1.7]])
    assert bin_codes(t, bin_width=0.5, bounds=(0, 2)).flatten().tolist() == [0, 0, 1, 3]


def test_values_outside_fixed_bounds_raise_instead_of_clipping():
    t = np.array([[-0.5], [1.5]])
    with pytest.raises(ValueError, match=r"y has values in \[-0.5, 1.5\], outside bounds=\(-1, 1\)"):
        Binning(bounds=(-1, 1)).estimate(np.arange(2), t)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_bins": 0}, "n_bins must be an integer >= 1"),
        ({"n_bins": 3, "bin_width": 0.1}, "exactly one of n_bins and bin_width"),
        ({"bin_width": -1.0}, "bin_width must be a positive"),
        ({"bounds": (1, -1)}, "lo < hi"),
        ({"bounds": "global"}, "bounds must be 'layer' or a pair"),
    ],
)
def test_bad_binning_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        Binning(**params).estimate(np.arange(4), np.linspace(0, 1, 4))


def test_integer_inputs_are_never_binned():
    y = np.array([0, 1000, 2000, 3000])
    assert Binning(n_bins=2).estimate(y, y).value == pytest.approx(math.log(4))


# --- Gaussian ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mi, dim", [(0.5, 1), (2.0, 3), (5.0, 5)])
def test_gaussian_estimator_recovers_closed_form(mi, dim):
    x, y = correlated_gaussian(200_000, mi=mi, dim=dim, seed=3, mix=True)
    # Standard error of the sample-covariance MI is well below 0.01 nats at this N and these dims.
    assert GaussianMI().estimate(x, y).value == pytest.approx(mi, abs=0.02)


@pytest.mark.parametrize("mi", [0.0, 3.0])
def test_gaussian_bias_correction_removes_the_closed_form_bias(mi):
    # Wishart: E[plug-in] - I = gaussian_mi_bias(n, dx, dy) for every MI (about dx dy / 2n = 0.13 nats here, 14-17
    # standard errors of the mean over 400 data sets); the corrected estimate is unbiased.
    from ibcore.estimators.gaussian import gaussian_mi_bias
    from ibcore.tasks import gaussian_pair

    n, dx, dy = 100, 6, 4
    runs = [gaussian_pair(n, mi, dx, dy, mix=True, seed=s) for s in range(400)]
    plain = np.array([GaussianMI().estimate(x, y).value for x, y in runs])
    fixed = np.array([GaussianMI(bias_correction=True).estimate(x, y).value for x, y in runs])
    se = plain.std() / math.sqrt(len(runs))
    bias = gaussian_mi_bias(n, dx, dy)
    assert bias > 10 * se
    assert abs(plain.mean() - mi - bias) < 4 * se
    assert abs(fixed.mean() - mi) < 4 * se
    np.testing.assert_allclose(plain - fixed, bias)


def test_gaussian_bias_refuses_bad_arguments():
    from ibcore.estimators.gaussian import gaussian_mi_bias

    with pytest.raises(ValueError, match="n must be an integer > dx \\+ dy = 10, got 10"):
        gaussian_mi_bias(10, 5, 5)
    with pytest.raises(ValueError, match="dx must be an integer >= 1, got 0"):
        gaussian_mi_bias(10, 0, 5)
    with pytest.raises(ValueError, match="bias_correction must be True or False, got 1"):
        GaussianMI(bias_correction=1).estimate(*correlated_gaussian(100, mi=1.0, dim=2, seed=0))


def test_gaussian_estimator_is_invariant_to_linear_maps(device):
    x, y = correlated_gaussian(2000, mi=1.0, dim=2, seed=4)
    a = GaussianMI(device=device).estimate(x, y).value
    m = np.array([[2.0, 1.0], [0.0, 3.0]])
    assert GaussianMI(device=device).estimate(x @ m + 5, -y).value == pytest.approx(a, abs=1e-10)


def test_gaussian_estimator_refuses_degenerate_data():
    x, y = correlated_gaussian(500, mi=1.0, dim=2, seed=5)
    with pytest.raises(ValueError, match="x has a singular covariance"):
        GaussianMI().estimate(np.c_[x, x[:, :1]], y)
    with pytest.raises(ValueError, match="linearly dependent"):
        GaussianMI().estimate(x, 2 * x)


# --- tasks ------------------------------------------------------------------------------------------------------


def test_gaussian_rho_and_mi_are_inverse():
    from ibcore.tasks import gaussian_rho

    assert gaussian_mi([gaussian_rho(0.7)] * 3) == pytest.approx(2.1)


def test_transformed_gaussian_keeps_mi_for_rank_statistics():
    x, y = transformed_gaussian(50_000, mi=1.0, dim=1, seed=6, transform_x="uniform", transform_y="cube")
    assert 0 < x.min() and x.max() < 1
    # Back through the inverse maps, the Gaussian estimator sees the original Gaussian.
    from scipy.special import ndtri

    assert GaussianMI().estimate(ndtri(x), np.cbrt(y)).value == pytest.approx(1.0, abs=0.02)


def test_uniform_quantization_has_mi_ln_n():
    x, y = uniform_quantization(100_000, levels=16, dim=3, seed=7)
    assert set(np.unique(y).tolist()) == set(range(16))
    # Y is a function of X, so I(X;Y) = H(Y); its plug-in is within sampling error of ln 16.
    assert DiscreteEntropy().estimate(y).value == pytest.approx(math.log(16), abs=1e-3)
    # Binning X_0 into the same 16 cells recovers I = ln 16 from the (x, y) pair itself.
    assert Binning(n_bins=16, bounds=(0, 1)).estimate(x[:, :1], y).value == pytest.approx(
        DiscreteEntropy().estimate(y).value, abs=1e-12
    )


@pytest.mark.parametrize("bad", [{"n": 0}, {"mi": -1.0}, {"mi": float("nan")}, {"dim": 0}])
def test_samplers_validate_arguments(bad):
    args = {"n": 10, "mi": 1.0, "dim": 1} | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        correlated_gaussian(args["n"], args["mi"], args["dim"], seed=0)
