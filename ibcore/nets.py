"""Networks whose layers the book measures.

:class:`MLP` holds ``n_models`` independent networks of the same shape as stacked weight tensors, so that several
seeds train together in one batched matrix product per layer: on small networks such as the SZT 12-10-7-5-4-3-2 net
one step costs about the same for 1 or 20 seeds. Model ``s`` is initialised from its own seed, so a stacked run
gives the same networks as separate runs with those seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import skip_init

from . import quantization
from .quantization import RunningRange, check_bits, fake_quantize

__all__ = ["MLP", "NoisyCNN", "OrthonormalUpdate", "ACTIVATIONS", "SZT_WIDTHS"]

#: Fixed output ranges of the activations whose range is known; the others use a running range when quantized.
_FIXED_RANGES = {"tanh": (-1.0, 1.0)}

#: The SZT network of Shwartz-Ziv & Tishby (2017): 12 inputs, hidden 10-7-5-4-3, 2-way softmax output.
SZT_WIDTHS = (12, 10, 7, 5, 4, 3, 2)

ACTIVATIONS = {
    "tanh": torch.tanh, "relu": torch.relu, "leaky_relu": torch.nn.functional.leaky_relu, "linear": lambda v: v,
}  # fmt: skip

_INITS = ("truncated_normal", "glorot_uniform", "torch_default")


def _noise_generator(net, like: torch.Tensor) -> torch.Generator:
    # The network's own generator for its noise and dropout masks: seeded from its seeds, created on first use on the
    # data's device.
    if net._noise_generator is None or net._noise_generator.device != like.device:
        seed = int(np.random.SeedSequence([*net.seeds, 0x5E]).generate_state(1, np.uint64)[0] >> 1)
        net._noise_generator = torch.Generator(device=like.device).manual_seed(seed)
    return net._noise_generator


def _gaussian_noise(net, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # noise_std * N(0, 1) shaped like ``like``, from ``generator`` or the network's own generator.
    generator = _noise_generator(net, like) if generator is None else generator
    return net.noise_std * torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


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
            for i in range(n_layers):
                if i == n_layers - 1 or activation not in _FIXED_RANGES:
                    self.ranges[str(i)] = RunningRange(len(seeds), range_decay, device=device, dtype=dtype)
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
        if self.bits is None or not self.quantize_weights:
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
        p = torch.softmax(logits, dim=-1)
        if self.bits is not None:
            p = fake_quantize(p, 0.0, 1.0, self.levels)
        return hidden + [p]


class OrthonormalUpdate:
    """Pulls the hidden weight matrices towards orthonormality after each step: W <- W - alpha (W W^T W - W).

    The update of Goldfeld et al. (ICML 2019, Fig. 5b; the Parseval-network retraction of Cisse et al. 2017),
    applied to every layer but the last. A near-orthonormal layer keeps distances between its inputs, so it cannot
    cluster them: the regularisation suppresses compression. Use it as ``fit(..., after_step=[OrthonormalUpdate(a)])``.

    Arguments:
        alpha: Step size of the retraction (> 0; the authors' runs use 1e-4 to 1e-2).

    Example:
        >>> net = MLP((4, 4, 2), seeds=[0])
        >>> step = OrthonormalUpdate(0.1)
        >>> with torch.no_grad():
        ...     for _ in range(300):
        ...         step(net)
        >>> w = net.weights[0][0]
        >>> bool(torch.allclose(w.T @ w, torch.eye(4), atol=1e-4))
        True
    """

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, model: MLP) -> None:
        for w in list(model.weights)[:-1]:  # (S, fan_in, fan_out)
            w.sub_(self.alpha * (w @ (w.mT @ w) - w))


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
