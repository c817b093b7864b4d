"""The bad-input matrix, tried as a new user would: every registered estimator against NaN, inf, huge and tiny
values, a constant column, mismatched lengths, too few samples, wrong ranks, bool/int/complex input and mis-scaled
columns. The answer is a finite value or a ``ValueError`` whose message names the argument; never inf or NaN."""

import math

import numpy as np
import pytest

import ibcore.estimators as est
from ibcore.tasks import correlated_gaussian

MI = est.available("mi")
ENTROPY = est.available("entropy")
_CRITIC = {"hidden": (16,), "embed": 8, "epochs": 3, "batch_size": 64, "patience": 0}
_FLOW = {"epochs": 3, "batch_size": 64, "couplings": 2, "hidden": (16,), "patience": 0}
FAST = {**{n: _CRITIC for n in ("mine", "nwj", "infonce", "smile")}, **{n: _FLOW for n in ("mienf", "tridiag-mienf")},
        "sp": {"n_mc": 2000}, "sp-entropy": {"n_mc": 2000}}  # fmt: skip
# Scale invariance holds for these by construction (MI under a change of units of each column, with standardized
# k-NN, the whitened entropies and the Gaussian's canonical correlations), and for the discrete and exact ones (rows
# read as symbols: scaling keeps equal rows equal). Not for binning (bounds="layer" spans the whole layer's range, so
# it is invariant to one scale for the layer, not per column), the critics and flows (trained: equal only in
# distribution), nor sp (its noise has a fixed scale).
SCALE_INVARIANT = {"ksg", "gaussian", "entropy-mi", "lossy", "discrete", "exact"}


def _pair(name, n=300):
    x, y = correlated_gaussian(n, mi=0.5, dim=2, seed=0)
    if est.capabilities(name)["y_role"] == "labels":
        y = (y[:, 0] > 0).astype(np.int64) + 2 * (y[:, 1] > 0).astype(np.int64)
    return x, y


def _run(name, *arrays):
    return est.make(name, **FAST.get(name, {})).estimate(*arrays)


def _finite_or_named_error(name, arrays, argument):
    try:
        r = _run(name, *arrays)
    except ValueError as err:
        assert argument in str(err), (name, str(err))
        return None
    assert math.isfinite(r.value), (name, r.value)
    return r


CASES = {
    "huge": lambda a: a * 1e200,
    "tiny": lambda a: a * 1e-200,
    "constant column": lambda a: np.column_stack([a[:, 0], np.full(len(a), 2.5)]),
    "bool": lambda a: a > 0,
    "int": lambda a: np.round(a * 3).astype(np.int64),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", MI + ENTROPY)
def test_finite_input_gives_a_finite_value_or_names_the_argument(name, case):
    x, y = _pair(name)
    bad = CASES[case](x)
    _finite_or_named_error(name, (bad, y) if name in MI else (bad,), "x")


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
    bad = y.astype(np.float64).copy()
    bad.flat[5] = np.nan
    with pytest.raises(ValueError, match=r"y contains 1 non-finite"):
        _run(name, x, bad)


@pytest.mark.parametrize("name", sorted(SCALE_INVARIANT))
def test_a_change_of_units_changes_nothing(name):
    x, y = _pair(name, 400)
    scale = np.array([1e6, 1e-3])
    a = _run(name, x, y).value
    b = _run(name, x * scale, y if est.capabilities(name)["y_role"] == "labels" else y * scale[::-1]).value
    assert b == pytest.approx(a, abs=1e-6), (a, b)


@pytest.mark.parametrize("name", ["kl", "wkl"])
def test_entropies_move_by_the_log_determinant_of_a_change_of_units(name):
    x, _ = _pair(name, 400)
    scale = np.array([1e6, 1e-3])
    a, b = _run(name, x).value, _run(name, x * scale).value
    assert b == pytest.approx(a + float(np.log(scale).sum()), abs=1e-6)
