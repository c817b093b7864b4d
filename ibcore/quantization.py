"""Quantization-aware training: fake quantization with a straight-through gradient.

A quantized network (Lorenzen, Igel & Nielsen, ICLR 2022) rounds every activation to one of ``2**bits`` evenly
spaced levels inside a per-layer range, so each neuron takes finitely many values and the information plane of a
finite input set can be computed exactly (:mod:`ibcore.estimators.exact`). Training sees the rounded values in the
forward pass and passes gradients straight through the rounding (zero outside the range), as TensorFlow's
``fake_quant_with_min_max_vars`` does.

Ranges, per stacked network and per layer (one range for the whole layer, as TensorFlow's default per-tensor
quantizers):

* fixed: a known output range, ``[-1, 1]`` for tanh and ``[0, 1]`` for the softmax output;
* running (:class:`RunningRange`): an exponential moving average of each training batch's minimum and maximum
  (always containing 0), TensorFlow's ``MovingAverageQuantizer``; used for ReLU and linear layers and for the
  logits. The first forward pass, training or not, initialises the range from its batch; in evaluation mode the
  range is frozen, so a layer is a fixed function of the layer before it;
* weights (:func:`quantize_weights`): symmetric ``[-max|W|, max|W|]`` of the current weights with ``2**bits - 1``
  levels, so zero is a level (TensorFlow's ``LastValueQuantizer`` with a narrow range); biases stay in float.

:data:`SCHEMES` names two ways of putting these together. ``"ibcore"`` (the default) is the one above: every layer
is one fixed function of the layer before it once trained. ``"lorenzen"`` is what the code of Lorenzen et al.
(ExactIBAnalysisInQNNs, TensorFlow Model Optimization) does:

* tanh layers are rounded to ``2**bits`` levels between the minimum and maximum of the tanh output *of the batch*
  (in evaluation, of the inputs passed together), and the weights of a tanh network's hidden layers stay in float;
* ReLU layers and the softmax output use a moving-average range (decay 0.999) that starts at TensorFlow's
  ``[-6, 6]``, not at the first batch, with ``2**bits`` levels;
* weights of ReLU layers and of the output layer are rounded to ``2**bits`` levels of ``[min W, max W]``
  (``LastValueQuantizer(symmetric=False, narrow_range=False)``, :func:`quantize_weights_asymmetric`);
* the logits stay in float: the network's output is the rounded softmax, and training minimises the cross-entropy of
  the rounded probabilities (Keras' ``categorical_crossentropy`` on a softmax layer).

Their exact MI is computed after rounding each layer once more onto ``2**bits + 1`` levels of its own range over the
measured inputs (``QuantizedEstimator(bounds="layer")``): :class:`ibcore.estimators.Binning` with
``n_bins=2**bits, rounding="nearest"``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fake_quantize", "quantize_weights", "quantize_weights_asymmetric", "check_bits", "RunningRange",
           "UNQUANTIZED_BITS", "SCHEMES", "check_scheme"]

#: The quantization schemes of :class:`ibcore.nets.MLP` (see the module docstring).
SCHEMES = ("ibcore", "lorenzen")

#: ``bits=32`` stands for the unquantized float32 network, as in Lorenzen et al.'s figures.
UNQUANTIZED_BITS = 32
_MAX_BITS = 16
_TINY = 1e-30


def check_bits(bits) -> int | None:
    """``None`` for an unquantized network (``bits`` None or 32), else ``bits`` as an int in [2, 16]."""
    if bits is None or (isinstance(bits, int) and not isinstance(bits, bool) and bits == UNQUANTIZED_BITS):
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= _MAX_BITS:
        raise ValueError(f"bits must be an integer in [2, {_MAX_BITS}], or 32 / None for no quantization, got {bits!r}")
    return bits


def check_scheme(scheme) -> str:
    """``scheme`` if it is one of :data:`SCHEMES`, else ``ValueError``."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    return scheme


class _FakeQuantize(torch.autograd.Function):
    # One autograd node: forward rounds, backward passes the gradient where lo <= v <= hi. lo and hi are numbers or
    # tensors broadcasting against v.

    @staticmethod
    def forward(ctx, v, lo, hi, levels):
        step = (hi - lo) / (levels - 1)
        # a zero-width range divides by a tiny step instead of 0: every value rounds to level 0, i.e. to lo
        safe = step.clamp_min(_TINY) if isinstance(step, torch.Tensor) else max(step, _TINY)
        q = torch.round((torch.clamp(v, lo, hi) - lo) / safe) * step + lo
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((v >= lo) & (v <= hi))
        return q

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quantize(v: torch.Tensor, lo, hi, levels: int) -> torch.Tensor:
    """Round ``v`` to the nearest of ``levels`` evenly spaced values on ``[lo, hi]``; straight-through gradient.

    Values outside ``[lo, hi]`` go to the end levels, and their gradient is zero; inside, the gradient is the
    identity. ``lo`` and ``hi`` are numbers or tensors broadcasting against ``v`` (per-network ranges); a range of
    width zero maps everything to ``lo``. The output for level ``k`` is the same float ``lo + k * step`` wherever it
    occurs, so equal levels give bit-identical values.

    Example:
        >>> fake_quantize(torch.tensor([-2.0, -0.2, 0.2, 0.5, 3.0]), -1.0, 1.0, levels=5)
        tensor([-1.0000,  0.0000,  0.0000,  0.5000,  1.0000])
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if isinstance(lo, torch.Tensor):
        lo = lo.detach()
    if isinstance(hi, torch.Tensor):
        hi = hi.detach()
    return _FakeQuantize.apply(v, lo, hi, levels)


def quantize_weights(w: torch.Tensor, levels: int) -> torch.Tensor:
    """Round each network's weight matrix to ``levels`` (odd) symmetric levels on ``[-max|W|, max|W|]``.

    ``w`` is ``(S, fan_in, fan_out)``; the range is per network. Zero is a level. The gradient is the identity (every
    weight lies inside its range, so the straight-through mask is all ones and is skipped).
    """
    if levels < 3 or levels % 2 == 0:
        raise ValueError(f"levels must be odd and >= 3 for symmetric weights, got {levels}")
    half = (levels - 1) // 2
    step = (w.detach().abs().amax(dim=(1, 2), keepdim=True) / half).clamp_min(_TINY)
    q = torch.round(w.detach() / step) * step
    return q + (w - w.detach())  # exactly q forward, identity gradient backward


def quantize_weights_asymmetric(w: torch.Tensor, levels: int) -> torch.Tensor:
    """Round each network's weight matrix to ``levels`` evenly spaced values of ``[min W, max W]`` widened to contain
    0 (TensorFlow's ``LastValueQuantizer(symmetric=False, narrow_range=False)``, which Lorenzen et al. use).

    ``w`` is ``(S, fan_in, fan_out)``; the range is per network. The gradient is the identity.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    lo = w.detach().amin(dim=(1, 2), keepdim=True).clamp(max=0)
    hi = w.detach().amax(dim=(1, 2), keepdim=True).clamp(min=0)
    q = fake_quantize(w.detach(), lo, hi, levels)
    return q + (w - w.detach())


class RunningRange(nn.Module):
    """Per-network running ``[lo, hi]`` of a layer's values: moving averages of batch min and max.

    Arguments:
        n_models: Number of stacked networks; the range has shape ``(n_models, 1, 1)``.
        decay: Weight of the old range in the moving average (TensorFlow's default 0.999).
        start: ``None``: the first batch sets the range; a pair ``(lo, hi)``: the range starts there and moves
            towards the batches from the first one on (TensorFlow's ``MovingAverageQuantizer`` starts at
            ``(-6, 6)``).
    """

    def __init__(self, n_models: int, decay: float = 0.999, device=None, dtype=torch.float32, start=None):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if start is not None and not (len(start) == 2 and float(start[0]) <= 0.0 <= float(start[1])):
            raise ValueError(f"start must be None or a pair (lo, hi) with lo <= 0 <= hi, got {start!r}")
        self.decay = decay
        self.register_buffer("lo", torch.zeros(n_models, 1, 1, device=device, dtype=dtype))
        self.register_buffer("hi", torch.zeros(n_models, 1, 1, device=device, dtype=dtype))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool, device=device))  # saved with the model
        self._ready = False  # the same flag as a Python bool: no device-to-host sync per step
        if start is not None:
            self.lo.fill_(float(start[0]))
            self.hi.fill_(float(start[1]))
            self.initialized.fill_(True)
            self._ready = True

    @torch.no_grad()
    def update(self, v: torch.Tensor) -> None:
        """Fold the batch ``v`` of shape ``(n_models, B, width)`` into the range (training) or initialise it."""
        lo, hi = torch.aminmax(v.reshape(v.shape[0], -1), dim=1)
        lo, hi = lo.clamp(max=0).view_as(self.lo), hi.clamp(min=0).view_as(self.hi)
        if not self._ready:
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.initialized.fill_(True)
            self._ready = True
        elif self.training:
            self.lo.lerp_(lo, 1.0 - self.decay)
            self.hi.lerp_(hi, 1.0 - self.decay)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.initialized)

    def forward(self, v: torch.Tensor, levels: int) -> torch.Tensor:
        self.update(v)
        return fake_quantize(v, self.lo, self.hi, levels)
