"""Infinitely wide fully connected networks: the NNGP kernel and the neural tangent kernel (NTK).

A network in the NTK parameterisation,

    h_1 = (w / sqrt(d)) W_1 x + b b_1,    h_{l+1} = (w / sqrt(n_l)) W_{l+1} phi(h_l) + b b_{l+1},

with every entry of every W and b standard normal, ``depth`` hidden layers of ``phi`` (ReLU or erf) and a linear
read-out, has at infinite width (Neal 1996; Lee et al. 2018; Jacot et al. 2018)

- outputs that are a Gaussian process over inputs with covariance K = Sigma_L (the NNGP kernel), independent and
  identically distributed over the output units;
- a tangent kernel Theta(x, x') = <df(x)/dparams, df(x')/dparams> that is deterministic and constant during
  training.

Both follow from one recursion over the layers, in the pre-activation covariances Sigma_l and the derivative
covariances dSigma_l = w^2 E[phi'(u) phi'(v)]:

    Sigma_1 = w^2 x.x' / d + b^2,  Theta_1 = Sigma_1,
    Sigma_{l+1} = w^2 E[phi(u) phi(v)] + b^2,  Theta_{l+1} = Theta_l dSigma_{l+1} + Sigma_{l+1},

with (u, v) centred Gaussian of covariance Sigma_l at (x, x'). The expectations are closed forms: the arc-cosine
kernels for ReLU (Cho & Saul 2009) and Williams' (1997) arcsine kernel for erf.

:class:`WideMLP` is the finite network of the same parameterisation, and :func:`empirical_ntk` its tangent kernel
from autograd; the tests check that the analytic kernels are its infinite-width limit.

References:
    Jacot, Gabriel & Hongler (2018). Neural tangent kernel. NeurIPS. arXiv:1806.07572
    Lee et al. (2018). Deep neural networks as Gaussian processes. ICLR. arXiv:1711.00165
    Lee et al. (2019). Wide neural networks of any depth evolve as linear models. NeurIPS. arXiv:1902.06720
    Cho & Saul (2009). Kernel methods for deep learning. NeurIPS.
    Williams (1997). Computing with infinite networks. NeurIPS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "kernels", "kernel_diagonals", "WideMLP", "empirical_ntk"]

ACTIVATIONS = ("relu", "erf")


def _check(activation: str, depth: int, weight_std: float, bias_std: float) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got activation={activation!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (hidden layers) must be an integer >= 1, got depth={depth!r}")
    if not (math.isfinite(weight_std) and weight_std > 0):
        raise ValueError(f"weight_std must be positive and finite, got weight_std={weight_std!r}")
    if not (math.isfinite(bias_std) and bias_std >= 0):
        raise ValueError(f"bias_std must be non-negative and finite, got bias_std={bias_std!r}")


def _rows(x, name: str, device, dtype) -> torch.Tensor:
    x = torch.as_tensor(x, device=device)
    x = x.reshape(len(x), -1) if x.ndim > 2 else x  # images -> rows
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be (n, d) rows (or images), got shape {tuple(x.shape)}")
    x = x.to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds non-finite values")
    return x


def _expectations(activation: str, k12, k11, k22):
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]), k11 and k22 broadcast
    against k12 (column, row); and E[phi(u)^2] for the two diagonals."""
    if activation == "relu":
        s11, s22 = k11.sqrt(), k22.sqrt()
        norm = s11 * s22
        # a zero-variance input (the zero vector without biases) has phi = 0: its correlation is irrelevant
        cos = torch.where(norm > 0, k12 / norm.clamp_min(torch.finfo(k12.dtype).tiny), torch.zeros_like(k12))
        theta = torch.arccos(cos.clamp(-1.0, 1.0))
        e = norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta))
        e_dot = (math.pi - theta) / (2 * math.pi)
        return e, e_dot, k11 / 2, k22 / 2
    a11, a22 = 1 + 2 * k11, 1 + 2 * k22
    denom = a11 * a22
    e = (2 / math.pi) * torch.arcsin((2 * k12 / denom.sqrt()).clamp(-1.0, 1.0))
    e_dot = (4 / math.pi) / (denom - 4 * k12**2).clamp_min(torch.finfo(k12.dtype).tiny).sqrt()
    return e, e_dot, (2 / math.pi) * torch.arcsin(2 * k11 / a11), (2 / math.pi) * torch.arcsin(2 * k22 / a22)


def kernels(x1, x2=None, *, depth: int = 2, activation: str = "relu", weight_std: float = 1.0,
            bias_std: float = 0.0, device=None, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The NNGP kernel and the NTK of an infinitely wide fully connected network with a linear read-out.

    Arguments:
        x1: Inputs ``(n1, d)`` (images are flattened).
        x2: Inputs ``(n2, d)``; ``None`` for ``x1`` itself.
        depth: Number of hidden layers.
        activation: ``"relu"`` or ``"erf"``.
        weight_std, bias_std: The standard deviations ``w`` and ``b`` of the NTK parameterisation (module docstring).
        device: Where to compute (``None``: where ``x1`` is).
        dtype: Precision of the computation (float64 by default: the kernels feed eigendecompositions).

    Returns:
        ``(nngp, ntk)``, each ``(n1, n2)``, per output unit (the kernels of different output units are zero).

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> nngp, ntk = kernels(x, depth=1, activation="relu", weight_std=2 ** 0.5)
        >>> [round(v, 4) for v in nngp[0].tolist()], [round(v, 4) for v in ntk[0].tolist()]
        ([1.0, 0.3183], [2.0, 0.3183])
    """
    _check(activation, depth, float(weight_std), float(bias_std))
    device = device if device is not None else torch.as_tensor(x1).device
    a = _rows(x1, "x1", device, dtype)
    b = a if x2 is None else _rows(x2, "x2", device, dtype)
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"x1 and x2 must have the same number of features, got {a.shape[1]} and {b.shape[1]}")
    w2, b2 = float(weight_std) ** 2, float(bias_std) ** 2
    d = a.shape[1]
    k11 = (w2 * (a * a).sum(1) / d + b2)[:, None]  # (n1, 1)
    k22 = (w2 * (b * b).sum(1) / d + b2)[None, :]  # (1, n2)
    return _recursion(activation, depth, w2, b2, w2 * (a @ b.T) / d + b2, k11, k22)


def _recursion(activation: str, depth: int, w2: float, b2: float, k12, k11, k22):
    ntk = k12  # Theta_1 = Sigma_1
    for _ in range(depth):
        e, e_dot, e11, e22 = _expectations(activation, k12, k11, k22)
        k12 = w2 * e + b2
        k11, k22 = w2 * e11 + b2, w2 * e22 + b2
        ntk = ntk * (w2 * e_dot) + k12
    return k12, ntk


def kernel_diagonals(x, *, depth: int = 2, activation: str = "relu", weight_std: float = 1.0, bias_std: float = 0.0,
                     device=None, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The diagonals ``(n,)`` of :func:`kernels` ``(x, x)`` (each input with itself), in O(n) memory."""
    _check(activation, depth, float(weight_std), float(bias_std))
    device = device if device is not None else torch.as_tensor(x).device
    a = _rows(x, "x", device, dtype)
    w2, b2 = float(weight_std) ** 2, float(bias_std) ** 2
    k = w2 * (a * a).sum(1) / a.shape[1] + b2
    return _recursion(activation, depth, w2, b2, k, k, k)


class WideMLP(nn.Module):
    """A finite fully connected network in the NTK parameterisation (module docstring): ``depth`` hidden layers of
    ``width`` units, scalar or vector read-out, weights and biases standard normal from ``generator``.

    Its kernels at initialisation converge to :func:`kernels` as the width grows.
    """

    def __init__(self, d_in: int, width: int, depth: int = 2, *, activation: str = "relu", weight_std: float = 1.0,
                 bias_std: float = 0.0, out: int = 1, generator: torch.Generator | None = None) -> None:  # fmt: skip
        super().__init__()
        _check(activation, depth, float(weight_std), float(bias_std))
        for name, v in (("d_in", d_in), ("width", width), ("out", out)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {name}={v!r}")
        self.activation, self.weight_std, self.bias_std = activation, float(weight_std), float(bias_std)
        sizes = [d_in] + [width] * depth + [out]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_out, n_in, generator=generator)) for n_in, n_out in zip(sizes, sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(n_out, generator=generator)) for n_out in sizes[1:])

    def _phi(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h) if self.activation == "relu" else torch.erf(h)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's post-activations ``(n, width)``."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            h = self.weight_std / math.sqrt(w.shape[1]) * h @ w.T + self.bias_std * b
            h = self._phi(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weights[-1], self.biases[-1]
        return self.weight_std / math.sqrt(w.shape[1]) * self.hidden(x) @ w.T + self.bias_std * b


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """The tangent kernel <df(x1)/dparams, df(x2)/dparams> of a scalar-output model at its current parameters,
    ``(n1, n2)``, from one backward pass per input (an obviously correct reference, not a fast one)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if out.ndim == 2 and out.shape[1] != 1 or out.ndim > 2:
            raise ValueError(f"empirical_ntk needs a scalar-output model, got outputs of shape {tuple(out.shape)}")
        out = out.reshape(len(x))
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[i], params, retain_graph=True)])
                for i in range(len(x))]  # fmt: skip
        return torch.stack(rows)  # (n, n_params)

    j1 = jacobian(x1)
    j2 = j1 if x2 is None else jacobian(x2)
    return j1 @ j2.T
