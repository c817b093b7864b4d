"""The one training loop of the project, and the callbacks that measure networks while they train.

:func:`fit` trains anything that has a scalar objective over minibatches of in-memory tensors: classifiers here,
critics, flows and autoencoders in later chapters. Minibatches are drawn by a local generator; when the model holds
several stacked networks (``model.n_models > 1``, see :class:`ibcore.nets.MLP`) each network gets its own
minibatch order from its own seed, so stacked training equals training each network alone.

Callbacks are called once before training (epoch 0) and after every epoch; they keep what they measured, so an
interrupted run (``KeyboardInterrupt``) loses nothing that was finished: the callbacks' records up to the last
completed epoch stay valid and :class:`TrainState` says where training stopped.

Long runs checkpoint (``fit(..., checkpoint=path)``, :mod:`ibcore.checkpoint`): the model, the optimiser, the
minibatch and noise generators, the losses and every callback's records, atomically, every ``checkpoint_every``
epochs (or every two minutes) and at the end. Started again with the same ``checkpoint``, a killed run continues
from its last checkpoint and ends with the numbers an uninterrupted run gives, bit for bit on the CPU; a finished
run returns at once with its model and records restored.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as _ckpt

__all__ = [
    "TrainState",
    "Callback",
    "fit",
    "Minibatches",
    "classification_objective",
    "log_epochs",
    "Metrics",
    "RecordLayers",
]


@dataclass
class TrainState:
    """What callbacks see: the model, the epoch just finished (0 = before training) and control flags."""

    model: torch.nn.Module
    epoch: int
    epochs: int
    last_loss: float = math.nan
    stop: bool = False  # a callback sets this to stop after the current epoch (early stopping)
    interrupted: bool = False
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # mean training objective per epoch
    resumed_from: int | None = None  # the checkpointed epoch this run continued from (None: started afresh)


class Callback:
    """Base class: override :meth:`on_epoch_end`; a callback that keeps what it measures also overrides
    :meth:`state_dict` and :meth:`load_state_dict`, so that checkpointed runs keep it."""

    def on_epoch_end(self, state: TrainState) -> None:  # pragma: no cover - interface
        pass

    def state_dict(self) -> dict:
        """What this callback has accumulated, as tensors, numbers, strings, lists and dicts (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


def log_epochs(epochs: int, n: int) -> list[int]:
    """About ``n`` distinct epochs from 0 to ``epochs``, log-spaced (as the IDNNs code records them).

    Example:
        >>> log_epochs(1000, 8)
        [0, 2, 6, 18, 51, 138, 372, 1000]
    """
    if epochs < 0 or n < 2:
        raise ValueError(f"need epochs >= 0 and n >= 2, got epochs={epochs}, n={n}")
    grid = np.unique(np.round(np.logspace(0, math.log10(epochs + 1), n)).astype(int) - 1)
    return sorted({0, epochs, *grid.tolist()})


def _stacked_logits(logits: torch.Tensor) -> torch.Tensor:
    return logits.unsqueeze(0) if logits.ndim == 2 else logits  # (S, B, C)


def _cross_entropy_per_model(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # logits (S, B, C); y (S, B) or (B,) shared by all networks. Returns the mean loss of each network, (S,).
    s, b, c = logits.shape
    y = y.expand(s, b) if y.ndim == 1 else y
    return F.cross_entropy(logits.reshape(s * b, c), y.reshape(s * b), reduction="none").view(s, b).mean(1)


def classification_objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, averaged over each network's minibatch and summed over stacked networks.

    Summing over networks gives every network the gradient it would get alone.
    """
    return _cross_entropy_per_model(_stacked_logits(model(x)), y).sum()


def _generators(model: torch.nn.Module, seed: int) -> list[torch.Generator]:
    # One generator per stacked network, seeded from (seed, network's own seed) so that order does not depend on
    # which other networks share the stack.
    ids = getattr(model, "seeds", [0])
    return [
        torch.Generator().manual_seed(int(np.random.SeedSequence([seed, s]).generate_state(1, np.uint64)[0] >> 1))
        for s in ids
    ]


class Minibatches:
    """The minibatch order of :func:`fit`, for a hand-written loop that should see the same batches.

    Each call of :meth:`epoch` draws a fresh permutation per stacked network (from a local generator seeded by
    ``seed`` and the network's own seed) and yields index tensors ``(S, b)`` of ``batch_size`` rows (the last may
    be smaller); a single network uses ``idx[0]``.

    Example:
        >>> order = Minibatches(torch.nn.Linear(2, 2), 5, batch_size=2, seed=0)
        >>> [tuple(idx.shape) for idx in order.epoch()]
        [(1, 2), (1, 2), (1, 1)]
    """

    def __init__(self, model: torch.nn.Module, n: int, *, batch_size: int, seed: int = 0, device=None):
        self.n, self.batch_size, self.device = int(n), int(batch_size), device
        self.generators = _generators(model, seed)

    def epoch(self):
        perm = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        for lo in range(0, self.n, self.batch_size):
            yield perm[:, lo : lo + self.batch_size]


def fit(
    model: torch.nn.Module,
    tensors: Sequence[torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    lr_final: float | None = None,
    objective: Callable[..., torch.Tensor] = classification_objective,
    optimizer: str = "adam",
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    after_step: Sequence[Callable[[torch.nn.Module], None]] = (),
    reraise_interrupt: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> TrainState:
    """Train ``model`` by minibatch gradient descent on ``objective(model, *batch)``.

    Arguments:
        model: The module to train. If it has ``n_models > 1``, batches are stacked to ``(n_models, B, ...)``.
        tensors: Training tensors of equal length (e.g. inputs and labels), on the model's device.
        epochs: Number of passes over the data.
        batch_size: Minibatch size; the last minibatch of an epoch may be smaller.
        lr: Learning rate.
        lr_final: ``None``: a constant rate; else the rate decays geometrically, epoch by epoch, from ``lr`` in
            the first epoch to ``lr_final`` in the last (e.g. Butakov et al. 2024: 5e-4 to 1e-5).
        objective: ``objective(model, *batch) -> scalar`` to minimise.
        optimizer: ``"adam"`` or ``"sgd"``.
        seed: Seed of the minibatch order (combined with each stacked network's own seed).
        callbacks: Called with a :class:`TrainState` at epoch 0 and after each epoch.
        after_step: Called with the model after every optimiser step, without gradient tracking (e.g.
            :class:`ibcore.nets.OrthonormalUpdate`).
        reraise_interrupt: On ``KeyboardInterrupt``, re-raise after marking the state (default), or return it.
        checkpoint: A file: the run is saved there (:mod:`ibcore.checkpoint`) every ``checkpoint_every`` epochs and
            when it ends, and continued from there if the file exists when ``fit`` starts. The other arguments must
            be those of the run that wrote it (checked; a different run is refused).
        checkpoint_every: Epochs between checkpoints; ``None`` saves after the first epoch that ends two minutes
            or more after the last save.

    Returns:
        The final :class:`TrainState` (``interrupted`` tells whether training stopped early).
    """
    n = int(tensors[0].shape[0])
    if any(int(t.shape[0]) != n for t in tensors):
        raise ValueError(f"tensors must have equal lengths, got {[int(t.shape[0]) for t in tensors]}")
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if lr_final is not None and not (isinstance(lr_final, (int, float)) and not isinstance(lr_final, bool)
                                     and lr_final > 0 and math.isfinite(lr_final)):  # fmt: skip
        raise ValueError(f"lr_final must be None or a positive finite number, got {lr_final!r}")
    if checkpoint_every is not None and not (
            isinstance(checkpoint_every, int) and not isinstance(checkpoint_every, bool) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be an integer >= 1 or None, got {checkpoint_every!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernels (CPU and CUDA) take one call per step instead of several per parameter
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, fused=fused)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")

    n_models = int(getattr(model, "n_models", 1))
    device = tensors[0].device
    order = Minibatches(model, n, batch_size=batch_size, seed=seed, device=device)
    gens = order.generators
    state = TrainState(model=model, epoch=0, epochs=epochs)
    start = time.perf_counter()
    earlier = 0.0  # training seconds of the run before it was resumed
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        fp = _ckpt.fingerprint(model, tensors, callbacks, epochs=epochs, batch_size=batch_size, lr=float(lr),
                               lr_final=None if lr_final is None else float(lr_final), optimizer=optimizer,
                               seed=int(seed), n_after_step=len(after_step))  # fmt: skip
        for cb in callbacks:
            cb.state_dict()  # a callback that cannot be checkpointed says so now, not after hours of training

    def notify():
        state.seconds = earlier + time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            for cb in callbacks:
                cb.on_epoch_end(state)
        model.train()

    def save(finished: bool):
        state.seconds = earlier + time.perf_counter() - start
        _ckpt.save(checkpoint, {
            "fingerprint": fp, "epoch": state.epoch, "finished": finished, "stop": state.stop,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "generators": [g.get_state() for g in gens],
            "noise_generators": _ckpt.noise_generators(model), "losses": list(state.losses),
            "last_loss": state.last_loss, "seconds": state.seconds,
            "callbacks": [cb.state_dict() for cb in callbacks],
        })  # fmt: skip

    first = 1
    if checkpoint is not None and checkpoint.is_file():
        saved = _ckpt.load(checkpoint)
        _ckpt.check_fingerprint(saved["fingerprint"], fp, checkpoint)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        for g, s in zip(gens, saved["generators"]):
            g.set_state(s)
        _ckpt.restore_noise_generators(model, saved["noise_generators"])
        for cb, s in zip(callbacks, saved["callbacks"]):
            cb.load_state_dict(s)
        state.epoch, state.resumed_from, state.stop = int(saved["epoch"]), int(saved["epoch"]), bool(saved["stop"])
        state.losses, state.last_loss, earlier = list(saved["losses"]), float(saved["last_loss"]), saved["seconds"]
        first = state.epoch + 1
        if saved["finished"]:
            state.seconds = earlier
            return state
    last_save = time.perf_counter()

    try:
        if first == 1:
            notify()
        for epoch in range(first, epochs + 1):
            if lr_final is not None:  # a function of the epoch alone, so a resumed run sets the same rate
                rate = lr * (lr_final / lr) ** ((epoch - 1) / max(epochs - 1, 1))
                for group in opt.param_groups:
                    group["lr"] = rate
            total, count = 0.0, 0
            for idx in order.epoch():  # (S, b): an independent permutation per stacked network
                batch = [t[idx] if n_models > 1 else t[idx[0]] for t in tensors]
                loss = objective(model, *batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if after_step:
                    with torch.no_grad():
                        for hook in after_step:
                            hook(model)
                total += loss.detach()  # a tensor: no CPU-GPU sync per step
                count += 1
            state.epoch = epoch
            state.last_loss = float(total) / (count * n_models)
            state.losses.append(state.last_loss)
            if not math.isfinite(state.last_loss):
                raise FloatingPointError(f"training diverged: mean objective {state.last_loss} at epoch {epoch}")
            notify()
            if state.stop:
                break
            if checkpoint is not None and epoch < epochs and (
                    epoch % checkpoint_every == 0 if checkpoint_every else time.perf_counter() - last_save >= 120):
                save(finished=False)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        state.interrupted = True
        if reraise_interrupt:
            raise
    state.seconds = earlier + time.perf_counter() - start
    if checkpoint is not None and not state.interrupted:
        save(finished=True)
    return state


class _AtEpochs(Callback):
    def __init__(self, epochs: Sequence[int] | None):
        self.at = None if epochs is None else set(int(e) for e in epochs)

    def due(self, state: TrainState) -> bool:
        return self.at is None or state.epoch in self.at


class Metrics(_AtEpochs):
    """Loss and accuracy of every stacked network on named data sets, at the given epochs (``None``: every epoch).

    Records are dicts ``{"epoch", "model", "split", "loss", "accuracy"}``; ``model`` is the network's seed.

    Arguments:
        datasets: ``{"train": (x, y), "test": (x, y)}``.
        epochs: Epochs at which to measure.
    """

    def __init__(self, datasets: dict[str, tuple[torch.Tensor, torch.Tensor]], epochs: Sequence[int] | None = None):
        super().__init__(epochs)
        self.datasets = datasets
        self.records: list[dict] = []

    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

    def on_epoch_end(self, state: TrainState) -> None:
        if not self.due(state):
            return
        seeds = getattr(state.model, "seeds", [0])
        for split, (x, y) in self.datasets.items():
            logits = _stacked_logits(state.model(x))
            loss = _cross_entropy_per_model(logits, y)
            acc = (logits.argmax(-1) == y).to(torch.float64).mean(1)
            for i, seed in enumerate(seeds):
                self.records.append(
                    {"epoch": state.epoch, "model": seed, "split": split,
                     "loss": float(loss[i]), "accuracy": float(acc[i])}
                )  # fmt: skip


class RecordLayers(_AtEpochs):
    """Calls ``fn(epoch, layers)`` with every layer's representation of ``x`` at the given epochs.

    ``layers`` is ``model.layers(x)``: a list of tensors ``(S, N, width)`` for stacked networks. Use it to compute
    measurements on the fly instead of storing activations (which paper-scale runs cannot afford).
    """

    def __init__(self, x: torch.Tensor, fn: Callable[[int, list[torch.Tensor]], None], epochs=None):
        super().__init__(epochs)
        self.x, self.fn = x, fn

    def on_epoch_end(self, state: TrainState) -> None:
        if self.due(state):
            self.fn(state.epoch, state.model.layers(self.x))

    def state_dict(self) -> dict:
        raise ValueError("RecordLayers calls a function whose state fit cannot checkpoint; measure with "
                         "ibcore.infoplane.InformationPlane, or give a Callback with state_dict and load_state_dict")
