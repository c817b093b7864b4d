"""The scaffold every trained estimator shares (the critic bounds of :mod:`.neural`, the flows of :mod:`.flows`).

A trained estimator splits the rows into a training and a held-out part (``held_out`` of them, chosen by ``seed``),
standardises both with the training part's statistics, trains a network on the training part with the project's
loop (:func:`ibcore.training.fit`), evaluates it on the held-out part after every epoch (:class:`HeldOut`: the
held-out curve, early stopping after ``patience`` epochs without improvement) and reports the value at the end of
training on the held-out part, with the diagnostics of :func:`diagnostics`. Subclasses say how to build the
network, what to minimise and how to evaluate it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..training import Callback, fit
from ._validation import check_training
from .interface import MIEstimator

__all__ = ["HeldOut", "Training", "TrainedEstimator", "convergence_flags", "standardise"]

#: the held-out criterion must improve by more than this to reset the patience counter
MIN_IMPROVEMENT = 1e-3


def convergence_flags(curve, std, epochs_run: int, epochs: int, since_best: int) -> dict[str, bool]:
    """The flags every trained estimator reports: ``not_converged`` (ran out of epochs while the held-out criterion
    was still improving) and ``still_increasing`` (the mean of the last tenth of the held-out ``curve`` is above
    the tenth before by more than two standard errors ``std``)."""
    if not curve:
        return {"not_converged": False, "still_increasing": False}
    tail = curve[-max(3, len(curve) // 10) :]
    before = curve[-2 * len(tail) : -len(tail)] or curve[:1]
    rising = sum(tail) / len(tail) - sum(before) / len(before)
    noise = max(std if std is not None and math.isfinite(std) else 0.0, 1e-3)
    return {"not_converged": epochs_run >= epochs and since_best == 0, "still_increasing": rising > 2 * noise}


def standardise(t: torch.Tensor, train: torch.Tensor, image: bool = False) -> torch.Tensor:
    """Columns by the training rows' mean and standard deviation (a constant column stays 0); images by one
    scalar mean and standard deviation (near-constant border pixels would otherwise be blown up)."""
    if image:
        return (t - t[train].mean()) / t[train].std().clamp_min(1e-12)
    return (t - t[train].mean(0)) / t[train].std(0).clamp_min(1e-12)


class HeldOut(Callback):
    """After every epoch: ``evaluate(model) -> (criterion, value, std)`` on the held-out rows; early stopping on
    the criterion (higher is better: a bound, or minus a negative log-likelihood).

    ``values`` and ``stds`` hold the held-out value and its standard error per evaluation (the first is the
    untrained network at epoch 0), ``since_best`` the epochs since the criterion last improved by more than
    :data:`MIN_IMPROVEMENT`.
    """

    def __init__(self, name: str, evaluate: Callable, patience: int):
        self.name, self.evaluate, self.patience = name, evaluate, patience
        self.values: list[float] = []
        self.stds: list[float] = []
        self.criteria: list[float] = []
        self.best, self.since_best = -math.inf, 0

    def on_epoch_end(self, state) -> None:
        criterion, value, std = self.evaluate(state.model)
        if not (math.isfinite(criterion) and math.isfinite(value)):
            raise FloatingPointError(f"{self.name}: the held-out value is {value} at epoch {state.epoch} "
                                     f"(training diverged); try a smaller lr")  # fmt: skip
        self.criteria.append(criterion)
        self.values.append(value)
        self.stds.append(std)
        if criterion > self.best + MIN_IMPROVEMENT:
            self.best, self.since_best = criterion, 0
        else:
            self.since_best += 1
            if self.patience and self.since_best >= self.patience:
                state.stop = True


class Training:
    """What every estimator that trains a network on the data shares: the held-out split, the training run and the
    diagnostics. Classes that use it have the hyperparameters ``epochs``, ``batch_size``, ``lr``, ``held_out``,
    ``patience``, ``seed`` and ``device``."""

    trained = True
    lr_final = None  # constant rate; the flows take it as a hyperparameter (a decay, Butakov et al. 2024)

    def _check_training(self) -> None:
        check_training(self.held_out, self.lr, self.patience)

    def _split(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out and training row indices: ``held_out`` of the ``n`` rows (at least 2), drawn from ``seed``."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(self.seed))).to(device)
        n_test = max(2, int(round(self.held_out * n)))
        return order[:n_test], order[n_test:]

    def _train(self, model, data, objective, held: HeldOut, epochs: int, batch_size: int):
        """Train ``model`` on the training rows ``data`` (a tuple of tensors) with ``objective``, evaluating
        ``held`` after every epoch; returns the training state."""
        return fit(model, data, epochs=epochs, batch_size=min(batch_size, len(data[0])), lr=self.lr,
                   lr_final=self.lr_final, objective=objective, seed=self.seed, callbacks=[held])  # fmt: skip

    @staticmethod
    def _diagnostics(held: HeldOut, state, epochs: int, n_train: int, n_test: int, std) -> dict:
        """The diagnostics every trained estimator reports (keys documented in ``interface.DIAGNOSTICS``)."""
        curve = held.values[1:]  # the first value is the untrained network (epoch 0)
        return {
            "curve": curve, "curve_start": held.values[0], "criterion": list(held.criteria),
            "train_loss": list(state.losses), "epochs_run": state.epoch, "n_train": n_train,
            "n_held_out": n_test, "best": max(curve, default=held.values[-1]), "stopped_early": state.epoch < epochs,
            **convergence_flags(curve, std, state.epoch, epochs, held.since_best),
        }  # fmt: skip


class TrainedEstimator(Training, MIEstimator):
    """Base of the MI estimators that train a network on the data (:class:`Training`)."""
