"""Helpers shared by the networks of :mod:`ibcore.nets`: the hidden activations and the noise generator.

:data:`ACTIVATIONS` maps activation names to functions. Noisy networks (:class:`~ibcore.nets.MLP` with
``noise_std > 0``, :class:`~ibcore.nets.NoisyCNN`) draw their noise and dropout masks from their own generator,
seeded from their seeds and created on first use on the data's device.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ACTIVATIONS"]

ACTIVATIONS = {
    "tanh": torch.tanh, "relu": torch.relu, "leaky_relu": torch.nn.functional.leaky_relu, "linear": lambda v: v,
}  # fmt: skip


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
