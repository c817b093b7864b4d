"""The two phases of stochastic gradient descent (Shwartz-Ziv & Tishby 2017, Section 4, Fig. 4).

Within one epoch the minibatch gradients g_1 ... g_B of a layer's weights W have a mean and a spread. Shwartz-Ziv &
Tishby plot, per layer and over epochs, the norm of the mean ||mean_b g_b|| and the norm of the elementwise standard
deviation ||std_b g_b|| (both divided by ||W||, which grows during training), and read two phases: a *drift* phase
in which the mean dominates (a high signal-to-noise ratio, the empirical error falls fast) and a *diffusion* phase in
which the fluctuations dominate (the SNR below one), which they tie to the start of compression.

:class:`GradientStats` collects these statistics during :func:`ibcore.training.fit`: its :meth:`GradientStats.hook`
goes into ``after_step`` (it reads every minibatch's gradient, which the optimiser step leaves in place), and the
object itself into ``callbacks`` (at the end of each recorded epoch it turns the sums into records and starts
again). :func:`snr_boundary` finds where a layer's SNR first falls below one.

References:
    Shwartz-Ziv & Tishby (2017). Opening the black box of deep neural networks via information. arXiv:1703.00810.
    Saxe et al. (2018). On the information bottleneck theory of deep learning. ICLR. (They find the same two
    phases in ReLU networks that do not compress, so the transition alone does not imply compression.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from .training import Callback, TrainState

__all__ = ["GradientStats", "snr_boundary", "weight_parameters"]


def weight_parameters(model: torch.nn.Module) -> dict[int, torch.nn.Parameter]:
    """The weight matrices of a network, numbered as its layers from 1: the parameters named ``weights.<i>``
    (:class:`ibcore.nets.MLP`) or ``<...>.weight`` with two or more dimensions (``torch.nn.Linear``, convolutions),
    in the order of ``named_parameters``."""
    found = [p for name, p in model.named_parameters()
             if p.requires_grad and (name.startswith("weights.") or (name.endswith("weight") and p.ndim >= 2))]
    if not found:
        raise ValueError("model has no weight parameters (named 'weights.<i>' or '<...>.weight'); pass layers=")
    return {i + 1: p for i, p in enumerate(found)}


class GradientStats(Callback):
    """Per layer, per stacked network, per recorded epoch: the norms of the mean and of the standard deviation of
    the minibatch gradients of the layer's weights over the epoch, and the norm of the weights at its end.

    Arguments:
        model: The network being trained (stacked networks: parameters ``(n_models, ...)``, one row of records per
            network).
        epochs: The epochs to record (``None``: every epoch). Statistics need at least two minibatches per epoch.
        layers: ``{layer: parameter}`` to follow (default :func:`weight_parameters`).

    ``records``: dicts with ``epoch``, ``layer``, ``network``, ``mean_norm`` ||mean_b g_b||, ``std_norm``
    ||std_b g_b|| (the standard deviation over the B minibatches, ddof 1), ``weight_norm`` ||W||, ``snr`` (their
    ratio mean/std) and ``batches`` B.

    Example:
        >>> from ibcore.nets import MLP
        >>> from ibcore.training import fit
        >>> net = MLP((4, 3, 2), "tanh", seeds=[0, 1])
        >>> stats = GradientStats(net, epochs=[2])
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> _ = fit(net, (x, y), epochs=2, batch_size=16, lr=1e-2, callbacks=[stats], after_step=[stats.hook])
        >>> sorted({(r["epoch"], r["layer"], r["network"]) for r in stats.records})
        [(2, 1, 0), (2, 1, 1), (2, 2, 0), (2, 2, 1)]
    """

    def __init__(self, model: torch.nn.Module, *, epochs: Iterable[int] | None = None,
                 layers: Mapping[int, torch.nn.Parameter] | None = None):  # fmt: skip
        self.layers = dict(weight_parameters(model) if layers is None else layers)
        self.n_models = int(getattr(model, "n_models", 1))
        for name, p in self.layers.items():
            if self.n_models > 1 and (p.ndim < 1 or p.shape[0] != self.n_models):
                raise ValueError(f"layer {name}: a stacked model of {self.n_models} networks needs parameters "
                                 f"(n_models, ...), got shape {tuple(p.shape)}")  # fmt: skip
        self.epochs = None if epochs is None else {int(e) for e in epochs}
        self.records: list[dict] = []
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._sum = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in self.layers.items()}
        self._sq = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in self.layers.items()}

    def hook(self, model: torch.nn.Module) -> None:
        """For ``fit(after_step=[...])``: add this minibatch's gradients to the epoch's sums."""
        for k, p in self.layers.items():
            if p.grad is None:
                raise ValueError(f"layer {k} has no gradient after the step: is it a parameter of the trained model?")
            g = p.grad.detach().double()
            self._sum[k] += g
            self._sq[k] += g * g
        self._count += 1

    def on_epoch_end(self, state: TrainState) -> None:
        b = self._count
        if state.epoch >= 1 and (self.epochs is None or state.epoch in self.epochs):
            if b < 2:
                raise ValueError(f"GradientStats needs at least two minibatches per epoch, got {b} at epoch "
                                 f"{state.epoch} (a smaller batch_size)")  # fmt: skip
            for k, p in self.layers.items():
                mean = self._sum[k] / b
                var = ((self._sq[k] - b * mean * mean) / (b - 1)).clamp_min(0.0)
                w = p.detach().double()
                rows = (mean, var.sqrt(), w) if self.n_models > 1 else (mean[None], var.sqrt()[None], w[None])
                m_norm, s_norm, w_norm = (t.reshape(t.shape[0], -1).norm(dim=1).tolist() for t in rows)
                for net in range(len(m_norm)):
                    snr = m_norm[net] / s_norm[net] if s_norm[net] > 0 else math.inf
                    self.records.append({"epoch": state.epoch, "layer": k, "network": net, "mean_norm": m_norm[net],
                                         "std_norm": s_norm[net], "weight_norm": w_norm[net], "snr": snr,
                                         "batches": b})  # fmt: skip
        self._reset()

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]
        self._reset()


def snr_boundary(records: Iterable[dict], *, layer: int) -> int | None:
    """The first recorded epoch from which the layer's SNR (the geometric mean over networks of mean/std) stays
    below one to the end: the start of the diffusion phase. ``None`` when the last recorded SNR is still >= 1."""
    by_epoch: dict[int, list[float]] = {}
    for r in records:
        if r["layer"] == layer:
            by_epoch.setdefault(r["epoch"], []).append(math.log(r["snr"]) if r["snr"] > 0 else -math.inf)
    if not by_epoch:
        raise ValueError(f"no records of layer {layer}")
    epochs = sorted(by_epoch)
    below = [sum(by_epoch[e]) / len(by_epoch[e]) < 0 for e in epochs]
    if not below[-1]:
        return None
    i = len(epochs) - 1
    while i > 0 and below[i - 1]:
        i -= 1
    return epochs[i]
