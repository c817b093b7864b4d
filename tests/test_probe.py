"""Layer taps and the Probe on any nn.Module (issue 20): torchvision-style ResNet, a transformer encoder, hooks
removed, fit and a hand-written loop giving the same table, capability checks, sample propagation through noise
layers, compressors fitted once or at every step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ibcore.estimators import (KSG, PCA, Binning, ClassMI, EntropyMI, IncrementalPCA, SamplePropagation)  # fmt: skip
from ibcore.nets import GaussianNoise, resnet18, small_resnet
from ibcore.probe import Probe, measure
from ibcore.taps import LayerTaps, default_layers, pool_output, resolve_layers
from ibcore.training import Minibatches, classification_objective, fit


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def images(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long() + 2 * (x[:, 0, :, :14].mean((1, 2)) > 0.5)
    return x, y


def two_pairs():
    return {"10 bins": Binning(n_bins=10), "pca+knn": (EntropyMI(k=5), ClassMI(k=3))}


def test_resnet18_two_layers_two_pairs_hooks_removed():
    net = resnet18(in_channels=1, n_classes=4, seed=0)
    x, y = images()
    codes = PCA(4).fit(x).transform(x)
    rows = measure(net, x, y, two_pairs(), layers=["layer2.1.relu", "layer4.1.relu"], x_ids=codes, pool="mean",
                   compressor=PCA(3), batch_size=40)  # fmt: skip
    assert no_hooks(net)
    assert {(r["module"], r["estimator"]) for r in rows} == {
        (m, e) for m in ("layer2.1.relu", "layer4.1.relu") for e in ("10 bins", "pca+knn")}
    for r in rows:
        assert r["dims"] == 3 and r["pool"] == "mean" and r["compressor"].startswith("PCA(3")
        assert math.isfinite(r["i_xt"]) and math.isfinite(r["i_ty"])
        assert r["i_ty"] <= math.log(4) + 0.3  # H(Y) <= ln 4 for four classes, up to the k-NN estimate's error
    widths = {r["module"]: r["width"] for r in rows}
    assert widths == {"layer2.1.relu": 128 * 4 * 4, "layer4.1.relu": 512 * 1 * 1}  # 28 -> 7 (stem) -> 4 -> 2 -> 1


def test_transformer_encoder_taps():
    torch.manual_seed(0)  # the test's own seed for nn's default initialisation (not library code)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True, dropout=0.1)
    net = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 6, 16, generator=g)
    y = (x[:, :, 0].mean(1) > 0).long()
    codes = x.mean(1)[:, :3]
    assert resolve_layers(net, "layers.*.norm2") == ["layers.0.norm2", "layers.1.norm2"]
    rows = measure(net, x, y, two_pairs(), layers="layers.?", x_ids=codes, pool="mean", compressor=PCA(3))
    assert no_hooks(net) and net.training  # measured in eval mode, its training mode restored
    assert sorted({r["module"] for r in rows}) == ["layers.0", "layers.1"]
    assert all(r["width"] == 6 * 16 and r["dims"] == 3 for r in rows)


def test_hooks_removed_and_modes_restored_on_error():
    net = small_resnet(seed=0)
    net.train()
    with pytest.raises(RuntimeError):
        with LayerTaps(net, "layer1.0.relu") as taps:
            taps.run(torch.zeros(4, 3, 28, 28))  # three channels into a one-channel stem
    assert no_hooks(net) and net.training and all(m.training for m in net.modules())


def test_train_mode_keeps_batch_norm_statistics():
    net = small_resnet(seed=0, noise_std=0.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    with LayerTaps(net, "layer1.0.relu", mode="train") as taps:
        assert net.training and not net.bn1.training
        taps.run(images(16)[0])
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_default_layers_skip_pass_through_modules():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.ReLU(), GaussianNoise(0.1), nn.Flatten(), nn.Linear(4, 2))
    assert default_layers(net) == ["0", "2", "5"]
    with pytest.raises(ValueError, match="'nope'"):
        resolve_layers(net, ["0", "nope"])


def test_pool_output_shapes_and_errors():
    maps, tokens = torch.randn(5, 3, 8, 8), torch.randn(5, 7, 4)
    assert pool_output(maps, "mean").shape == (5, 3) and pool_output(maps, "max").shape == (5, 3)
    assert pool_output(maps, 2).shape == (5, 12) and pool_output(maps).shape == (5, 192)
    assert torch.allclose(pool_output(maps, "mean"), maps.mean((2, 3)))
    assert pool_output(tokens, "mean").shape == (5, 4) and pool_output(tokens, 7).shape == (5, 28)
    with pytest.raises(ValueError, match="pool"):
        pool_output(maps, "median")
    with pytest.raises(ValueError, match="pool function"):
        pool_output(maps, lambda t: t)


def mlp():
    g = torch.Generator().manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net


def test_fit_and_hand_written_loop_give_identical_tables():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 1).long()
    make = lambda: Probe(x, y, {"bins": Binning(n_bins=12), "pca+knn": (KSG(k=3), ClassMI(k=3))},  # noqa: E731
                         layers=["1", "3", "4"], x_ids=x[:, :2], compressor=PCA(2), refit="each", at=[0, 1, 4, 8])
    a, probe_a = mlp(), make()
    fit(a, (x, y), epochs=8, batch_size=32, lr=1e-2, seed=3, callbacks=[probe_a])

    b, probe_b = mlp(), make()
    opt = torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)  # what fit uses on the CPU
    order = Minibatches(b, len(x), batch_size=32, seed=3)
    probe_b(b, 0)
    b.train()
    for epoch in range(1, 9):
        for idx in order.epoch():
            loss = classification_objective(b, x[idx[0]], y[idx[0]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        probe_b(b, epoch)
    assert len(probe_a.records) == 4 * 3 * 2
    assert probe_a.records == probe_b.records
    assert {r["compressor_fitted_at"] for r in probe_a.records} == {0, 1, 4, 8}


def test_compressor_fitted_once_is_kept_and_recorded():
    x, y = images(64)
    net = small_resnet(seed=1)
    probe = Probe(x, y, {"bins": Binning(n_bins=8)}, layers=["layer3.0.relu"], pool="flatten",
                  compressor=IncrementalPCA(3, batch_size=16), batch_size=16)  # fmt: skip
    probe(net, 0)
    probe(net, 5)
    assert [r["compressor_fitted_at"] for r in probe.records] == [0, 0]
    (comp, at), = probe.fitted.values()
    assert at == 0 and comp.n_seen == 64 and comp.axes.shape == (64 * 7 * 7, 3)
    assert probe.records[0]["dims"] == 3 and probe.records[0]["width"] == 64 * 7 * 7
    with pytest.raises(ValueError, match="checkpointed"):
        probe.state_dict()


def test_capabilities_checked():
    x, y = images(64)
    net = small_resnet(seed=0)
    codes = PCA(3).fit(x).transform(x)
    with pytest.raises(ValueError, match=r"at most 32 dimensions.*'layer2.0.relu' gives it 6272.*PCA\("):
        measure(net, x, y, {"knn": (EntropyMI(), ClassMI())}, layers="layer2.0.relu", x_ids=codes)
    with pytest.raises(ValueError, match="input ids"):
        Probe(x, y, {"ksg": KSG()}, layers="fc")
    with pytest.raises(ValueError, match="GaussianNoise"):
        measure(net, x, y, {"sp": SamplePropagation()}, layers="layer1.0.relu")
    with pytest.raises(ValueError, match="every must be"):
        Probe(x, y, {"bins": Binning(n_bins=4)}, every=0)
    with pytest.raises(ValueError, match="x and y"):
        Probe(x, y[:5], {"bins": Binning(n_bins=4)})


def test_sample_propagation_through_noise_layers_equals_direct_centres():
    def net():
        lin1, lin2 = nn.Linear(3, 5), nn.Linear(5, 4)
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for p in [*lin1.parameters(), *lin2.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g))
        return nn.Sequential(lin1, nn.Tanh(), GaussianNoise(0.2, seed=1), lin2, nn.Tanh(), GaussianNoise(0.2, seed=2))

    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 3, generator=g)
    y = (x[:, 0] > 0.5).long()
    sp = SamplePropagation(noise_std=0.2, n_mc=2000, seed=4)
    rows = measure(net(), x, y, {"sp": sp}, layers="*", replicas=3)
    assert [r["module"] for r in rows] == ["2", "5"]

    direct = net()
    xr = x.repeat_interleave(3, dim=0)
    with torch.no_grad():
        c1 = direct[1](direct[0](xr))
        c2 = direct[4](direct[3](direct[2](c1)))
    ids, labels = torch.arange(40).repeat_interleave(3), y.repeat_interleave(3)
    for r, c in zip(rows, (c1, c2)):
        a, b = sp.estimate_batch(c, [ids, labels])
        assert (r["i_xt"], r["i_ty"]) == pytest.approx((a.value, b.value), rel=1e-12, abs=1e-12)


def test_mean_pooled_noise_is_given_to_sample_propagation():
    net = small_resnet(seed=0, noise_std=0.5)
    x, y = images(24)
    probe = Probe(x, y, {"sp": SamplePropagation(noise_std=0.5, n_mc=200)}, layers="layer4.0.noise", pool="mean",
                  details=True)  # fmt: skip
    (r,) = probe.measure(net)
    # a 128 x 4 x 4 map averaged over 16 positions: the noise of each pooled unit has std 0.5 / 4 (closed form)
    assert r["estimates"]["i_xt"]["params"]["noise_std"] == pytest.approx(0.125)
    assert r["i_xt"] <= math.log(24) + 1e-9  # I(X;T) <= H(X) = ln N for N equiprobable inputs
    with pytest.raises(ValueError, match="max"):
        Probe(x, y, {"sp": SamplePropagation(noise_std=0.5)}, layers="layer4.0.noise", pool="max").measure(net)


def test_exact_mi_of_a_quantized_layer_and_a_flow_on_a_compressed_one():
    from ibcore.estimators import MIENF, ExactMI
    from ibcore.quantization import fake_quantize

    class Quantize(nn.Module):  # a user's own 4-level quantizer of a tanh layer
        def forward(self, v):
            return fake_quantize(v, -1.0, 1.0, 4)

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 3, generator=g)
    y = (x.sum(1) > 1.5).long()
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), Quantize(), nn.Linear(3, 2))
    (r,) = measure(net, x, y, {"exact": ExactMI()}, layers="2")
    # the exact plug-in over the probe population: I(X;T) = H(T) (T a function of X), by counting the symbols
    _, counts = torch.unique(fake_quantize(torch.tanh(net[0](x)), -1.0, 1.0, 4).detach(), dim=0, return_counts=True)
    p = counts.double() / 300
    assert r["i_xt"] == pytest.approx(float(-(p * p.log()).sum()), abs=1e-12)
    assert r["i_ty"] <= math.log(2) + 1e-12

    flow = MIENF(epochs=3, batch_size=128, seed=0)
    (f,) = measure(net, x, y, {"flow": (flow, ClassMI(k=3))}, layers="1", x_ids=x[:, :2])
    assert math.isfinite(f["i_xt"]) and f["dims"] == 3
