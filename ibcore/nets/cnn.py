"""Convolutional networks: :class:`NoisyCNN`, a small classifier with Gaussian noise after every hidden block and
dropout before every convolution, several seeds side by side (the lossy-compression MNIST chapter)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import skip_init

from .common import ACTIVATIONS, _gaussian_noise, _noise_generator

__all__ = ["NoisyCNN"]


class NoisyCNN(nn.Module):
    """A small convolutional classifier with Gaussian noise after every hidden block (Goldfeld et al. 2019;
    Butakov et al. 2024).

    Blocks: for each entry of ``channels`` a 3x3 convolution (zero padding ``padding``), the activation and a 2x2
    max-pooling; then a dense layer of each width in ``dense`` with the activation; then a linear layer to the
    logits. With ``noise_std > 0`` Gaussian noise is added to every hidden block's output (and to the input image
    when ``input_noise``), while :attr:`noise` is true (the switch), in training and in evaluation: of standard
    deviation ``noise_std``, or with ``relative_noise`` of ``noise_std`` times the value itself (x + sigma x eps,
    the multiplicative noise of Butakov et al.). ``dropout`` zeroes each input of every convolution with that
    probability, in training only. Noise and dropout masks come from the network's own generator. ``len(seeds)``
    networks are kept side by side (each initialised from its own seed like PyTorch's default, weights and biases
    uniform on +-1/sqrt(fan_in), with local generators only) and trained together by :func:`ibcore.training.fit`.

    Butakov et al.'s MNIST classifier is ``NoisyCNN((1, 28, 28), channels=(8, 16, 32), dense=(32,),
    activation="leaky_relu", padding=0, dropout=0.1, noise_std=1e-3, relative_noise=True, input_noise=True,
    output="log_softmax")``: its blocks are 8x13x13, 16x5x5, 32x1x1, then 32 and 10 units.

    Shapes: ``forward(x)`` takes ``(B, C, H, W)`` (the same images for every network) or ``(S, B, C, H, W)`` and
    returns logits ``(S, B, n_classes)``; :meth:`layers` and :meth:`centres` return each hidden block flattened,
    ``(S, rows, features)``, as :class:`MLP` does, so the information-plane callbacks take either network; the last
    of :meth:`layers` is the softmax, or its logarithm with ``output="log_softmax"`` (which does not saturate: k-NN
    estimators need it once the softmax is close to one-hot).

    Example:
        >>> net = NoisyCNN((1, 8, 8), channels=(4,), dense=(6,), n_classes=3, seeds=[0, 1], noise_std=0.1)
        >>> net(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([2, 5, 3])
        >>> [tuple(c.shape) for c in net.centres(torch.zeros(5, 1, 8, 8), replicas=2)]
        [(2, 5, 64), (2, 10, 6)]
    """

    def __init__(self, in_shape: Sequence[int], *, channels: Sequence[int] = (8, 16), dense: Sequence[int] = (32,),
                 n_classes: int = 10, activation: str = "relu", seeds: Sequence[int] = (0,), noise_std: float = 0.0,
                 relative_noise: bool = False, input_noise: bool = False, padding: int = 1, dropout: float = 0.0,
                 output: str = "softmax", device=None, dtype: torch.dtype = torch.float32):  # fmt: skip
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
        out_h, out_w = h, w
        for _ in channels:
            out_h, out_w = (out_h + 2 * padding - 2) // 2, (out_w + 2 * padding - 2) // 2
        if min(c, out_h, out_w) < 1:
            raise ValueError(f"in_shape {tuple(in_shape)} is too small for {len(channels)} 3x3 convolutions with "
                             f"padding {padding} and 2x2 poolings")  # fmt: skip
        for name, v, top in (("noise_std", noise_std, math.inf), ("dropout", dropout, 1.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v < top):
                raise ValueError(f"{name} must be a finite number >= 0{'' if top == math.inf else ' and < 1'}, "
                                 f"got {v!r}")  # fmt: skip
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one model")
        self.seeds, self.activation, self.noise_std = seeds, activation, float(noise_std)
        self.relative_noise, self.input_noise = bool(relative_noise), bool(input_noise)
        self.padding, self.dropout = padding, float(dropout)
        if output not in ("softmax", "log_softmax"):
            raise ValueError(f"output must be 'softmax' or 'log_softmax', got {output!r}")
        self.output = output
        self.noise = self.noise_std > 0
        self._noise_generator: torch.Generator | None = None
        self.nets = nn.ModuleList()
        device = torch.get_default_device() if device is None else torch.device(device)
        for seed in seeds:
            layers, c_in = nn.ModuleList(), c
            # skip_init: no draw from the global generator; the parameters are set from the seed below
            for c_out in channels:
                layers.append(skip_init(nn.Conv2d, c_in, int(c_out), 3, padding=padding, device=device, dtype=dtype))
                c_in = int(c_out)
            n_in = c_in * out_h * out_w
            for width in (*dense, n_classes):
                layers.append(skip_init(nn.Linear, n_in, int(width), device=device, dtype=dtype))
                n_in = int(width)
            g = torch.Generator(device="cpu").manual_seed(seed)
            with torch.no_grad():
                for layer in layers:
                    bound = 1.0 / math.sqrt(layer.weight[0].numel())
                    for p in (layer.weight, layer.bias):
                        p.copy_(torch.empty(p.shape, dtype=dtype).uniform_(-bound, bound, generator=g))
            self.nets.append(layers)
        self.n_convs = len(channels)

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def _noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        e = _gaussian_noise(self, like, generator)
        return e * like if self.relative_noise else e

    def _noisy(self, h: torch.Tensor) -> torch.Tensor:
        return h + self._noise(h) if self.noise and self.noise_std > 0 else h

    def _block(self, layers, i: int, h: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        if i < self.n_convs:
            if self.training and self.dropout > 0:
                keep = torch.rand(h.shape, generator=_noise_generator(self, h), device=h.device) >= self.dropout
                h = h * keep / (1.0 - self.dropout)
            return torch.nn.functional.max_pool2d(act(layers[i](h)), 2)
        return act(layers[i](h.flatten(1)))

    def _per_model(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim == 4:
            return [x] * self.n_models
        if x.ndim == 5 and x.shape[0] == self.n_models:
            return list(x)
        raise ValueError(f"x must be (B, C, H, W) or ({self.n_models}, B, C, H, W), got {tuple(x.shape)}")

    def _outputs(self, x: torch.Tensor):
        per = []
        for layers, h in zip(self.nets, self._per_model(x.to(self.nets[0][0].weight.dtype))):
            outs = []
            if self.input_noise:
                h = self._noisy(h)
            for i in range(len(layers) - 1):
                h = self._noisy(self._block(layers, i, h))
                outs.append(h.flatten(1))
            outs.append(layers[-1](h.flatten(1)))
            per.append(outs)
        return [torch.stack(level) for level in zip(*per)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._outputs(x)[-1]

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden block's output (flattened) and the output layer (``output``: the softmax or its logarithm),
        each ``(S, B, features)``."""
        *hidden, logits = self._outputs(x)
        return hidden + [getattr(torch, self.output)(logits, dim=-1)]

    def centres(self, x: torch.Tensor, replicas: int, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Sample-propagation centres of every hidden block, as :meth:`MLP.centres` (input-major replicas)."""
        if self.noise_std <= 0:
            raise ValueError(f"centres need a noisy network (noise_std > 0), got noise_std={self.noise_std}")
        if self.relative_noise or self.input_noise:
            raise ValueError("centres need additive noise after the hidden blocks only (the Gaussian mixture of "
                             f"sample propagation); got relative_noise={self.relative_noise}, "
                             f"input_noise={self.input_noise}")  # fmt: skip
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        per = []
        for layers, h in zip(self.nets, self._per_model(x.to(self.nets[0][0].weight.dtype))):
            outs = []
            for i in range(len(layers) - 1):
                c = self._block(layers, i, h)
                outs.append(c.flatten(1))
                if i == 0:
                    c = c.repeat_interleave(replicas, dim=0)
                h = c + self._noise(c, generator)
            per.append(outs)
        return [torch.stack(level) for level in zip(*per)]
