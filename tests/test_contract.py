"""The contract every registered estimator keeps, parametrized over the registry and read from the estimators'
declared capabilities (``ibcore.estimators.interface``: roles, trained, weighted, batched, images, bound).

A new estimator is covered as soon as it is registered; it must also be listed in ``TOO_FEW`` below, which says
how many samples are too few for it with default parameters (so that the too-few-samples error is tested).
"""

import json
import math

import numpy as np
import pytest
import torch

import ibcore.estimators as est
from ibcore.estimators import EntropyEstimate, MIEstimate
from ibcore.tasks import correlated_gaussian

# Sample counts that must raise with default parameters (None: any non-empty input is enough).
TOO_FEW = {
    "discrete": None,
    "discrete-entropy": None,
    "binning": None,
    "binned-entropy": None,
    "ksg": 3,  # k = 3 needs k + 1 samples
    "kl": 3,
    "wkl": 5,  # k = 5
    "entropy-mi": 5,
    "class-mi": 5,
    "lossy": 5,  # entropy-mi after (no) compression
    "gaussian": 4,
    "copula": 8,  # n > 2 (d_x + d_y)
    "auto": 8,  # its copula candidate
    "exact": None,
    "exact-entropy": None,
    "sp": None,
    "kde": None,
    "noisy-layer": None,  # every row is drawn replicas (8) times: one row is enough for k = 3
    "sp-entropy": None,  # needs n > d_x + d_y = 4 on the 2+2-dimensional contract data
    "mine": 9,  # the critic estimators need 10 rows (a training and a held-out part)
    "nwj": 9,
    "infonce": 9,
    "smile": 9,
    "mienf": 9,  # the flow estimators too
    "tridiag-mienf": 9,
    "flow-entropy": 9,
}

# Estimators of I(X;Y) for class labels Y: the contract data's y becomes four classes.
LABELLED = set(est.available(y_role="labels"))

# Trained critics and flows are not bit-reproducible across devices (float32 training amplifies rounding
# differences): on CUDA they must agree with the CPU within their statistical error instead of to float precision.
TRAINED = set(est.available(trained=True))

# Small settings for the device contract (test_estimator_runs_on_the_device), which checks where an
# estimator runs, not how well: the trained ones train for three epochs of a small network, and sample
# propagation draws fewer Monte Carlo points.
_CRITIC_FAST = {"hidden": (16,), "embed": 8, "epochs": 3, "batch_size": 64, "patience": 0}
_FLOW_FAST = {"epochs": 3, "batch_size": 64, "couplings": 2, "hidden": (16,), "patience": 0}
DEVICE_PARAMS = {
    **dict.fromkeys(["mine", "nwj", "infonce", "smile"], _CRITIC_FAST),
    **dict.fromkeys(["mienf", "tridiag-mienf", "flow-entropy"], _FLOW_FAST),
    **dict.fromkeys(["sp", "sp-entropy"], {"n_mc": 2000}),
}

# How closely a CUDA run must reproduce the CPU run, and why (value = approx(cpu, rel=..., abs=...)):
DEVICE_TOLERANCE = {
    # counting estimators: the same symbols and counts on both devices; only the order of the float64 sums of
    # p ln p may differ (atomic adds on CUDA), a few ulps of the value
    **dict.fromkeys(["discrete", "discrete-entropy", "exact", "exact-entropy", "binning", "binned-entropy"],
                    (1e-9, 1e-12)),
    # float64 covariance factorisations (cuSOLVER vs LAPACK): agree to ~1e-15 relative
    "gaussian": (1e-9, 1e-12),
    # k-NN: the CPU picks the k-d tree, CUDA brute force, on the same float64 data; the same neighbours and, to
    # ~1e-16 relative, the same distances (test_knn holds the two backends to 1e-12 for KSG and 1e-9 for KL); the
    # whitening of the entropy-based estimators adds a float64 Cholesky factor on each device
    **dict.fromkeys(["ksg", "kl", "wkl", "entropy-mi", "class-mi", "lossy", "noisy-layer"], (0.0, 1e-9)),
    # the copula's EM stops when the shape matrix moves by < 1e-7: LAPACK and cuSOLVER rounding may stop it one
    # iteration apart, a change far below 1e-6 relative; auto adds KSG (as above) and the Gaussian
    **dict.fromkeys(["copula", "auto"], (1e-6, 1e-9)),
    # sample propagation: the same Monte Carlo points (drawn on the CPU for every device), float64 distances
    **dict.fromkeys(["sp", "sp-entropy"], (0.0, 1e-9)),
    # pairwise-distance bounds: float64 distances by a matrix product (cuBLAS vs the CPU's BLAS), a few ulps each
    "kde": (0.0, 1e-9),
}

MI = est.available("mi")
ENTROPY = est.available("entropy")


def _data(n=400, seed=0, name=None):
    x, y = correlated_gaussian(n, mi=0.5, dim=2, seed=seed)
    if name in LABELLED:  # four classes from the signs of y
        y = (y[:, 0] > 0).astype(np.int64) + 2 * (y[:, 1] > 0).astype(np.int64)
    return x, y


def _estimate(name, *arrays, **params):
    return est.make(name, **params).estimate(*arrays)


def test_registry_lists_the_foundation_estimators():
    assert {"discrete", "binning", "ksg", "gaussian"} <= set(MI)
    assert {"discrete-entropy", "binned-entropy", "kl"} <= set(ENTROPY)
    assert sorted(MI + ENTROPY) == est.available()


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_every_estimator_is_listed_here(name):
    assert name in TOO_FEW, f"add {name!r} to TOO_FEW in {__file__}"


def test_make_rejects_unknown_names_and_kinds():
    with pytest.raises(ValueError, match="unknown estimator name='nope'"):
        est.make("nope")
    with pytest.raises(ValueError, match="kind"):
        est.available("bits")


@pytest.mark.parametrize("name", MI)
def test_mi_result_is_a_finite_estimate_in_nats(name):
    x, y = _data(name=name)
    r = _estimate(name, x, y)
    assert isinstance(r, MIEstimate)
    assert isinstance(r.value, float) and math.isfinite(r.value)
    assert r.n_samples == 400 and r.estimator == name
    assert r.params == est.make(name).get_params()
    assert r.bits == pytest.approx(r.value / math.log(2))
    assert r.std is None or (math.isfinite(r.std) and r.std >= 0)
    assert isinstance(r.diagnostics, dict)


@pytest.mark.parametrize("name", ENTROPY)
def test_entropy_result_is_a_finite_estimate_in_nats(name):
    x, _ = _data()
    r = _estimate(name, x)
    assert isinstance(r, EntropyEstimate)
    assert math.isfinite(r.value) and r.n_samples == 400 and r.estimator == name


@pytest.mark.parametrize("name", MI)
def test_same_seed_same_value(name):
    x, y = _data(name=name)
    params = {"seed": 7} if "seed" in est.make(name).param_names() else {}
    assert _estimate(name, x, y, **params).value == _estimate(name, x, y, **params).value


@pytest.mark.parametrize("name", MI)
def test_numpy_and_torch_inputs_agree(name):
    x, y = _data(name=name)
    a = _estimate(name, x, y).value
    b = _estimate(name, torch.from_numpy(x), torch.from_numpy(y)).value
    assert a == pytest.approx(b, abs=1e-9)


def _bad_inputs():
    x, y = _data(50)
    nan = x.copy()
    nan[3, 1] = np.nan
    inf = y.copy()
    inf[0, 0] = np.inf
    return [
        ("mismatched lengths", x, y[:49], r"same number of samples, got \[50, 49\]"),
        ("NaN in x", nan, y, r"x contains 1 non-finite"),
        ("inf in y", x, inf, r"y contains 1 non-finite"),
        ("3-D x", x.reshape(50, 2, 1), y, r"x must be 1-D .* got shape \(50, 2, 1\)"),
        ("complex y", x, y.astype(np.complex128), r"y must be numeric"),
        ("strings in x", np.array([["a", "b"]] * 50), y, r"x must be numeric"),
        ("empty x", np.empty((0, 2)), np.empty((0, 2)), r"x is empty"),
        ("zero columns", np.empty((50, 0)), y, r"x is empty"),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
@pytest.mark.parametrize("name", MI)
def test_mi_bad_input_raises_value_error_naming_it(name, case):
    _, x, y, message = case
    with pytest.raises(ValueError, match=message):
        _estimate(name, x, y)


@pytest.mark.parametrize("case", [c for c in _bad_inputs() if c[0].endswith("x") or "x" in c[0].split()],
                         ids=lambda c: c[0])
@pytest.mark.parametrize("name", ENTROPY)
def test_entropy_bad_input_raises_value_error_naming_it(name, case):
    _, x, _, message = case
    with pytest.raises(ValueError, match=message):
        _estimate(name, x)


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_too_few_samples_raise(name):
    n = TOO_FEW[name]
    if n is None:
        pytest.skip(f"{name} works from one sample on")
    x, y = _data(n, name=name)
    args = (x, y) if name in MI else (x,)
    with pytest.raises(ValueError, match=rf"(has|have) {n} samples"):
        _estimate(name, *args)


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_estimate_never_returns_nan_on_constant_input(name):
    # A constant column is legal input; the answer must be a number or a ValueError, never NaN.
    x, y = _data(200, name=name)
    x[:, 0] = 1.0
    args = (x, y) if name in MI else (x,)
    try:
        r = _estimate(name, *args)
    except ValueError as err:
        assert "x" in str(err)
    else:
        assert math.isfinite(r.value)


def test_negative_estimates_are_not_clipped():
    # KSG is unbiased-ish around 0 on independent data, so some seeds must come out below 0.
    values = []
    for seed in range(10):
        x, y = correlated_gaussian(200, mi=0.0, dim=1, seed=seed)
        values.append(est.make("ksg").estimate(x, y).value)
    assert min(values) < 0 < max(values)


def _on(device, name):
    # How an estimator is put on a device: its ``device`` parameter where it has one (with NumPy data, so that the
    # estimator moves them), the inner estimator's for lossy, else the data on the device (the discrete and exact
    # estimators follow their data).
    params = dict(DEVICE_PARAMS.get(name, {}))
    own = est.make(name).param_names()
    if "device" in own:
        return params | {"device": device}, False
    if "params" in own:  # an estimator applied after compression: its inner estimator's device
        return params | {"params": {"device": device}}, False
    return params, True


def _run(name, device):
    x, y = _data(name=name)
    params, move = _on(device, name)
    arrays = (x, y) if name in MI else (x,)
    if move:
        arrays = tuple(torch.from_numpy(a).to(device) for a in arrays)
    return _estimate(name, *arrays, **params)


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_estimator_runs_on_the_device(name, device):
    """The device contract: every registered estimator runs on the device asked for (``pytest --device cuda``),
    gives a finite estimate, reports the device where it reports one, and on CUDA reproduces the CPU run within
    DEVICE_TOLERANCE (deterministic estimators) or four standard errors (trained ones, see TRAINED)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    r = _run(name, device)
    assert isinstance(r, MIEstimate if name in MI else EntropyEstimate)
    assert math.isfinite(r.value) and r.n_samples == 400 and r.estimator == name
    assert r.std is None or math.isfinite(r.std)
    # where the result says where it ran, that is the device asked for
    for where in (r.params.get("device"), (r.params.get("params") or {}).get("device"), r.device):
        if where is not None:
            assert torch.device(where).type == device.type, (where, device)
    if device.type != "cuda":
        return
    # the estimate allocated memory on the GPU: it computed there, not on a copy on the host
    assert torch.cuda.max_memory_allocated(device) > held, f"{name} allocated nothing on {device}"
    cpu = _run(name, torch.device("cpu"))
    if name in TRAINED:
        # float32 training on two devices: statistically, not bitwise, the same (4 standard errors of either)
        tol = 4 * max(cpu.std or 0.0, r.std or 0.0) + 1e-6
        assert r.value == pytest.approx(cpu.value, abs=tol), (r.value, cpu.value, tol)
    else:
        rel, abs_ = DEVICE_TOLERANCE[name]
        assert r.value == pytest.approx(cpu.value, rel=rel, abs=abs_), (r.value, cpu.value)


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_every_estimator_has_a_device_tolerance(name):
    assert name in TRAINED or name in DEVICE_TOLERANCE, f"add {name!r} to DEVICE_TOLERANCE in {__file__}"


def test_bits_conversion_and_float():
    r = MIEstimate(math.log(2), 10, "demo")
    assert r.bits == pytest.approx(1.0) and float(r) == pytest.approx(math.log(2)) and r.std_bits is None


def test_device_argument_is_validated():
    x, y = _data()
    with pytest.raises(ValueError, match="device"):
        est.make("gaussian", device="nonsense").estimate(x, y)


# ------------------------------------------------------------------------------------------ the declared contract
@pytest.mark.parametrize("name", MI + ENTROPY)
def test_declared_capabilities_and_parameters(name):
    caps = est.capabilities(name)
    cls = type(est.make(name))
    assert caps["kind"] == ("mi" if name in MI else "entropy")
    assert caps["x_role"] in est.ROLES and (caps["y_role"] is None) == (name in ENTROPY)
    for flag in ("images", "trained", "weighted", "batched"):
        assert isinstance(caps[flag], bool), flag
    assert caps["bound"] is None or isinstance(caps["bound"], str)
    e = est.make(name)
    assert list(e.get_params()) == cls.param_names() == list(caps["params"])  # params are the constructor's
    copy = e.clone()
    assert copy is not e and copy.get_params().keys() == e.get_params().keys()
    if cls.param_names():
        first = cls.param_names()[0]
        with pytest.raises(ValueError, match=r"has no parameters \['nope'\]"):
            e.set_params(nope=1)
        with pytest.raises(ValueError, match=r"has no parameters \['nope'\]"):
            est.make(name, nope=1)
        assert e.set_params(**{first: getattr(e, first)}) is e


def _contract_run(name, **extra):
    x, y = _data(name=name)
    params = {**DEVICE_PARAMS.get(name, {}), **extra}
    return est.make(name, **params).estimate(*((x, y) if name in MI else (x,)))


@pytest.mark.parametrize("name", MI + ENTROPY)
def test_result_schema_and_documented_diagnostics(name):
    r = _contract_run(name)
    assert r.unit == "nats" and r.n == r.n_samples == 400
    assert isinstance(r.seconds, float) and r.seconds >= 0
    assert r.device == "cpu"
    assert isinstance(r.warnings, tuple) and all(isinstance(w, str) for w in r.warnings)
    assert r.params == est.make(name, **DEVICE_PARAMS.get(name, {})).get_params()
    undocumented = sorted(set(r.diagnostics) - set(est.DIAGNOSTICS))
    assert not undocumented, f"document {undocumented} in interface.DIAGNOSTICS"
    for key, value in r.diagnostics.items():
        kind = est.DIAGNOSTICS[key][0]
        assert isinstance(value, kind), (key, value, kind)
    back = type(r).from_dict(json.loads(json.dumps(r.to_dict())))
    assert (back.value, back.std, back.warnings, back.estimator) == (r.value, r.std, r.warnings, r.estimator)


def test_records_of_earlier_versions_are_read():
    old = {"value": 1.5, "n_samples": 8, "estimator": "exact", "params": {}, "std": None,
           "diagnostics": {"max_value": 2.0}}
    r = MIEstimate.from_dict(old)
    assert r.diagnostics == {"bound": 2.0} and r.unit == "nats" and r.warnings == () and r.seconds is None
    inf = MIEstimate(float("inf"), 1, "x").to_dict()
    assert inf["value"] == "inf" and MIEstimate.from_dict(inf).value == float("inf")


def test_saturation_at_the_bound_is_a_warning():
    ids = np.arange(64)
    r = est.make("exact").estimate(ids, ids)  # every input its own symbol: I = ln 64, the bound
    assert r.diagnostics["bound"] == pytest.approx(math.log(64))
    assert any(w.startswith("saturated") for w in r.warnings)
    assert est.make("exact").estimate(ids < 48, ids).warnings == ()  # I = H(1/4) < ln 2


@pytest.mark.parametrize("name", [n for n in MI if n not in TRAINED])
def test_estimate_batch_gives_what_separate_calls_give(name):
    x, y = _data(name=name)
    x2 = x[::-1].copy() * 2.0 + 1.0
    r = est.make(name, **DEVICE_PARAMS.get(name, {}))
    got = r.estimate_batch([x, x2], y)
    want = [r.estimate(x, y).value, r.estimate(x2, y).value]
    assert [g.value for g in got] == pytest.approx(want, abs=1e-12)
    assert all(g.estimator == name and g.seconds >= 0 for g in got)


@pytest.mark.parametrize("name", MI)
def test_p_is_refused_by_estimators_of_samples(name):
    x, y = _data(name=name)
    if est.capabilities(name)["weighted"]:
        pytest.skip(f"{name} takes p")
    with pytest.raises(ValueError, match=f"p was given, but {name} reads its rows as samples"):
        est.make(name).estimate(x, y, p=np.full(400, 1 / 400))


def test_available_filters_by_capability():
    assert est.available("mi", y_role="labels") == ["class-mi"]
    assert set(est.available(images=True)) == {"lossy", "mienf", "tridiag-mienf", "mine", "nwj", "infonce", "smile"}
    assert est.available(weighted=True) == ["exact", "exact-entropy"]
    with pytest.raises(ValueError, match="unknown capabilities"):
        est.available(fast=True)
