"""Networks, the training loop, and information-plane tracking."""

import math

import pytest
import torch

from ibcore.data import szt_dataset, szt_split
from ibcore.estimators import Binning, DiscreteMI
from ibcore.infoplane import InformationPlane, aggregate, layer_information, load_records, save_records, select
from ibcore.nets import MLP, SZT_WIDTHS
from ibcore.training import Callback, Metrics, fit, log_epochs


@pytest.fixture(scope="module")
def szt():
    d = szt_dataset()
    tr, te = szt_split()
    return d, tr, te


def test_mlp_shapes_and_seeded_init(device, on_device):
    a = MLP(SZT_WIDTHS, "tanh", seeds=[3, 4], device=device)
    b = MLP(SZT_WIDTHS, "tanh", seeds=[4], device=device)
    on_device(a, b)
    assert torch.equal(a.weights[0][1], b.weights[0][0])  # model s is initialised from its own seed
    assert not torch.equal(a.weights[0][0], a.weights[0][1])
    # the initialisation is drawn on the CPU: the same weights on every device
    assert torch.equal(a.weights[0].cpu(), MLP(SZT_WIDTHS, "tanh", seeds=[3, 4]).weights[0].detach())
    x = torch.rand(7, 12).to(device)
    assert a(x).shape == (2, 7, 2)
    assert a(torch.rand(2, 7, 12).to(device)).shape == (2, 7, 2)
    layers = a.layers(x)
    on_device(layers)
    assert [t.shape for t in layers] == [(2, 7, w) for w in SZT_WIDTHS[1:]]
    assert torch.allclose(layers[-1].sum(-1), torch.ones(2, 7, device=device))


def test_truncated_normal_init_has_the_ids_scale():
    net = MLP((400, 300, 2), "tanh", seeds=[0])
    w = net.weights[0][0]
    assert w.abs().max() <= 2 / math.sqrt(400) + 1e-6
    # std of a normal truncated at two std is 0.880 of the untruncated one
    assert w.std().item() == pytest.approx(0.880 / math.sqrt(400), rel=0.03)
    assert net.biases[0].abs().max() == 0


def test_torch_default_init_is_uniform_on_one_over_sqrt_fan_in_for_weights_and_biases():
    net = MLP((400, 300, 2), "tanh", seeds=[0, 1], init="torch_default")
    w, b = net.weights[0], net.biases[0]
    bound = 1 / math.sqrt(400)
    assert w.abs().max() <= bound and b.abs().max() <= bound
    assert w[0].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)  # uniform: std = bound / sqrt(3)
    assert b[0].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    assert not torch.equal(w[0], w[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"widths": (3,)}, "widths"),
        ({"activation": "gelu"}, "activation"),
        ({"init": "he"}, "init"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs, message):
    args = {"widths": (3, 2)} | kwargs
    with pytest.raises(ValueError, match=message):
        MLP(args.pop("widths"), **args)


def test_stacked_training_equals_separate_training(szt, device):
    # Tolerance (atol 2e-5, rtol 1e-4): a batched float32 matrix product for 2 networks may round differently from
    # one for a single network (on CUDA the kernel can depend on the batch count); 30 Adam steps at lr 1e-3 keep
    # such differences orders of magnitude below it.
    d, tr, _ = szt
    data = (d.x[tr].to(device), d.y[tr].to(device))
    stacked = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], device=device)
    fit(stacked, data, epochs=3, batch_size=256, lr=1e-3, seed=5)
    for s, seed in enumerate([0, 1]):
        alone = MLP(SZT_WIDTHS, "tanh", seeds=[seed], device=device)
        fit(alone, data, epochs=3, batch_size=256, lr=1e-3, seed=5)
        for w_stacked, w_alone in zip(stacked.weights, alone.weights):
            torch.testing.assert_close(w_stacked[s], w_alone[0], atol=2e-5, rtol=1e-4)


def test_training_learns_the_szt_task(szt, device, on_device):
    d, tr, te = szt
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], device=device)
    metrics = Metrics({"test": (d.x[te].to(device), d.y[te].to(device))}, epochs=[0, 300])
    state = fit(net, (d.x[tr].to(device), d.y[tr].to(device)), epochs=300, batch_size=256, lr=4e-3,
                callbacks=[metrics])  # fmt: skip
    on_device(net)
    acc = {(r["epoch"], r["model"]): r["accuracy"] for r in metrics.records}
    assert state.epoch == 300 and len(state.losses) == 300 and state.losses[-1] < state.losses[0]
    # Above the 87.5% accuracy of the bit-count rule w >= 6 (papers.md section 0) after a short, fast run.
    assert min(acc[(300, 0)], acc[(300, 1)]) > 0.875, acc


def test_interrupt_keeps_finished_records(szt, device):
    d, tr, _ = szt
    d = d.to(device)

    class Interrupt(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    metrics = Metrics({"train": (d.x[tr], d.y[tr])})
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0], device=device)
    state = fit(net, (d.x[tr], d.y[tr]), epochs=5, batch_size=512, lr=1e-3, callbacks=[metrics, Interrupt()],
                reraise_interrupt=False)  # fmt: skip
    assert state.interrupted and state.epoch == 2
    assert [r["epoch"] for r in metrics.records] == [0, 1, 2]
    with pytest.raises(KeyboardInterrupt):
        fit(net, (d.x[tr], d.y[tr]), epochs=5, batch_size=512, lr=1e-3, callbacks=[Interrupt()])


def test_early_stop_flag_stops_training(szt, device):
    d, tr, _ = szt

    class StopAt3(Callback):
        def on_epoch_end(self, state):
            state.stop = state.epoch == 3

    state = fit(MLP(SZT_WIDTHS, seeds=[0], device=device), (d.x[tr].to(device), d.y[tr].to(device)), epochs=10,
                batch_size=512, lr=1e-3, callbacks=[StopAt3()])  # fmt: skip
    assert state.epoch == 3


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_keeps_the_model_and_the_optimiser_state_on_the_device(device, on_device, monkeypatch, optimizer):
    # Parameters, gradients and the optimiser's state (Adam's moments and step counts) stay where the model is;
    # Adam takes the fused kernel on the CPU and on CUDA. The optimiser is caught as fit builds it.
    built = []
    for name in ("Adam", "SGD"):
        cls = getattr(torch.optim, name)
        monkeypatch.setattr(torch.optim, name, lambda *a, _cls=cls, **kw: built.append(_cls(*a, **kw)) or built[-1])
    net = MLP((6, 5, 3), "relu", seeds=[0, 1], bits=8, device=device)  # quantized: running-range buffers too
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g).to(device), (torch.arange(40) % 3).to(device)
    state = fit(net, (x, y), epochs=2, batch_size=16, lr=1e-2, optimizer=optimizer)
    (opt,) = built
    on_device(net, opt, [p.grad for p in net.parameters() if p.grad is not None])
    assert len(opt.state) == (len(list(net.parameters())) if optimizer == "adam" else 0)
    if optimizer == "adam":
        assert opt.defaults["fused"] is True
    assert len(state.losses) == 2 and all(math.isfinite(v) for v in state.losses)
    with torch.no_grad():
        on_device(net(x), net.layers(x))


def test_fit_does_not_sync_with_the_host_inside_an_epoch(device, host_syncs):
    # Twice the steps per epoch, the same host syncs; twice the epochs, at most two more per epoch: the epoch's
    # minibatch order copied to the device and its mean loss read back (to check for divergence), by design.
    host_syncs.require()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 12, generator=g).to(device), (torch.arange(256) % 2).to(device)
    for kw in [{}, {"bits": 8}, {"noise_std": 0.1}]:
        net = MLP(SZT_WIDTHS, "relu", seeds=[0, 1], device=device, **kw)

        def run(epochs, batch):
            return host_syncs(lambda: fit(net, (x, y), epochs=epochs, batch_size=batch, lr=1e-3))

        base = run(2, 64)
        assert run(2, 32) == base, kw  # 4 vs 8 steps per epoch
        assert run(4, 64) - base <= 2 * 2, kw  # 2 more epochs


@pytest.mark.parametrize(
    "kwargs, message",
    [({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"),
     ({"optimizer": "lbfgs"}, "optimizer")],
)  # fmt: skip
def test_fit_rejects_bad_arguments(kwargs, message):
    args = {"epochs": 1, "batch_size": 4, "lr": 1e-3} | kwargs
    with pytest.raises(ValueError, match=message):
        fit(MLP((3, 2)), (torch.rand(8, 3), torch.zeros(8, dtype=torch.long)), **args)


def test_log_epochs():
    e = log_epochs(8000, 60)
    assert e[0] == 0 and e[-1] == 8000 and e == sorted(set(e)) and 40 <= len(e) <= 61
    ratios = [b / a for a, b in zip(e[10:], e[11:])]
    assert max(ratios) / min(ratios) < 1.5  # log-spaced past the first few integers


def test_information_plane_obeys_exact_bounds(szt, device):
    d, tr, _ = szt
    d = d.to(device)
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1], device=device)
    plane = InformationPlane(d.x, d.y, {"30": Binning(n_bins=30, bounds=(-1, 1))}, epochs=[0, 5])
    fit(net, (d.x[tr], d.y[tr]), epochs=5, batch_size=512, lr=1e-3, callbacks=[plane])
    assert len(plane.records) == 2 * 2 * 6
    h_x, i_xy = math.log(4096), d.mi_xy
    for r in plane.records:
        # I(X;Bin(T)) <= H(X) and, by the data-processing inequality, I(Bin(T);Y) <= I(X;Y).
        assert 0 <= r["i_xt"] <= h_x + 1e-9 and -1e-12 <= r["i_ty"] <= i_xy + 1e-9
    # The records agree with measuring the layers directly.
    with torch.no_grad():
        layers = [t[1] for t in net.layers(d.x)]
    direct = layer_information(layers, torch.arange(4096, device=device), d.y,
                               {"30": Binning(n_bins=30, bounds=(-1, 1))})  # fmt: skip
    recorded = select(plane.records, epoch=5, model=1)
    assert [r["i_xt"] for r in recorded] == [r["i_xt"] for r in direct]


def test_shared_bounds_bin_every_layer_on_one_range():
    layers = [torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.tensor([[0.0], [0.1], [0.2], [0.3]])]
    ids, y = torch.arange(4), torch.tensor([0, 0, 1, 1])
    est = {"2 bins": Binning(n_bins=2)}
    own = layer_information(layers, ids, y, est)
    shared = layer_information(layers, ids, y, est, shared_bounds=True)
    assert own[1]["i_xt"] == pytest.approx(math.log(2))  # own range: two bins of two points
    assert shared[1]["i_xt"] == pytest.approx(0.0)  # range [0, 3]: all of layer 2 falls in the first bin


def test_aggregate_and_records_round_trip(tmp_path):
    recs = [{"epoch": 1, "layer": 1, "model": m, "i_xt": float(m)} for m in range(3)]
    agg = aggregate(recs, "i_xt", by=("layer",))
    assert agg[(1,)] == {"mean": 1.0, "std": 1.0, "n": 3}
    path = tmp_path / "sub" / "records.json"
    save_records(recs, path)
    assert load_records(path) == recs
    assert [p.name for p in path.parent.iterdir()] == ["records.json"]  # no temporary file left behind


def test_discrete_mi_of_quantized_layers_matches_binning_of_their_codes(szt):
    # A layer that takes finitely many values is its own bin pattern: both estimators agree exactly.
    d, _, _ = szt
    t = torch.round(torch.tanh(d.x @ torch.randn(12, 3, generator=torch.Generator().manual_seed(0))) * 4) / 4
    ids = torch.arange(4096)
    assert DiscreteMI().estimate(ids, t).value == pytest.approx(
        Binning(bin_width=0.25, bounds=(-1.125, 1.125)).estimate(ids, t).value, abs=1e-12
    )


def test_compression_needs_a_drop_beyond_the_spread_over_networks():
    from ibcore.infoplane import compression

    def recs(final_values):
        rows = [{"estimator": "b", "layer": 1, "epoch": 0, "model": m, "i_xt": 2.0} for m in range(3)]
        return rows + [{"estimator": "b", "layer": 1, "epoch": 9, "model": m, "i_xt": v}
                       for m, v in enumerate(final_values)]  # fmt: skip

    # mean final 1.9, std 1.0 over 3 networks: a drop of 0.1 is inside 2 standard errors (1.15)
    assert not compression(recs([0.9, 1.9, 2.9]), estimator="b", layer=1)["compresses"]
    # the same drop with little spread is compression
    assert compression(recs([1.89, 1.9, 1.91]), estimator="b", layer=1)["compresses"]
    with pytest.raises(ValueError, match="no records"):
        compression(recs([1.0]), estimator="b", layer=2)
