"""GradientStats against the minibatch gradients themselves, and the drift/diffusion boundary on made-up records."""
import math

import numpy as np
import pytest
import torch

from ibcore.nets import MLP
from ibcore.sgd import GradientStats, snr_boundary, weight_parameters
from ibcore.training import fit


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("seeds", [[3], [0, 1, 2]])
def test_norms_equal_those_of_the_stored_gradients(seeds):
    net = MLP((5, 4, 3, 2), "tanh", seeds=seeds)
    stats = GradientStats(net, epochs=[1, 3])
    seen = []  # every minibatch gradient of every layer, kept by a second hook: the slow reference
    keep = lambda m: seen.append([p.grad.detach().clone().double() for p in weight_parameters(m).values()])
    fit(net, _data(), epochs=3, batch_size=20, lr=1e-2, callbacks=[stats], after_step=[stats.hook, keep])
    per_epoch = len(seen) // 3
    assert per_epoch == 5 and {r["batches"] for r in stats.records} == {5}
    for epoch in (1, 3):
        grads = seen[(epoch - 1) * per_epoch : epoch * per_epoch]
        for layer in (1, 2, 3):
            g = np.stack([step[layer - 1].numpy() for step in grads])  # (B, [S,] in, out)
            if len(seeds) == 1:
                g = g[:, None]
            for net_i in range(len(seeds)):
                gi = g[:, net_i].reshape(per_epoch, -1)
                (r,) = [r for r in stats.records if (r["epoch"], r["layer"], r["network"]) == (epoch, layer, net_i)]
                assert r["mean_norm"] == pytest.approx(np.linalg.norm(gi.mean(0)), rel=1e-10)
                assert r["std_norm"] == pytest.approx(np.linalg.norm(gi.std(0, ddof=1)), rel=1e-10)
                assert r["snr"] == pytest.approx(r["mean_norm"] / r["std_norm"], rel=1e-12)
    assert {r["epoch"] for r in stats.records} == {1, 3}


def test_records_survive_a_checkpointed_restart(tmp_path):
    def run(epochs):
        net = MLP((5, 3, 2), "tanh", seeds=[0, 1])
        stats = GradientStats(net)
        fit(net, _data(), epochs=epochs, batch_size=32, lr=1e-2, callbacks=[stats], after_step=[stats.hook],
            checkpoint=tmp_path / "run.ckpt", checkpoint_every=1)
        return stats.records

    once = run(4)
    (tmp_path / "run.ckpt").unlink()
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 3, after the checkpoint of epoch 2
        net = MLP((5, 3, 2), "tanh", seeds=[0, 1])
        stats = GradientStats(net)

        def hook_then_kill(m, calls=[0]):  # 3 steps per epoch: killed in the middle of epoch 3
            stats.hook(m)
            calls[0] += 1
            if calls[0] == 8:
                raise KeyboardInterrupt

        fit(net, _data(), epochs=4, batch_size=32, lr=1e-2, callbacks=[stats], after_step=[hook_then_kill],
            checkpoint=tmp_path / "run.ckpt", checkpoint_every=1)
    assert run(4) == once


def test_one_minibatch_per_epoch_is_refused():
    net = MLP((5, 3, 2), "tanh", seeds=[0])
    stats = GradientStats(net)
    with pytest.raises(ValueError, match="at least two minibatches"):
        fit(net, _data(), epochs=1, batch_size=500, lr=1e-2, callbacks=[stats], after_step=[stats.hook])


def test_stacked_layers_must_lead_with_the_networks():
    net = MLP((5, 3, 2), "tanh", seeds=[0, 1])
    with pytest.raises(ValueError, match="n_models"):
        GradientStats(net, layers={1: torch.nn.Parameter(torch.zeros(3, 5))})


def _records(snrs):
    return [{"epoch": e, "layer": 1, "network": n, "snr": s} for e, row in snrs.items() for n, s in enumerate(row)]


def test_snr_boundary():
    assert snr_boundary(_records({1: [9, 11], 10: [3, 2], 100: [0.5, 0.4], 1000: [0.2, 0.1]}), layer=1) == 100
    # a dip below one that recovers is not the boundary; the geometric mean over networks decides
    assert snr_boundary(_records({1: [9, 9], 10: [0.5, 0.5], 100: [4, 0.5], 1000: [0.2, 4]}), layer=1) == 1000
    assert snr_boundary(_records({1: [9, 9], 10: [0.5, 0.5], 100: [3, 2]}), layer=1) is None
    with pytest.raises(ValueError, match="layer 2"):
        snr_boundary(_records({1: [1, 1]}), layer=2)
