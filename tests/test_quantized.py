"""Quantization-aware training and the exact estimator (Lorenzen, Igel & Nielsen, ICLR 2022)."""

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from ibcore.data import szt_dataset, szt_split
from ibcore.estimators import DiscreteEntropy, DiscreteMI, ExactEntropy, ExactMI
from ibcore.infoplane import InformationPlane, layer_information
from ibcore.nets import MLP, SZT_WIDTHS
from ibcore.quantization import RunningRange, check_bits, fake_quantize, quantize_weights
from ibcore.training import fit


# ----------------------------------------------------------------------------------------------- fake quantization
def test_fake_quantize_rounds_to_the_grid_with_bit_identical_levels():
    v = torch.linspace(-1.5, 1.5, 10001)
    q = fake_quantize(v, -1.0, 1.0, levels=256)
    values = torch.unique(q)
    assert values.numel() == 256
    step = 2.0 / 255
    assert torch.allclose(values, -1.0 + step * torch.arange(256), atol=1e-6)
    # every occurrence of a level is the same float: recomputing a level elsewhere gives the identical bits
    k = torch.round((v.clamp(-1, 1) + 1) / step)
    assert torch.equal(q, k * step - 1.0)
    assert (q - v.clamp(-1, 1)).abs().max() <= step / 2 + 1e-6


def test_fake_quantize_gradient_is_straight_through_inside_and_zero_outside():
    v = torch.tensor([-2.0, -0.3, 0.0, 0.71, 2.0], requires_grad=True)
    fake_quantize(v, -1.0, 1.0, levels=16).sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_fake_quantize_per_network_ranges_and_zero_width():
    v = torch.rand(3, 5, 4)
    lo = torch.tensor([0.0, 0.2, 0.5]).view(3, 1, 1)
    hi = torch.tensor([1.0, 0.2, 0.6]).view(3, 1, 1)
    q = fake_quantize(v, lo, hi, levels=4)
    assert torch.all(q[1] == 0.2)  # zero-width range: everything at lo, no NaN
    for s in range(3):
        assert torch.unique(q[s]).numel() <= 4
    with pytest.raises(ValueError, match="levels must be >= 2, got 1"):
        fake_quantize(v, 0.0, 1.0, levels=1)


@pytest.mark.parametrize("bits, expected", [(None, None), (32, None), (8, 8), (4, 4), (2, 2)])
def test_check_bits(bits, expected):
    assert check_bits(bits) == expected


@pytest.mark.parametrize("bits", [0, 1, 17, 8.0, True, "8"])
def test_check_bits_rejects(bits):
    with pytest.raises(ValueError, match="bits must be an integer"):
        check_bits(bits)


def test_running_range_initialises_then_averages_and_freezes_in_eval(device, on_device):
    r = RunningRange(2, decay=0.5, device=device)
    on_device(r)
    r.train()
    r.update(torch.tensor([[[1.0, 3.0]], [[-2.0, 2.0]]], device=device))
    assert r.lo.flatten().tolist() == [0.0, -2.0] and r.hi.flatten().tolist() == [3.0, 2.0]  # always contains 0
    r.update(torch.tensor([[[5.0]], [[0.0]]], device=device))
    assert r.hi.flatten().tolist() == [4.0, 1.0] and r.lo.flatten().tolist() == [0.0, -1.0]
    r.eval()
    r.update(torch.tensor([[[50.0]], [[-50.0]]], device=device))
    assert r.hi.flatten().tolist() == [4.0, 1.0]
    on_device(r, fake_quantize(torch.rand(2, 3, 1, device=device), r.lo, r.hi, levels=4))
    with pytest.raises(ValueError, match="decay"):
        RunningRange(1, decay=1.0)


# ------------------------------------------------------------------------------------------------ quantized MLPs
@pytest.fixture(scope="module")
def szt():
    d = szt_dataset()
    tr, te = szt_split()
    return d, tr, te


def _trained(activation, bits, seeds=(0, 1), epochs=3, szt_data=None, device="cpu"):
    d, tr, _ = szt_data
    d = d.to(device)
    net = MLP(SZT_WIDTHS, activation, seeds=list(seeds), init="glorot_uniform", bits=bits, device=device)
    fit(net, (d.x[tr], d.y[tr]), epochs=epochs, batch_size=256, lr=1e-3, seed=5)
    net.eval()
    return net


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("bits", [4, 8])
def test_every_quantized_neuron_takes_at_most_2_to_the_bits_values(szt, activation, bits, device, on_device):
    net = _trained(activation, bits, szt_data=szt, device=device)
    on_device(net)  # weights, biases and running ranges
    with torch.no_grad():
        layers = net.layers(szt[0].x.to(device))
    on_device(layers)
    for t in layers:
        for s in range(net.n_models):
            for j in range(t.shape[-1]):
                assert torch.unique(t[s, :, j]).numel() <= 2**bits
    if activation == "tanh":  # fixed range: the values lie on the grid of [-1, 1]
        k = (layers[0] + 1) * (2**bits - 1) / 2
        assert torch.allclose(k, k.round(), atol=1e-4)


def test_unquantized_network_is_the_float_network(szt):
    a = MLP(SZT_WIDTHS, "tanh", seeds=[3], bits=32)
    b = MLP(SZT_WIDTHS, "tanh", seeds=[3])
    x = szt[0].x
    assert a.levels is None and len(a.ranges) == 0
    assert all(torch.equal(u, v) for u, v in zip(a.layers(x), b.layers(x)))
    assert torch.unique(a.layers(x)[0][0, :, 0]).numel() > 256


def test_quantize_weights_rejects_even_level_counts():
    with pytest.raises(ValueError, match="levels must be odd and >= 3"):
        quantize_weights(torch.ones(1, 2, 2), 4)


def test_quantized_weights_are_on_a_symmetric_grid(device, on_device):
    net = MLP((12, 10, 2), "relu", seeds=[0], bits=4, device=device)
    w = net._weight(0)[0]
    on_device(w)
    m = net.weights[0][0].abs().max()
    assert torch.unique(w).numel() <= 15
    assert torch.allclose(w.abs().max(), m)
    unrounded = MLP((12, 10, 2), "relu", seeds=[0], bits=4, quantize_weights=False, device=device)
    assert not unrounded._weight(0).equal(w.unsqueeze(0))


def test_stacked_quantized_training_equals_separate_training(szt, device):
    # Tolerance 1e-6 on the CPU, whose batched products are the same for 1 and 2 networks. On CUDA the kernel may
    # depend on the batch count, and a rounding difference that moves an activation across a quantization level
    # changes that sample's gradient; 39 Adam steps at lr 1e-3 move a weight by at most 0.04 in all, and a few
    # such flips among 256 samples per step by far less: 1e-3 (an estimate; not yet measured on a GPU).
    tol = 1e-6 if device.type == "cpu" else 1e-3
    together = _trained("relu", 8, seeds=(4, 9), szt_data=szt, device=device)
    alone = _trained("relu", 8, seeds=(9,), szt_data=szt, device=device)
    assert torch.allclose(together.weights[2][1], alone.weights[2][0], atol=tol)
    assert torch.allclose(together.ranges["0"].hi[1], alone.ranges["0"].hi[0], atol=tol)


def test_quantized_training_learns_szt(szt, device):
    d, tr, te = szt
    d = d.to(device)
    net = _trained("tanh", 8, seeds=(0,), epochs=60, szt_data=szt, device=device)
    acc = (net(d.x[tr]).argmax(-1) == d.y[tr]).float().mean()
    assert acc > 0.75  # above the 0.52 majority rate: gradients pass through the rounding


# ------------------------------------------------------------------------------------------- the exact estimator
def _brute_force_mi(x_rows, y_rows, p):
    # I(X;Y) from dictionaries of probability mass, the definition written out.
    px, py, pxy = defaultdict(float), defaultdict(float), defaultdict(float)
    for a, b, w in zip(x_rows, y_rows, p):
        px[a] += w
        py[b] += w
        pxy[a, b] += w
    return sum(w * math.log(w / (px[a] * py[b])) for (a, b), w in pxy.items() if w > 0)


def test_exact_mi_equals_brute_force_counting_with_probabilities():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(300, 2))
    y = (x[:, :1] + rng.integers(0, 2, size=(300, 1))) % 4
    p = rng.dirichlet(np.ones(300))
    p[:20] = 0.0
    p /= p.sum()
    want = _brute_force_mi([tuple(r) for r in x], [tuple(r) for r in y], p)
    assert ExactMI().estimate(x, y, p=p).value == pytest.approx(want, abs=1e-12)
    mass = Counter()
    for row, w in zip(map(tuple, x), p):
        mass[row] += w
    want_h = -sum(w * math.log(w) for w in mass.values() if w > 0)
    assert ExactEntropy().estimate(x, p=p).value == pytest.approx(want_h, abs=1e-12)


def test_exact_equals_the_plugin_estimator_for_equiprobable_rows():
    rng = np.random.default_rng(1)
    t = np.round(rng.normal(size=(4096, 3)), 1).astype(np.float32)
    y = rng.integers(0, 2, 4096)
    a, b = ExactMI().estimate(t, y), DiscreteMI().estimate(t, y)
    assert a.value == pytest.approx(b.value, abs=1e-12)
    assert ExactEntropy().estimate(t).value == pytest.approx(DiscreteEntropy().estimate(t).value, abs=1e-12)


def test_exact_entropy_with_probabilities_and_function_flags():
    r = ExactEntropy().estimate([[0], [1], [1], [2]], p=[0.5, 0.125, 0.125, 0.25])
    assert r.bits == pytest.approx(1.5) and r.diagnostics["n_symbols"] == 3
    ids = np.arange(8)
    t = ids // 2
    m = ExactMI().estimate(ids, t)
    assert m.bits == pytest.approx(2.0)  # I(X;T) = H(T) for T a function of X
    assert m.diagnostics["y_function_of_x"] and not m.diagnostics["x_function_of_y"]


def test_exact_stacked_equals_one_network_at_a_time():
    rng = np.random.default_rng(2)
    t = torch.from_numpy(rng.integers(0, 3, size=(4, 500, 2)))
    y = torch.from_numpy(rng.integers(0, 2, 500))
    ids = torch.arange(500)
    est = ExactMI()
    for stacked, one in [(est.estimate_batch(t, y), [est.estimate(u, y) for u in t]),
                         (est.estimate_batch(t, ids), [est.estimate(u, ids) for u in t]),
                         (est.estimate_batch(list(t), ids), [est.estimate(u, ids) for u in t])]:  # fmt: skip
        assert [r.value for r in stacked] == pytest.approx([r.value for r in one], abs=1e-12)
    # both stacked: pairs network s of x with network s of y
    both = est.estimate_batch(t, t)
    assert [r.value for r in both] == pytest.approx([est.estimate(u, u).value for u in t], abs=1e-12)


@pytest.mark.parametrize(
    "p, message",
    [
        ([0.5, 0.5], r"p must hold one probability per row, shape \(4,\), got shape \(2,\)"),
        ([0.5, 0.5, 0.5, -0.5], "p must be finite and non-negative"),
        ([0.5, 0.5, float("nan"), 0.0], "p must be finite and non-negative"),
        ([0.25, 0.25, 0.25, 0.2], r"p must sum to 1, got sum\(p\)=0.95"),
    ],
)
def test_exact_rejects_bad_probabilities(p, message):
    with pytest.raises(ValueError, match=message):
        ExactMI().estimate([0, 1, 2, 3], [0, 0, 1, 1], p=p)


def test_exact_rejects_mismatched_stacks():
    with pytest.raises(ValueError, match=r"same number of tables on each side, got x: 2, y: 3"):
        ExactMI().estimate_batch(torch.zeros(2, 5, 1), torch.zeros(3, 5, 1))
    with pytest.raises(ValueError, match=r"y must be 1-D or 2-D \(estimate_batch"):
        ExactMI().estimate(torch.zeros(5, 1), torch.zeros(3, 5, 1))


def test_default_estimate_batch_loops_over_networks():
    t = torch.from_numpy(np.random.default_rng(3).integers(0, 3, size=(3, 200, 1)))
    y = t[0, :, 0] % 2
    got = DiscreteMI().estimate_batch(t, y)
    assert [r.value for r in got] == [DiscreteMI().estimate(u, y).value for u in t]


def test_a_batch_of_weightings_is_one_estimate_per_p():
    rng = np.random.default_rng(4)
    t, y = rng.integers(0, 3, 300), rng.integers(0, 2, 300)
    ps = rng.dirichlet(np.ones(300), size=3)
    got = ExactMI().estimate_batch(t, y, p=ps)
    assert [r.value for r in got] == pytest.approx([ExactMI().estimate(t, y, p=q).value for q in ps], abs=1e-12)
    with pytest.raises(ValueError, match="p was given, but discrete reads its rows as samples"):
        DiscreteMI().estimate(t, y, p=ps[0])


# --------------------------------------------------------------------------- the data-processing inequality, exactly
@pytest.mark.parametrize("activation, bits", [("tanh", 8), ("relu", 8), ("tanh", 4), ("relu", 4)])
def test_each_quantized_layer_is_a_function_of_the_previous_one(szt, activation, bits, device):
    # On the device of the run: the network, its layers and the exact estimator (which follows its data)
    d = szt[0].to(device)
    net = _trained(activation, bits, seeds=(0, 1, 2), epochs=5, szt_data=szt, device=device)
    with torch.no_grad():
        layers = net.layers(d.x)
    ids = torch.arange(d.x.shape[0], device=device)
    est = ExactMI()
    h = [[r.value for r in est.estimate_batch(t, ids)] for t in layers]
    i_ty = [[r.value for r in est.estimate_batch(t, d.y)] for t in layers]
    for s in range(net.n_models):
        for lo, hi in zip(layers[:-1], layers[1:]):
            step = est.estimate(lo[s], hi[s])
            assert step.diagnostics["y_function_of_x"]  # T_{l+1} is a function of T_l: exact DPI
        for l in range(len(layers) - 1):
            assert h[l + 1][s] <= h[l][s] + 1e-12
            assert i_ty[l + 1][s] <= i_ty[l][s] + 1e-12
    assert max(v for row in i_ty for v in row) <= szt[0].h_y + 1e-12


def test_information_plane_stacked_path_equals_per_network(szt):
    d = szt[0]
    net = _trained("relu", 8, seeds=(0, 1), epochs=2, szt_data=szt)
    plane = InformationPlane(d.x, d.y, {"exact": ExactMI()}, epochs=[0])
    plane.on_epoch_end(type("S", (), {"epoch": 0, "model": net})())
    with torch.no_grad():
        layers = net.layers(d.x)
    for s, seed in enumerate(net.seeds):
        want = layer_information([t[s] for t in layers], torch.arange(4096), d.y, {"exact": ExactMI()})
        got = sorted((r for r in plane.records if r["model"] == seed), key=lambda r: r["layer"])
        for key in ("i_xt", "i_ty"):
            assert [r[key] for r in got] == pytest.approx([r[key] for r in want], abs=1e-12)


def test_exact_and_quantized_network_on_the_device(szt, device, on_device):
    d = szt[0]
    net = MLP(SZT_WIDTHS, "relu", seeds=[0, 1], bits=8, device=device)
    net.eval()
    with torch.no_grad():
        layers = net.layers(d.x.to(device))
        cpu_layers = MLP(SZT_WIDTHS, "relu", seeds=[0, 1], bits=8).eval().layers(d.x)
    on_device(net, layers)
    est = ExactMI()
    for g, c in zip(layers, cpu_layers):
        dev = [r.value for r in est.estimate_batch(g, d.y.to(device))]
        cpu = [r.value for r in est.estimate_batch(c, d.y)]
        # CUDA's float rounding can move a few of the 4096 inputs across a level: 0.02 nats (one input moving
        # between two codes changes I by about ln(4096) / 4096 = 0.002 nats); the same device gives the same codes
        assert dev == pytest.approx(cpu, abs=0.02 if device.type == "cuda" else 1e-12)


# ------------------------------------------------------------------------ the quantizers of Lorenzen et al.'s code
def test_lorenzen_scheme_tanh_uses_the_batch_range_and_float_hidden_weights(szt):
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], bits=4, scheme="lorenzen", init="glorot_uniform").eval()
    assert all(net._weight(i) is net.weights[i] for i in range(len(net.weights) - 1))  # hidden weights in float
    assert torch.unique(net._weight(len(net.weights) - 1)[0]).numel() <= 16  # the output layer's are rounded
    x = szt[0].x
    with torch.no_grad():
        t1 = net.layers(x)[0]
        z = torch.tanh(torch.baddbmm(net.biases[0], x.expand(2, *x.shape), net.weights[0]))
    for s in range(2):  # 2**bits levels between this batch's min and max, per network
        lo, hi = z[s].min(), z[s].max()
        k = (t1[s] - lo) / (hi - lo) * 15
        assert torch.allclose(k, k.round(), atol=1e-4) and t1[s].min() == lo and torch.isclose(t1[s].max(), hi)
    with torch.no_grad():  # another batch, another range: a layer is a function of the inputs passed together
        assert not torch.equal(net.layers(x[:100])[0], t1[:, :100])


def test_lorenzen_scheme_relu_ranges_start_at_tensorflows_and_weights_are_asymmetric():
    net = MLP((12, 10, 2), "relu", seeds=[0], bits=4, scheme="lorenzen")
    assert net.ranges["0"].lo.item() == -6.0 and net.ranges["0"].hi.item() == 6.0
    w, raw = net._weight(0)[0], net.weights[0][0]
    assert torch.unique(w).numel() <= 16
    assert torch.isclose(w.min(), raw.min()) and torch.isclose(w.max(), raw.max())  # the ends are levels
    net.train()
    net(torch.rand(64, 12))
    assert -6.0 < net.ranges["0"].lo.item() < 0 and net.ranges["0"].hi.item() < 6.0  # moved towards the batch
    with torch.no_grad():  # the output is the softmax rounded to the output range's 2**bits levels
        p, out = net.layers(torch.rand(64, 12))[-1], net.ranges["1"]
    k = (p.clamp_min(1e-7) - out.lo) / (out.hi - out.lo) * 15
    assert torch.allclose(k[p > 1e-6], k[p > 1e-6].round(), atol=1e-3)


def test_lorenzen_scheme_trains_and_bad_schemes_are_refused(szt):
    data, tr, te = szt
    net = MLP(SZT_WIDTHS, "relu", seeds=[1000], bits=8, scheme="lorenzen", init="glorot_uniform")
    state = fit(net, (data.x[tr], data.y[tr]), epochs=30, batch_size=256, lr=3e-3)
    assert state.losses[-1] < state.losses[0]
    with pytest.raises(ValueError, match="scheme must be one of"):
        MLP(SZT_WIDTHS, bits=8, scheme="tf")


def test_nearest_rounding_binning_is_lorenzens_quantized_estimator():
    # (v - min) * 2**b / (max - min), rounded: 2**b + 1 levels (papers.md section 2)
    from ibcore.estimators import Binning
    from ibcore.estimators.binning import bin_codes

    v = torch.tensor([[0.0], [0.124], [0.126], [0.5], [1.0]])
    assert bin_codes(v, n_bins=4, rounding="nearest").flatten().tolist() == [0, 0, 1, 2, 4]
    assert bin_codes(v, n_bins=4).flatten().tolist() == [0, 0, 0, 2, 3]
    t = torch.linspace(0, 1, 17)[:, None]
    assert Binning(n_bins=16, rounding="nearest").estimate(t, torch.arange(17)).value == pytest.approx(math.log(17))
    with pytest.raises(ValueError, match="rounding must be one of"):
        Binning(rounding="up").estimate(t, torch.arange(17))
