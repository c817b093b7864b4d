"""Noisy networks (Goldfeld et al., ICML 2019): the noise, its switch, and sample-propagation centres."""

import math

import pytest
import torch

from ibcore.estimators import SamplePropagation
from ibcore.nets import MLP, SZT_WIDTHS


def test_noise_is_added_after_every_hidden_layer_and_the_switch_turns_it_off(device, on_device):
    x = torch.rand(2000, 12).to(device)
    noisy = MLP(SZT_WIDTHS, "tanh", seeds=[3], noise_std=0.05, device=device)
    clean = MLP(SZT_WIDTHS, "tanh", seeds=[3], device=device)
    with torch.no_grad():
        t1 = noisy.layers(x)[0]
        on_device(t1, noisy._noise_generator)  # the noise is drawn on the device, by the network's own generator
        assert (t1 - clean.layers(x)[0]).std().item() == pytest.approx(0.05, rel=0.05)
        assert not torch.equal(noisy.layers(x)[0], noisy.layers(x)[0])  # fresh noise every pass
        noisy.noise = False
        assert all(torch.equal(a, b) for a, b in zip(noisy.layers(x), clean.layers(x)))


def test_noise_is_reproducible_from_the_seeds(device, on_device):
    x = torch.rand(10, 12).to(device)
    a = MLP(SZT_WIDTHS, "tanh", seeds=[1, 2], noise_std=0.1, device=device)
    b = MLP(SZT_WIDTHS, "tanh", seeds=[1, 2], noise_std=0.1, device=device)
    assert torch.equal(a(x), b(x))
    on_device(a(x), a._noise_generator, b._noise_generator)


def test_centres_shapes_order_and_first_layer(device, on_device):
    x = torch.rand(5, 12).to(device)
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], noise_std=0.01, device=device)
    cs = net.centres(x, replicas=4)
    on_device(cs)
    assert [tuple(c.shape) for c in cs] == [(2, 5, 10)] + [(2, 20, w) for w in SZT_WIDTHS[2:-1]]
    net.noise = False
    clean = net.layers(x)
    assert torch.equal(cs[0], clean[0])  # layer 1: f_1(x), no noise in the centres
    # input i's replicas are rows 4i..4i+3: close to the noiseless layer at x_i (noise 0.01 through tanh layers)
    deep = cs[1].view(2, 5, 4, -1)
    assert (deep - clean[1].unsqueeze(2)).abs().max() < 0.1


def test_centres_describe_the_noisy_layer_distribution(device):
    # The mean over many noisy passes of T_2 equals the mean of its sample-propagation mixture.
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(0)).to(device)
    net = MLP((12, 6, 4, 2), "tanh", seeds=[5], noise_std=0.3, device=device)
    with torch.no_grad():
        samples = torch.stack([net.layers(x)[1][0] for _ in range(4000)])  # (4000, 3, 4)
        c = net.centres(x, replicas=4000)[1][0].view(3, 4000, 4)
    assert torch.allclose(samples.mean(0), c.mean(1), atol=0.03)
    assert torch.allclose(samples.var(0), c.var(1) + 0.3**2, atol=0.03)


@pytest.mark.parametrize("kwargs, message", [
    ({"noise_std": -0.1}, r"noise_std must be a finite number >= 0, got -0.1"),
    ({"noise_std": 0.1, "bits": 8}, "either noisy or quantized"),
])  # fmt: skip
def test_bad_noise_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(SZT_WIDTHS, "tanh", **kwargs)


def test_centres_need_noise_and_replicas():
    with pytest.raises(ValueError, match="noisy network"):
        MLP(SZT_WIDTHS, "tanh").centres(torch.rand(2, 12), 3)
    with pytest.raises(ValueError, match="replicas must be an integer >= 1, got 0"):
        MLP(SZT_WIDTHS, "tanh", noise_std=0.1).centres(torch.rand(2, 12), 0)


def test_sp_information_of_the_first_layer_falls_with_the_noise(device):
    x = torch.rand(64, 12).to(device)
    ids = torch.arange(64, device=device)
    values = []
    for sigma in (1e-4, 0.05, 1.0):
        net = MLP(SZT_WIDTHS, "tanh", seeds=[0], noise_std=sigma, device=device)
        c = net.centres(x, replicas=1)[0][0].detach()
        values.append(SamplePropagation(noise_std=sigma, n_mc=4000).estimate(c, ids).value)
    assert values[0] == pytest.approx(math.log(64), abs=1e-3)  # tiny noise: every input its own cluster
    assert values[0] > values[1] > values[2] > 0


def test_information_plane_of_a_noisy_net_records_every_hidden_layer_and_checks_the_noise(device):
    from ibcore.infoplane import InformationPlane

    x = torch.rand(32, 12, generator=torch.Generator().manual_seed(1)).to(device)
    y = (x[:, 0] > 0.5).long()
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], noise_std=0.05, device=device)
    state = type("State", (), {"epoch": 3, "model": net})()
    plane = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05, n_mc=500)}, replicas=3, epochs=[3])
    with torch.no_grad():
        plane.on_epoch_end(state)
    assert len(plane.records) == 2 * 5  # networks x hidden layers
    assert plane.kept == {}
    for r in plane.records:
        assert -4 * r["i_xt_std"] - 1e-9 <= r["i_xt"] <= math.log(32) + 4 * r["i_xt_std"] + 1e-9
        assert r["i_ty"] <= math.log(2) + 4 * r["i_ty_std"] + 1e-9
    wrong = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.1)}, replicas=3)
    with pytest.raises(ValueError, match="differs from the network's noise_std=0.05"):
        wrong.on_epoch_end(state)

    kept = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05, n_mc=500)}, replicas=3, keep=[3, 7],
                                 measures={"rows": lambda t, labels: t.shape[0] + 0 * labels.sum()})
    with torch.no_grad():
        kept.on_epoch_end(state)
    assert list(kept.kept) == [3]
    assert [r["rows"] for r in kept.records] == [32, 32] + [96] * 8  # layer by layer, both networks
    with pytest.raises(ValueError, match="must not reuse the record fields"):
        InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05)}, replicas=3, measures={"i_xt": len})
    assert all(c.device.type == "cpu" for c in kept.kept[3].values())  # kept centres are moved to the host
    assert {l: tuple(c.shape) for l, c in kept.kept[3].items()} == {1: (2, 32, 10)} | {
        l: (2, 96, w) for l, w in enumerate(SZT_WIDTHS[2:-1], start=2)}
    last = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05, n_mc=500)}, replicas=3, keep=[3], keep_layers=[5])
    with torch.no_grad():
        last.on_epoch_end(state)
    assert list(last.kept[3]) == [5] and last.kept[3][5].shape == (2, 96, 3)
    # the first propagation of each input only: rows 0, 3, 6, ... of the centres (input-major); layer 1 whole
    first = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05, n_mc=500)}, replicas=3, keep=[3],
                             keep_replicas=1)
    with torch.no_grad():
        first.on_epoch_end(state)
    assert torch.equal(first.kept[3][5], last.kept[3][5][:, ::3]) and first.kept[3][1].shape == (2, 32, 10)
    kept5 = first.kept[3][5]
    assert kept5.untyped_storage().nbytes() == kept5.numel() * kept5.element_size()  # not a view of every replica
    for bad in (0, 4, True, 1.0):
        with pytest.raises(ValueError, match="keep_replicas"):
            InformationPlane(x, y, {"sp": SamplePropagation(noise_std=0.05)}, replicas=3, keep_replicas=bad)


def test_one_plane_measures_sp_and_binning_side_by_side_as_separate_calls_do():
    from ibcore.estimators import Binning
    from ibcore.infoplane import InformationPlane

    x = torch.rand(32, 12, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0.5).long()
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], noise_std=0.05)
    sp = SamplePropagation(noise_std=0.05, n_mc=500)
    plane = InformationPlane(x, y, {"sp": sp, "bins": Binning(n_bins=30)}, replicas=2, seed=5)
    plane.on_epoch_end(type("State", (), {"epoch": 4, "model": net})())
    got = {(r["estimator"], r["model"], r["layer"]): r for r in plane.records}
    assert len(got) == 2 * 5 + 2 * 6  # SP on the hidden layers, binning on every layer with the output
    g = torch.Generator().manual_seed(5 * 1_000_003 + 4)
    with torch.no_grad():
        centres = net.centres(x, 2, generator=g)
    ids = torch.arange(32)
    for layer, c in enumerate(centres, start=1):
        r = c.shape[1] // 32
        for s, seed in enumerate(net.seeds):
            want = sp.estimate(c[s], ids.repeat_interleave(r)).value
            assert got[("sp", seed, layer)]["i_xt"] == pytest.approx(want, abs=1e-12)
    rec = got[("sp", 0, 1)]
    assert rec["estimates"]["i_xt"]["estimator"] == "sp" and rec["i_xt_std"] > 0
    assert {"seconds", "device", "warnings", "diagnostics", "params"} <= set(rec["estimates"]["i_ty"])


def test_orthonormal_update_converges_to_orthonormal_columns_and_leaves_the_last_layer(device, on_device):
    from ibcore.nets import OrthonormalUpdate

    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], device=device)
    last = net.weights[-1].detach().clone()
    step = OrthonormalUpdate(0.05)
    with torch.no_grad():
        for _ in range(2000):
            step(net)
    for w in list(net.weights)[:-1]:  # (S, fan_in, fan_out) with fan_in > fan_out: W^T W = I
        gram = w.mT @ w
        assert torch.allclose(gram, torch.eye(w.shape[-1], device=device).expand_as(gram), atol=1e-4)
    assert torch.equal(net.weights[-1], last)
    on_device(net)
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="alpha must be a positive finite number"):
            OrthonormalUpdate(bad)


def test_fit_calls_after_step_hooks_once_per_step_without_gradients(device):
    from ibcore.training import fit

    net = MLP((4, 3, 2), "tanh", seeds=[0], device=device)
    x, y = torch.randn(20, 4, generator=torch.Generator().manual_seed(0)).to(device), (torch.arange(20) % 2).to(device)
    calls = []

    def hook(model):
        calls.append(torch.is_grad_enabled())

    fit(net, (x, y), epochs=3, batch_size=8, lr=1e-2, after_step=[hook])
    assert calls == [False] * 9  # 3 epochs x 3 minibatches


def _images(n=12, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g).to(device)
    return x, (x.mean((1, 2, 3)) > 0.5).long()


def test_noisy_cnn_noise_switch_seeds_and_stacking(device, on_device):
    from ibcore.nets import NoisyCNN

    x, _ = _images(device=device)
    net = NoisyCNN((1, 8, 8), channels=(4, 4), dense=(5,), n_classes=2, seeds=[0, 1], noise_std=0.1, device=device)
    on_device(net, net(x), net.layers(x), net._noise_generator)
    assert [tuple(t.shape) for t in net.layers(x)] == [(2, 12, 64), (2, 12, 16), (2, 12, 5), (2, 12, 2)]
    assert not torch.equal(net(x), net(x))  # noise on
    net.noise = False
    assert torch.equal(net(x), net(x))
    alone = NoisyCNN((1, 8, 8), channels=(4, 4), dense=(5,), n_classes=2, seeds=[1], noise_std=0.1, device=device)
    alone.noise = False
    assert torch.allclose(net(x)[1], alone(x)[0])  # each stacked network is the network of its seed
    assert not torch.allclose(net(x)[0], net(x)[1])
    with pytest.raises(ValueError, match="too small"):
        NoisyCNN((1, 2, 2), channels=(4, 4))
    with pytest.raises(ValueError, match="noise_std"):
        NoisyCNN((1, 8, 8), noise_std=-1.0)


def test_noisy_cnn_centres_and_training_with_the_information_plane(device, on_device):
    from ibcore.infoplane import InformationPlane
    from ibcore.nets import NoisyCNN
    from ibcore.training import fit

    x, y = _images(24, device=device)
    net = NoisyCNN((1, 8, 8), channels=(4,), dense=(6,), n_classes=2, activation="tanh", seeds=[0, 1], noise_std=1e-4,
                   device=device)  # fmt: skip
    c1, c2 = net.centres(x, replicas=3)
    on_device(c1, c2)
    net.noise = False
    t1, t2, _ = net.layers(x)
    assert torch.equal(c1, t1)  # the first block: one centre per input, no noise in it
    assert c2.shape == (2, 72, 6)
    assert torch.allclose(c2.reshape(2, 24, 3, 6), t2.unsqueeze(2).expand(2, 24, 3, 6), atol=1e-3)  # input-major
    net.noise = True
    plane = InformationPlane(x, y, {"sp": SamplePropagation(noise_std=1e-4, n_mc=400)}, replicas=3, epochs=[0, 20])
    state = fit(net, (x, y), epochs=20, batch_size=8, lr=1e-2, callbacks=[plane])
    assert state.losses[-1] < state.losses[0]
    on_device(net)
    assert len(plane.records) == 2 * 2 * 2  # epochs x blocks x networks
    for r in plane.records:  # tiny noise and tanh: every input separated, I(X;T) = ln 24
        assert r["i_xt"] == pytest.approx(math.log(24), abs=0.05)


def test_noisy_cnn_leaves_the_global_generator_alone(device):
    from ibcore.nets import NoisyCNN

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    NoisyCNN((1, 8, 8), channels=(4,), dense=(5,), n_classes=2, seeds=[0, 1], noise_std=0.1, device=device)
    assert torch.equal(torch.rand(3), expected)


def test_noisy_cnn_of_butakov_et_al_shapes_relative_noise_dropout_and_log_softmax(device):
    from ibcore.nets import NoisyCNN

    kw = dict(channels=(8, 16, 32), dense=(32,), activation="leaky_relu", padding=0, seeds=[0], device=device)
    x = (torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) + 0.5).to(device)
    net = NoisyCNN((1, 28, 28), noise_std=1e-3, relative_noise=True, input_noise=True, dropout=0.1,
                   output="log_softmax", **kw)
    net.eval()
    layers = net.layers(x)
    assert [t.shape[-1] for t in layers] == [8 * 13 * 13, 16 * 5 * 5, 32, 32, 10]
    assert torch.allclose(layers[-1].exp().sum(-1), torch.ones(1, 6, device=device))  # log-probabilities
    quiet = NoisyCNN((1, 28, 28), **kw)  # same seed, no noise, no dropout
    quiet.eval()
    ref = quiet.layers(x)[0].detach()
    # multiplicative noise after the first block: t (1 + 1e-3 eps), so |t_noisy / t - 1| = 1e-3 |eps|, whose mean is
    # 1e-3 sqrt(2 / pi) (closed form) and which never reaches 1e-3 * 7 in 8112 draws
    after = NoisyCNN((1, 28, 28), noise_std=1e-3, relative_noise=True, **kw)
    after.eval()
    t1 = after.layers(x)[0].detach()
    nz = ref != 0
    rel = (t1[nz] / ref[nz] - 1).abs()
    assert float(rel.mean()) == pytest.approx(1e-3 * math.sqrt(2 / math.pi), rel=0.1)
    assert float(rel.max()) < 7e-3 and torch.equal(t1[~nz], ref[~nz])
    # dropout only in training, from the network's own generator: the same seeds give the same masks
    net.noise = False
    assert torch.equal(net(x), net(x))
    first, again = (NoisyCNN((1, 28, 28), noise_std=1e-3, relative_noise=True, dropout=0.1, **kw) for _ in "ab")
    first.noise = again.noise = False  # modules start in training mode: dropout on
    a = first(x)
    assert not torch.equal(a, first(x)) and torch.equal(a, again(x))
    with pytest.raises(ValueError, match="centres need additive noise"):
        NoisyCNN((1, 28, 28), noise_std=1e-3, relative_noise=True, **kw).centres(x, replicas=2)
    with pytest.raises(ValueError, match="too small for 3 3x3 convolutions with padding 0"):
        NoisyCNN((1, 12, 12), **kw)
    with pytest.raises(ValueError, match="dropout must be a finite number >= 0 and < 1, got 1.0"):
        NoisyCNN((1, 28, 28), dropout=1.0, **kw)
    with pytest.raises(ValueError, match="output must be 'softmax' or 'log_softmax', got 'logits'"):
        NoisyCNN((1, 28, 28), output="logits", **kw)


def test_noisy_cnn_training_does_not_sync_with_the_host_inside_an_epoch(device, host_syncs):
    # The noise and the dropout masks come from the network's generator on the device: twice the steps per epoch,
    # the same host syncs (those left are fit's two per epoch).
    from ibcore.nets import NoisyCNN
    from ibcore.training import fit

    host_syncs.require()
    x, y = _images(64, device=device)
    net = NoisyCNN((1, 8, 8), channels=(4,), dense=(6,), n_classes=2, seeds=[0, 1], noise_std=0.1,
                   relative_noise=True, input_noise=True, dropout=0.1, device=device)  # fmt: skip
    counts = [host_syncs(lambda b=b: fit(net, (x, y), epochs=2, batch_size=b, lr=1e-3)) for b in (32, 16)]
    assert counts[1] == counts[0], counts
