"""Seeded initialisation of trained estimators' networks: every parameter drawn from a local generator, nothing
from the global one (library code never seeds or advances the user's random stream)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["init_uniform"]


def init_uniform(module: nn.Module, generator: torch.Generator, layers: tuple[type, ...],
                 drawn: tuple[type, ...] = ()) -> None:  # fmt: skip
    """Zero every parameter of ``module``, then draw the weights and biases of its ``layers`` uniformly on
    +-1/sqrt(fan_in) (PyTorch's default for linear and convolutional layers) from ``generator`` (a CPU generator;
    the values are copied to the parameters' device). Submodules of the ``drawn`` types draw their own parameters
    (``m.draw(generator)``) where the walk through the modules meets them."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        for m in module.modules():
            if isinstance(m, drawn):
                m.draw(generator)
            elif isinstance(m, layers):
                fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
                bound = 1.0 / math.sqrt(fan_in)
                for p in (m.weight, m.bias):
                    if p is not None:
                        p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator))
