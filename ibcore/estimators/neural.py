"""Critic-based variational MI estimators: MINE (Donsker-Varadhan), NWJ, InfoNCE and SMILE.

Each trains a critic T(x, y) to maximise a lower bound on I(X;Y) and reports the bound on held-out data. With a
minibatch of B pairs the critic scores all B x B combinations: the diagonal are samples of the joint, the
off-diagonal of the product of marginals. The bounds (Poole et al. 2019; Song & Ermon 2020):

    DV (MINE)   E_p[T] - log E_q[exp T]
    NWJ         E_p[T] - E_q[exp(T - 1)]
    InfoNCE     E_i[T_ii - log mean_j exp T_ij]                     (never above ln B)
    SMILE(tau)  E_p[T] - log E_q[exp clip(T, -tau, tau)]            (trained through the Jensen-Shannon bound)

MINE trains DV with a moving average of E_q[exp T] in the denominator of the gradient (Belghazi et al. 2018), which
removes the bias of the minibatch log. All estimators share the trained-estimator scaffold (:mod:`._trained`) and
its one training loop, :func:`ibcore.training.fit`: the data are split into a training and a held-out part (``held_out`` of the rows, chosen by ``seed``), the critic is trained
on the first, and after every epoch the bound is evaluated on the second; training stops after ``epochs`` or when
the held-out bound has not improved for ``patience`` epochs. The reported value is the held-out bound at the end of
training (not the best value seen, which is biased upwards), with its standard error over held-out minibatches
(of the training batch size, or half the held-out rows if that is smaller, so that there are at least two).

References:
    Belghazi et al. (2018). Mutual information neural estimation. ICML.
    Nguyen, Wainwright & Jordan (2010). Estimating divergence functionals and the likelihood ratio. IEEE Trans. IT.
    van den Oord, Li & Vinyals (2018). Representation learning with contrastive predictive coding. arXiv:1807.03748.
    Poole et al. (2019). On variational bounds of mutual information. ICML.
    Song & Ermon (2020). Understanding the limitations of variational mutual information estimators. ICLR.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._trained import HeldOut, TrainedEstimator, convergence_flags, standardise
from ._validation import as_samples, check_choice, check_positive_int, check_same_length, image_rows, resolve_device
from .interface import MIEstimate, register

__all__ = ["Critic", "bound_values", "convergence_flags", "MINE", "NWJ", "InfoNCE", "SMILE"]

CRITICS = ("separable", "joint")


def _mlp(sizes, generator: torch.Generator, device, dtype) -> nn.Sequential:
    # ReLU MLP; weights and biases uniform on +-1/sqrt(fan_in) (PyTorch's default) from a local generator.
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b, device="meta", dtype=dtype).to_empty(device=device)
        bound = 1.0 / math.sqrt(a)
        with torch.no_grad():
            for p in (lin.weight, lin.bias):
                p.copy_(torch.empty(p.shape, dtype=dtype).uniform_(-bound, bound, generator=generator))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """T(x, y) for every pair of a minibatch: ``forward(x, y)`` returns scores ``(B, B)``, ``[i, j] = T(x_i, y_j)``.

    ``"separable"``: T = g(x) . h(y) with two MLPs to an ``embed``-dimensional space (cheap: B x B by one matrix
    product). ``"joint"``: T = f([x, y]) with one MLP on every concatenated pair (B^2 rows; more expressive).
    """

    def __init__(self, dim_x: int, dim_y: int, *, kind: str = "separable", hidden=(256, 256), embed: int = 32,
                 seed: int = 0, device=None, dtype=torch.float32):  # fmt: skip
        super().__init__()
        check_choice(kind, "critic", CRITICS)
        device = torch.get_default_device() if device is None else torch.device(device)
        g = torch.Generator().manual_seed(int(seed))
        self.kind = kind
        hidden = tuple(int(h) for h in hidden)
        if kind == "separable":
            self.g = _mlp((dim_x, *hidden, embed), g, device, dtype)
            self.h = _mlp((dim_y, *hidden, embed), g, device, dtype)
        else:
            self.f = _mlp((dim_x + dim_y, *hidden, 1), g, device, dtype)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "separable":
            return self.g(x) @ self.h(y).T
        b = x.shape[0]
        pairs = torch.cat([x.unsqueeze(1).expand(b, b, -1), y.unsqueeze(0).expand(b, b, -1)], dim=-1)
        return self.f(pairs).squeeze(-1)


def _off_diagonal(scores: torch.Tensor) -> torch.Tensor:
    # The b (b - 1) off-diagonal scores in row-major order, the values and order masked_select(~eye) gives, from a
    # view: dropping the first entry, the diagonal is the last column of the remaining (b - 1, b + 1) block.
    # masked_select sizes its output from the mask's values, which on CUDA is a host sync every training step.
    b = scores.shape[0]
    return scores.flatten()[1:].view(b - 1, b + 1)[:, :-1].reshape(-1)


def _log_mean_exp(v: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(v, dim=0) - math.log(v.numel())


def bound_values(scores: torch.Tensor, bound: str, tau: float = 5.0) -> torch.Tensor:
    """The lower bound ``bound`` (``"dv"``, ``"nwj"``, ``"infonce"``, ``"smile"``) from a ``(B, B)`` score matrix.

    Example:
        >>> s = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(float(bound_values(s, "dv")), 4), round(float(bound_values(s, "infonce")), 4)
        (2.0, 0.5662)
    """
    joint = scores.diagonal().mean()
    if bound == "infonce":
        return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(scores.shape[0])
    off = _off_diagonal(scores)
    if bound == "dv":
        return joint - _log_mean_exp(off)
    if bound == "nwj":
        return joint - torch.exp(off - 1.0).mean()
    if bound == "smile":
        return joint - _log_mean_exp(off.clamp(-tau, tau))
    raise ValueError(f"bound must be one of ['dv', 'infonce', 'nwj', 'smile'], got {bound!r}")


def _eval_batch(batch: int, n_held_out: int) -> int:
    # Held-out minibatches: the training batch size, but at least two of them (for a standard error) where the
    # held-out part has 4 rows or more.
    return min(batch, max(2, n_held_out // 2))


class _CriticEstimator(TrainedEstimator):
    bound_name = ""
    # images (n, H, W) / (n, C, H, W) are flattened and standardised by one mean and standard deviation over the
    # training pixels: per column, a border pixel that is nearly constant in the training rows is blown up to huge
    # values on held-out rows, and the critic's exp(T) overflows
    images = True

    def __init__(self, critic: str = "separable", hidden=(256, 256), embed: int = 32, epochs: int = 200,
                 batch_size: int = 128, lr: float = 5e-4, held_out: float = 0.2, patience: int = 30, seed: int = 0,
                 device=None):  # fmt: skip
        self.critic, self.hidden, self.embed, self.epochs = critic, hidden, embed, epochs
        self.batch_size, self.lr, self.held_out, self.patience = batch_size, lr, held_out, patience
        self.seed, self.device = seed, device

    tau = 5.0

    def _objective(self):
        def objective(model, x, y):
            return -bound_values(model(x, y), self.bound_name, self.tau)

        return objective

    def _estimate(self, x, y, p) -> MIEstimate:
        check_choice(self.critic, "critic", CRITICS)
        epochs = check_positive_int(self.epochs, "epochs")
        batch = check_positive_int(self.batch_size, "batch_size", 2)
        check_positive_int(self.embed, "embed")
        self._check_training()
        dev = resolve_device(self.device)
        (x, shape_x), (y, shape_y) = image_rows(x), image_rows(y)
        tx = as_samples(x, "x", min_samples=10, device=dev, float_dtype=torch.float32)
        ty = as_samples(y, "y", min_samples=10, device=tx.device, float_dtype=torch.float32)
        check_same_length(tx, ty)
        n = tx.shape[0]
        test, train = self._split(n, tx.device)
        tx, ty = standardise(tx, train, shape_x is not None), standardise(ty, train, shape_y is not None)
        model = Critic(tx.shape[1], ty.shape[1], kind=self.critic, hidden=self.hidden, embed=self.embed,
                       seed=self.seed, device=tx.device)  # fmt: skip
        xt, yt = tx[test], ty[test]
        b = _eval_batch(batch, len(test))

        def evaluate(model, xt=xt, yt=yt, b=b):  # the bound on held-out pairs, in minibatches of b (two if possible)
            m = (len(xt) // b) * b
            vals = torch.stack([bound_values(model(xt[lo : lo + b], yt[lo : lo + b]), self.bound_name, self.tau)
                                for lo in range(0, m, b)])  # fmt: skip
            value = float(vals.mean())
            return value, value, float(vals.std() / math.sqrt(len(vals))) if len(vals) > 1 else math.nan

        held = HeldOut(self.name, evaluate, self.patience)
        state = self._train(model, (tx[train], ty[train]), self._objective(), held, epochs, batch)
        value, std = held.values[-1], held.stds[-1]
        diagnostics = self._diagnostics(held, state, epochs, len(train), len(test), std)
        model.eval()
        with torch.no_grad():  # the bound on (as many of) the training pairs, in minibatches of the same size
            rows = train[: max(b, len(test))]
            diagnostics["training_value"] = evaluate(model, tx[rows], ty[rows], min(b, len(rows)))[1]
        if self.bound_name == "infonce":
            diagnostics["bound"] = math.log(b)
        return MIEstimate(value, n, self.name, self.get_params(), std=std if math.isfinite(std) else None,
                          diagnostics=diagnostics)  # fmt: skip


@register("mine")
class MINE(_CriticEstimator):
    """MINE (Belghazi et al. 2018): the Donsker-Varadhan bound, trained with the moving-average gradient correction.

    Arguments:
        critic: ``"separable"`` or ``"joint"`` (:class:`Critic`).
        hidden, embed: Hidden widths of the critic's MLPs and the separable critic's embedding dimension.
        epochs, batch_size, lr: Training (Adam); ``patience`` epochs without held-out improvement stop it early.
        held_out: Fraction of the rows kept out of training for the reported estimate.
        ema: Rate of the moving average of E_q[exp T] (MINE's bias correction).
        seed: Seed of the split, the critic's initialisation and the minibatch order.
        device: Where to train (``None``: where the data are).

    ``diagnostics``: the held-out ``curve`` per epoch, ``train_loss``, ``epochs_run``, ``best`` (reported for
    information only), and the flags ``not_converged`` (ran out of epochs while still improving),
    ``still_increasing`` (the last tenth of the curve is above the tenth before by more than two standard errors)
    and ``stopped_early``.
    """

    bound_name = "dv"

    def __init__(self, critic: str = "separable", hidden=(256, 256), embed: int = 32, epochs: int = 200,
                 batch_size: int = 128, lr: float = 5e-4, held_out: float = 0.2, patience: int = 30, ema: float = 0.01,
                 seed: int = 0, device=None):  # fmt: skip
        super().__init__(critic, hidden, embed, epochs, batch_size, lr, held_out, patience, seed, device)
        self.ema = ema

    def _objective(self):
        if not (isinstance(self.ema, float) and 0 < self.ema <= 1):
            raise ValueError(f"ema must be a rate in (0, 1], got {self.ema!r}")
        average = {}

        def objective(model, x, y):
            scores = model(x, y)
            e = torch.exp(_off_diagonal(scores)).mean()
            m = average.get("m")
            m = e.detach() if m is None else (1 - self.ema) * m + self.ema * e.detach()
            average["m"] = m
            # gradient of E_p[T] - E_q[exp T] / m: the DV gradient with the biased log replaced by the average
            return -(scores.diagonal().mean() - e / m)

        return objective


@register("nwj")
class NWJ(_CriticEstimator):
    """The NWJ (f-divergence) bound E_p[T] - E_q[exp(T - 1)] (Nguyen et al. 2010). Arguments as :class:`MINE`."""

    bound_name = "nwj"


@register("infonce")
class InfoNCE(_CriticEstimator):
    """The InfoNCE bound (van den Oord et al. 2018): never above ln(batch size). Arguments as :class:`MINE`."""

    bound_name = "infonce"
    bound = "ln(held-out minibatch size)"
    saturation = 0.1  # within 0.1 nats of ln B the bound, not the data, sets the value


@register("smile")
class SMILE(_CriticEstimator):
    """SMILE (Song & Ermon 2020): the DV value with the critic clipped to [-tau, tau] in the partition term, trained
    through the Jensen-Shannon bound. Arguments as :class:`MINE`, plus ``tau``."""

    bound_name = "smile"

    def __init__(self, critic: str = "separable", hidden=(256, 256), embed: int = 32, epochs: int = 200,
                 batch_size: int = 128, lr: float = 5e-4, held_out: float = 0.2, patience: int = 30, tau: float = 5.0,
                 seed: int = 0, device=None):  # fmt: skip
        super().__init__(critic, hidden, embed, epochs, batch_size, lr, held_out, patience, seed, device)
        self.tau = tau

    def _objective(self):
        if not (isinstance(self.tau, (int, float)) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")

        def objective(model, x, y):
            scores = model(x, y)
            off = _off_diagonal(scores)
            # Jensen-Shannon bound for the gradient, the clipped DV value in the forward pass
            js = -nn.functional.softplus(-scores.diagonal()).mean() - nn.functional.softplus(off).mean()
            value = bound_values(scores, "smile", self.tau)
            return -(js + (value - js).detach())

        return objective
