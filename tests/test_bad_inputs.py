"""The bad-input matrix, tried as a new user would: every registered estimator against NaN, inf, huge and tiny
values, a constant column, mismatched lengths, too few samples, wrong ranks, bool/int/complex input and mis-scaled
columns, on either side. The answer is a finite value or a ``ValueError`` whose message names the argument; never
inf or NaN. Then the numerics behind it: standardization, the exact handling of far-spread sample-propagation
centres, and the refusals of a conversion that would destroy the data."""

import math

import numpy as np
import pytest
import torch

import ibcore.estimators as est
from ibcore.estimators import sp
from ibcore.estimators._validation import as_samples
from ibcore.tasks import correlated_gaussian

MI = est.available("mi")
ENTROPY = est.available("entropy")
LABELLED = set(est.available(y_role="labels"))
_CRITIC = {"hidden": (16,), "embed": 8, "epochs": 3, "batch_size": 64, "patience": 0}
_FLOW = {"epochs": 3, "batch_size": 64, "couplings": 2, "hidden": (16,), "patience": 0}
FAST = {**{n: _CRITIC for n in ("mine", "nwj", "infonce", "smile")},
        **{n: _FLOW for n in ("mienf", "tridiag-mienf", "flow-entropy")},
        "sp": {"n_mc": 2000}, "sp-entropy": {"n_mc": 2000}}  # fmt: skip
assert set(est.available(trained=True)) <= set(FAST), "give a new trained estimator tiny settings in FAST"

# Invariant to a change of units of each column separately, by construction: KSG on standardized columns, the
# whitened entropy estimators (entropy-mi, class-mi, lossy's default inner estimator), the Gaussian's canonical
# correlations; and the discrete and exact ones, which read rows as symbols (scaling keeps equal rows equal and
# distinct rows distinct). Not binning (bounds="layer" is one range for the whole layer: invariant to one scale
# for all columns, tested below, not to one per column), the critics and flows (trained in float32 on a finite
# budget: equal only in distribution), nor sample propagation (its noise has a fixed scale). kl and wkl are not
# invariant but move by the log-determinant of the change (tested below).
SCALE_INVARIANT = {"ksg", "gaussian", "entropy-mi", "class-mi", "lossy", "discrete", "exact"}
# ... and to one scale of all columns together, which binning's layer-wide range follows too. Scales by powers of
# two, which floating point applies exactly, so that the symbol-reading estimators must agree to the bit.
UNIFORM_INVARIANT = SCALE_INVARIANT | {"binning", "binned-entropy", "discrete-entropy", "exact-entropy"}
EXACTLY_INVARIANT = {"binning", "binned-entropy", "discrete", "discrete-entropy", "exact", "exact-entropy"}


def _pair(name, n=300):
    x, y = correlated_gaussian(n, mi=0.5, dim=2, seed=0)
    if name in LABELLED:  # class labels: four classes from the signs of y
        y = (y[:, 0] > 0).astype(np.int64) + 2 * (y[:, 1] > 0).astype(np.int64)
    elif est.capabilities(name)["x_role"] == "centres":  # sp: x the centres, y the input of each (one centre each)
        y = np.arange(n)
    return x, y


def _run(name, *arrays, **params):
    return est.make(name, **{**FAST.get(name, {}), **params}).estimate(*arrays)


def _finite_or_named_error(name, arrays, argument):
    try:
        r = _run(name, *arrays)
    except ValueError as err:
        assert argument in str(err), (name, str(err))
        return None
    assert math.isfinite(r.value), (name, r.value)
    assert r.std is None or math.isfinite(r.std), (name, r.std)
    return r


def _column(a):
    return a.reshape(len(a), -1)


CASES = {
    "huge": lambda a: a * 1e200,
    "tiny": lambda a: a * 1e-200,
    "near the largest float": lambda a: a * (1e308 / np.abs(a).max()),
    "constant column": lambda a: np.column_stack([_column(a)[:, 0], np.full(len(a), 2.5)]),
    "columns 1e6 apart": lambda a: _column(a) * np.array([1e6, 1.0])[: _column(a).shape[1]],
    "bool": lambda a: a > 0,
    "int": lambda a: np.round(a * 3).astype(np.int64),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", MI + ENTROPY)
def test_finite_x_gives_a_finite_value_or_names_x(name, case):
    x, y = _pair(name)
    bad = CASES[case](x)
    _finite_or_named_error(name, (bad, y) if name in MI else (bad,), "x")


@pytest.mark.parametrize("name", MI)
@pytest.mark.parametrize("case", list(CASES))
def test_finite_y_gives_a_finite_value_or_names_y(name, case):
    x, y = _pair(name)
    _finite_or_named_error(name, (x, CASES[case](y)), "y")


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_too_few_samples_give_a_finite_value_or_name_the_argument(name):
    x, y = _pair(name, 3)  # n <= k for every k-NN estimator's default k
    _finite_or_named_error(name, (x, y) if name in MI else (x,), "x")


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_non_finite_complex_and_wrong_rank_inputs_name_the_argument(name):
    x, y = _pair(name, 60)
    rest = (y,) if name in MI else ()
    for bad, message in [(np.where(np.arange(120).reshape(60, 2) == 7, np.nan, x), r"x contains 1 non-finite"),
                         (np.where(np.arange(120).reshape(60, 2) == 7, np.inf, x), r"x contains 1 non-finite"),
                         (x.astype(np.complex128), r"x must be numeric"),
                         (x.reshape(60, 2, 1), r"x must be 1-D"), (np.empty((0, 2)), "x is empty")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            _run(name, bad, *(r[: len(bad)] for r in rest))


@pytest.mark.parametrize("name", MI)
def test_mismatched_lengths_and_a_bad_y_name_y(name):
    x, y = _pair(name, 60)
    with pytest.raises(ValueError, match=r"same number of samples, got \[60, 59\]"):
        _run(name, x, y[:59])
    nan = y.astype(np.float64)
    nan.flat[5] = np.nan
    for bad, message in [(nan, r"y contains 1 non-finite"), (y.astype(np.complex128), "y must be numeric"),
                         (_column(y)[:, :, None] * np.ones(2), r"y must be 1-D")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            _run(name, x, bad)


@pytest.mark.parametrize("name", sorted(SCALE_INVARIANT))
def test_a_change_of_units_changes_nothing(name):
    x, y = _pair(name, 400)
    scale = np.array([1e6, 1e-3])
    a = _run(name, x, y).value
    b = _run(name, x * scale, y if est.capabilities(name)["y_role"] in ("labels",) else y * scale[::-1]).value
    assert b == pytest.approx(a, abs=1e-6), (a, b)


@pytest.mark.parametrize("power", [664, -664])  # 2**664 = 1.2e200
@pytest.mark.parametrize("name", sorted(UNIFORM_INVARIANT))
def test_one_scale_for_all_columns_changes_nothing(name, power):
    x, y = _pair(name, 400)
    s = 2.0**power
    args = (x, y) if name in MI else (x,)
    scaled = (x * s, y if name in LABELLED else y * s) if name in MI else (x * s,)
    a, b = _run(name, *args).value, _run(name, *scaled).value
    if name in EXACTLY_INVARIANT:
        assert a == b
    else:
        assert b == pytest.approx(a, abs=1e-6), (a, b)


@pytest.mark.parametrize("name", sorted((SCALE_INVARIANT - EXACTLY_INVARIANT) | {"kl", "wkl"}))
def test_values_near_the_largest_float_change_nothing_but_the_log_scale(name):
    # Shifted and scaled so that every value is near 2**1023 = 9e307: sums (the column means) overflow float64. The
    # estimators are invariant to the shift and, but for kl and wkl's d ln s, to the scale (closed forms).
    x, y = _pair(name, 400)
    far = x + 10.0
    s = 2.0 ** (1023 - math.ceil(math.log2(far.max())))
    a, b = (_run(name, v, y) if name in MI else _run(name, v) for v in (x, far * s))
    shift = 2 * math.log(s) if name in ("kl", "wkl") else 0.0
    assert b.value == pytest.approx(a.value + shift, abs=1e-6), (a.value, b.value)


@pytest.mark.parametrize("name", ["kl", "wkl"])
def test_entropies_move_by_the_log_determinant_of_a_change_of_units(name):
    x, _ = _pair(name, 400)
    for scale in (np.array([1e6, 1e-3]), np.array([1e200, 1e200]), np.array([1e-200, 1e-200])):
        a, b = _run(name, x).value, _run(name, x * scale).value
        assert b == pytest.approx(a + float(np.log(scale).sum()), abs=1e-6)


# ------------------------------------------------------------------------------------ sample propagation, far apart
@pytest.mark.parametrize("power", [664, -664])
def test_sample_propagation_scales_exactly_with_the_noise(power):
    # Centres and noise_std scaled together by s: I(X;T) is unchanged and h(T) moves by d ln s (closed form). At
    # s = 2**664 noise_std**2 overflows float64 and at 2**-664 it underflows: the direct form takes over, in units
    # of the noise, and agrees with the expanded one to rounding.
    x, ids = _pair("sp", 300)
    s = 2.0**power
    a = est.make("sp", noise_std=0.5, n_mc=2000).estimate(x, ids)
    b = est.make("sp", noise_std=0.5 * s, n_mc=2000).estimate(x * s, ids)
    assert b.value == pytest.approx(a.value, abs=1e-9) and b.std == pytest.approx(a.std, abs=1e-9)
    assert b.diagnostics["h_t"] == pytest.approx(a.diagnostics["h_t"] + 2 * math.log(s), abs=1e-9)
    assert b.diagnostics["h_t_given_x"] == pytest.approx(a.diagnostics["h_t_given_x"] + 2 * math.log(s), abs=1e-9)
    h = est.make("sp-entropy", noise_std=0.5, n_mc=2000)
    assert h.clone(noise_std=0.5 * s).estimate(x * s).value == pytest.approx(h.estimate(x).value + 2 * math.log(s),
                                                                              abs=1e-9)  # fmt: skip


@pytest.mark.parametrize("spread", [1e8, 1e16, 1e200])
def test_far_apart_centres_are_told_apart_exactly(spread):
    # Centres many noise standard deviations apart: every input is told apart, I = ln(number of inputs) and
    # h(T) = ln 25 + h(T | X), with h(T | X) = ln 2 + the Gaussian's (two far-apart centres per input; closed
    # forms). The expanded |t|^2 + |c|^2 - 2 t.c form loses the point's own centre from a spread of 1e8 on (it gave
    # 3.45 for ln 25 = 3.22 there, and thousands of nats at 1e10).
    c = np.random.default_rng(0).standard_normal((50, 2)) * spread
    ids = np.repeat(np.arange(25), 2)
    r = est.make("sp", n_mc=4000).estimate(c, ids)
    assert r.value == pytest.approx(math.log(25), abs=1e-9)
    assert r.diagnostics["h_t"] == pytest.approx(math.log(25) + r.diagnostics["h_t_given_x"], abs=1e-9)
    se = r.diagnostics["h_t_given_x_std"]
    assert r.diagnostics["h_t_given_x"] == pytest.approx(math.log(2) + sp.gaussian_entropy(2, 1.0), abs=4 * se)
    h = est.make("sp-entropy", n_mc=4000).estimate(c)
    assert h.value == pytest.approx(r.diagnostics["h_t"], abs=1e-9)


def test_direct_and_expanded_distances_agree(monkeypatch):
    # The direct form (centre differences in units of the noise) against the expanded one on ordinary centres, with
    # several centres per input (the gathered conditional densities) and labels (the block path).
    rng = np.random.default_rng(3)
    c = rng.standard_normal((240, 3)) * 2
    ids, labels = np.repeat(np.arange(60), 4), np.repeat(np.arange(60), 4) % 3
    e = est.make("sp", noise_std=0.7, n_mc=3000)
    expanded = e.estimate_batch(c, [ids, labels])
    monkeypatch.setattr(sp, "_EXPANDED_MAX_SPREAD", 0.0)  # every spread is "too far": the direct form throughout
    direct = e.estimate_batch(c, [ids, labels])
    for a, b in zip(expanded, direct):
        assert b.value == pytest.approx(a.value, abs=1e-9)
        for key in ("h_t", "h_t_given_x"):
            assert b.diagnostics[key] == pytest.approx(a.diagnostics[key], abs=1e-9)


def test_gaussian_entropy_of_huge_and_tiny_noise():
    assert sp.gaussian_entropy(3, 1e200) == pytest.approx(sp.gaussian_entropy(3, 1.0) + 3 * math.log(1e200))
    assert sp.gaussian_entropy(3, 1e-200) == pytest.approx(sp.gaussian_entropy(3, 1.0) - 3 * math.log(1e200))


# ------------------------------------------------------------------------------------ k-NN without standardization
def test_unstandardized_knn_refuses_what_would_overflow_or_drown_in_the_jitter():
    x, y = _pair("ksg", 300)
    # KSG: the tie-breaking noise (1e-10 * max(1, mean |c|)) would decide the neighbours of a 1e-200 column
    with pytest.raises(ValueError, match=r"y has columns \[0, 1\] whose standard deviation .* tie-breaking noise"):
        est.make("ksg", standardize=False).estimate(x, y * 1e-200)
    assert est.make("ksg", standardize=False, jitter=0).estimate(x * 1e-200, y * 1e-200).value == pytest.approx(
        est.make("ksg", standardize=False, jitter=0).estimate(x, y).value, abs=1e-12)  # fmt: skip
    # differences of values near the largest float overflow (and scipy's k-d tree fails in its threads)
    for name, args in [("ksg", (x * 4e307, y)), ("kl", (x * 4e307,)), ("wkl", (x * 4e307,))]:
        with pytest.raises(ValueError, match=r"x has values up to 1.\d+e\+308 .* use standardize=True"):
            est.make(name, standardize=False).estimate(*args)
        assert math.isfinite(est.make(name).estimate(*args).value)
    # KL's squared Euclidean distances overflow at 1e200 and underflow at 1e-200
    with pytest.raises(ValueError, match=r"x has values up to 3.9e\+200 and the k-NN distances overflowed"):
        est.make("kl", standardize=False).estimate(x * 1e200)
    with pytest.raises(ValueError, match=r"squared differences underflow float64: x spans at most \d.\d+e-200"):
        est.make("kl", standardize=False).estimate(x * 1e-200)
    # the max norm has no squares: 1e200 is fine
    assert est.make("kl", standardize=False, metric="chebyshev").estimate(x * 1e200).value == pytest.approx(
        est.make("kl", standardize=False, metric="chebyshev").estimate(x).value + 2 * math.log(1e200), abs=1e-9)


# ------------------------------------------------------------------------------------ conversions that lose the data
def test_a_conversion_to_float32_that_overflows_or_collapses_a_column_is_refused():
    x, _ = correlated_gaussian(50, mi=0.5, dim=2, seed=0)
    with pytest.raises(ValueError, match=r"x has values up to \d.\d+e\+200 in magnitude, beyond the range of float32"):
        as_samples(x * 1e200, "x", float_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x has columns \[1\] that vary in float64 but are constant in float32"):
        as_samples(np.column_stack([x[:, 0], 1.0 + 1e-12 * x[:, 1]]), "x", float_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"y has columns \[0, 1\] that vary in float64 but are constant in float32"):
        as_samples(x * 1e-200, "y", float_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x contains 1 non-finite"):  # a non-finite input is still named as such
        as_samples(np.where(np.arange(100).reshape(50, 2) == 3, np.inf, x), "x", float_dtype=torch.float32)
    t = as_samples(np.column_stack([x[:, 0], np.full(50, 2.0)]), "x", float_dtype=torch.float32)
    assert t.dtype == torch.float32  # a column constant already in the input is left to the estimator to judge
    assert torch.equal(as_samples(x * 1e-30, "x", float_dtype=torch.float32), torch.from_numpy(x * 1e-30).float())
