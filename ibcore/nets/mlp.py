"""The stacked fully connected networks of the SZT, quantized and noisy chapters.

:class:`MLP` holds ``n_models`` independent networks of the same shape as stacked weight tensors, so that several
seeds train together in one batched matrix product per layer: on small networks such as the SZT 12-10-7-5-4-3-2 net
one step costs about the same for 1 or 20 seeds. Model ``s`` is initialised from its own seed, so a stacked run
gives the same networks as separate runs with those seeds. :data:`SZT_WIDTHS` are the widths of the SZT network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import quantization
from ..quantization import RunningRange, check_bits, fake_quantize
from .common import ACTIVATIONS, _gaussian_noise

__all__ = ["MLP", "MNIST_WIDTHS", "SZT_WIDTHS"]

#: Fixed output ranges of the activations whose range is known; the others use a running range when quantized.
_FIXED_RANGES = {"tanh": (-1.0, 1.0)}

#: The SZT network of Shwartz-Ziv & Tishby (2017): 12 inputs, hidden 10-7-5-4-3, 2-way softmax output.
SZT_WIDTHS = (12, 10, 7, 5, 4, 3, 2)

#: The fully connected MNIST networks of Lorenzen, Igel & Nielsen (ICLR 2022), by the names their code registers
#: (``IB/models``: MNIST-Bottleneck-2, -Bottleneck-4, -HourGlass, -4x10): 784 inputs, ReLU hidden layers (their
#: ``quantize.py`` trains every MNIST network with ReLU), a 10-way softmax output.
MNIST_WIDTHS = {
    "bottleneck-2": (784, 16, 8, 4, 2, 10),
    "bottleneck-4": (784, 16, 12, 8, 4, 10),
    "hourglass": (784, 16, 8, 4, 2, 4, 8, 10),
    "4x10": (784, 10, 10, 10, 10, 10),
}

_INITS = ("truncated_normal", "glorot_uniform", "torch_default")


class MLP(nn.Module):
    """A stack of ``n_models = len(seeds)`` fully connected networks with identical widths.

    Arguments:
        widths: Layer widths from input to output, e.g. :data:`SZT_WIDTHS`.
        activation: Hidden activation, a key of :data:`ACTIVATIONS`. The output layer is linear (logits).
        seeds: One seed per stacked model, used for its initialisation (local generators only).
        init: ``"truncated_normal"`` (std 1/sqrt(fan_in), cut at two std, zero biases: the IDNNs code of
            Shwartz-Ziv & Tishby), ``"glorot_uniform"`` (Keras' default, used by Lorenzen et al.) or
            ``"torch_default"`` (PyTorch's ``nn.Linear`` default: weights and biases uniform on
            +-1/sqrt(fan_in), as in the noisy-network code of Goldfeld et al.).
        bits: Quantization-aware training (:mod:`ibcore.quantization`): every hidden activation and the logits are
            rounded to ``2**bits`` levels in the forward pass, with straight-through gradients; ``None`` or 32 for
            the float network. Tanh layers use their output range [-1, 1], ReLU and linear layers and the logits a
            running range per network; the softmax output returned by :meth:`layers` is rounded to ``2**bits``
            levels of [0, 1]. Each layer is then a function of the layer before it taking finitely many values.
        quantize_weights: With ``bits``, also round each weight matrix to ``2**bits - 1`` symmetric levels.
        range_decay: Moving-average decay of the running ranges.
        scheme: With ``bits``: ``"ibcore"`` (the above) or ``"lorenzen"``, the quantizers of Lorenzen et al.'s
            code (:mod:`ibcore.quantization`: tanh on each batch's range with float hidden weights, running ranges
            from [-6, 6], asymmetric weights, the rounded softmax as output); ``quantize_weights`` is then ignored.
        noise_std: Noisy network (Goldfeld et al., ICML 2019): Gaussian noise of this standard deviation is added
            after every hidden activation, in training and in evaluation, while :attr:`noise` is true (the switch;
            set it to ``False`` for the noiseless network). The noise comes from the network's own generator,
            seeded from its seeds. :meth:`centres` gives the sample-propagation centres of every hidden layer.
        device, dtype: Where the parameters live.

    Shapes:
        ``forward(x)``: x is ``(B, d_in)`` (the same inputs for every model) or ``(S, B, d_in)``; returns logits
        ``(S, B, d_out)``. ``layers(x)`` returns the hidden activations and the softmax output, each ``(S, B, w)``.

    Example:
        >>> net = MLP(SZT_WIDTHS, "tanh", seeds=[0, 1, 2])
        >>> net(torch.zeros(5, 12)).shape
        torch.Size([3, 5, 2])
        >>> [t.shape[-1] for t in net.layers(torch.zeros(5, 12))]
        [10, 7, 5, 4, 3, 2]
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "tanh",
        *,
        seeds: Sequence[int] = (0,),
        init: str = "truncated_normal",
        bits: int | None = None,
        quantize_weights: bool = True,
        range_decay: float = 0.999,
        scheme: str = "ibcore",
        noise_std: float = 0.0,
        device=None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least an input and an output width, all >= 1, got {widths}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {list(_INITS)}, got {init!r}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one model")
        self.widths, self.activation, self.seeds, self.init = widths, activation, seeds, init
        self.bits, self.quantize_weights = check_bits(bits), bool(quantize_weights)
        self.scheme = quantization.check_scheme(scheme)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not (
            math.isfinite(noise_std) and noise_std >= 0
        ):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        if noise_std > 0 and self.bits is not None:
            raise ValueError(f"a network is either noisy or quantized, got noise_std={noise_std} and bits={bits}")
        self.noise_std = float(noise_std)
        self.noise = self.noise_std > 0  # the switch: noise on (training and estimation) or off
        self._noise_generator: torch.Generator | None = None
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            self.weights.append(nn.Parameter(torch.empty(len(seeds), fan_in, fan_out, device=device, dtype=dtype)))
            self.biases.append(nn.Parameter(torch.zeros(len(seeds), 1, fan_out, device=device, dtype=dtype)))
        # Running ranges of the quantized layers without a fixed range (the logits always have one).
        self.ranges = nn.ModuleDict()
        if self.bits is not None:
            n_layers = len(widths) - 1
            start = (-6.0, 6.0) if self.scheme == "lorenzen" else None  # TensorFlow's MovingAverageQuantizer
            for i in range(n_layers):
                if i == n_layers - 1 or activation not in _FIXED_RANGES:
                    self.ranges[str(i)] = RunningRange(len(seeds), range_decay, device=device, dtype=dtype,
                                                       start=start)  # fmt: skip
        self.reset_parameters()

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for s, seed in enumerate(self.seeds):
            g = torch.Generator(device="cpu").manual_seed(seed)
            for w, b in zip(self.weights, self.biases):
                fan_in, fan_out = w.shape[1:]
                if self.init == "truncated_normal":
                    std = 1.0 / math.sqrt(fan_in)
                    v = torch.nn.init.trunc_normal_(
                        torch.empty(fan_in, fan_out), std=std, a=-2 * std, b=2 * std, generator=g
                    )
                elif self.init == "glorot_uniform":
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    v = torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g)
                else:
                    bound = 1.0 / math.sqrt(fan_in)
                    v = torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g)
                    b[s].copy_(torch.empty(1, fan_out).uniform_(-bound, bound, generator=g))
                w[s].copy_(v)
                if self.init != "torch_default":
                    b[s].zero_()

    def _stack(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x.unsqueeze(0).expand(self.n_models, *x.shape)
        if x.ndim == 3 and x.shape[0] == self.n_models:
            return x
        raise ValueError(f"x must be (B, {self.widths[0]}) or ({self.n_models}, B, {self.widths[0]}), got {tuple(x.shape)}")

    @property
    def levels(self) -> int | None:
        """Number of values each quantized activation can take (``2**bits``), or ``None`` for the float network."""
        return None if self.bits is None else 2**self.bits

    def _weight(self, i: int) -> torch.Tensor:
        w = self.weights[i]
        if self.bits is None:
            return w
        if self.scheme == "lorenzen":  # float hidden weights in tanh networks; 2**bits levels of [min, max] else
            hidden_tanh = self.activation in _FIXED_RANGES and i < len(self.weights) - 1
            return w if hidden_tanh else quantization.quantize_weights_asymmetric(w, self.levels)
        if not self.quantize_weights:
            return w
        return quantization.quantize_weights(w, self.levels - 1)

    def _noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return _gaussian_noise(self, like, generator)

    def _activate(self, i: int, z: torch.Tensor) -> torch.Tensor:
        h = ACTIVATIONS[self.activation](z)
        if self.noise and self.noise_std > 0:
            return h + self._noise(h)
        if self.bits is None:
            return h
        if str(i) in self.ranges:
            return self.ranges[str(i)](h, self.levels)
        if self.scheme == "lorenzen":  # the batch's own range, per network
            lo, hi = torch.aminmax(h.detach().reshape(h.shape[0], -1), dim=1)
            return fake_quantize(h, lo.view(-1, 1, 1), hi.view(-1, 1, 1), self.levels)
        return fake_quantize(h, *_FIXED_RANGES[self.activation], self.levels)

    def _outputs(self, x: torch.Tensor):
        # Yields the hidden representations T_1 .. T_{L-1}, then the (quantized) logits.
        h = self._stack(x.to(self.weights[0].dtype))
        last = len(self.weights) - 1
        for i, b in enumerate(self.biases):
            z = torch.baddbmm(b, h, self._weight(i))  # (S, B, fan_out)
            if i < last:
                h = self._activate(i, z)
                yield h
            elif self.bits is None:
                yield z
            elif self.scheme == "lorenzen":  # the rounded softmax; its log, as logits for the cross-entropy
                p = self.ranges[str(i)](torch.softmax(z, dim=-1), self.levels)
                yield torch.log(p.clamp_min(1e-7))
            else:
                yield self.ranges[str(i)](z, self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, logits = self._outputs(x)
        return logits

    def centres(self, x: torch.Tensor, replicas: int, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Sample propagation (Goldfeld et al. 2019): the Gaussian-mixture centres of every hidden layer given x.

        A noisy hidden layer is T_l = f_l(T_{l-1}) + Z. Given input x_i, T_1 is Gaussian around f_1(x_i): layer 1
        has one centre per input, ``(S, N, w_1)``. Deeper layers are mixtures over the noisy previous layer, sampled
        with ``replicas`` noisy propagations per input: ``(S, N * replicas, w_l)``, input-major (input i's centres
        are rows ``i * replicas`` to ``(i + 1) * replicas - 1``). Feed them with the matching input ids to
        :class:`ibcore.estimators.SamplePropagation` with ``noise_std`` set to the network's.

        Arguments:
            x: Inputs ``(N, d_in)``.
            replicas: Noisy propagations per input for layers 2 and deeper.
            generator: Generator of the noise (default: the network's own).
        """
        if self.noise_std <= 0:
            raise ValueError(f"centres need a noisy network (noise_std > 0), got noise_std={self.noise_std}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        act = ACTIVATIONS[self.activation]
        h = self._stack(x.to(self.weights[0].dtype))
        out = []
        for i, (w, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            c = act(torch.baddbmm(b, h, w))
            out.append(c)
            if i == 0:
                c = c.repeat_interleave(replicas, dim=1)
            h = c + self._noise(c, generator)
        return out

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's representation T_1 .. T_L of the inputs ``x``: hidden activations, then softmax output."""
        *hidden, logits = self._outputs(x)
        if self.bits is not None and self.scheme == "lorenzen":
            return hidden + [torch.exp(logits)]  # the rounded softmax itself (clamped at 1e-7, as Keras does)
        p = torch.softmax(logits, dim=-1)
        if self.bits is not None:
            p = fake_quantize(p, 0.0, 1.0, self.levels)
        return hidden + [p]
