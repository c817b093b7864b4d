"""Residual networks laid out as torchvision's (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4`` of
:class:`BasicBlock` s, ``avgpool``, ``fc``), built locally (no weights are downloaded), so that module names such as
``"layer3.1.relu"`` mean what they mean in torchvision; and :class:`GaussianNoise`, a noise layer to insert anywhere.

:func:`resnet18` is torchvision's ResNet-18 (11.2 M parameters at 3 input channels and 1000 classes) for any number
of input channels and classes; :func:`small_resnet` is the book's MNIST network: the same layout at widths
16-32-64-128, one block per stage, a 3x3 stem without max-pooling (a 28x28 digit would be 7x7 after torchvision's
7x7/2 stem and 3x3/2 pooling).

With ``noise_std > 0`` every block ends with :class:`GaussianNoise` (named ``layerK.B.noise``), on in training and
in evaluation, drawn from the module's own generator: the noisy-network setting of Goldfeld et al. (2019), in which
I(X;T) of a block's output is finite and sample propagation measures it from the block's noise-free input, the
centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["GaussianNoise", "BasicBlock", "ResNet", "resnet18", "small_resnet"]


class GaussianNoise(nn.Module):
    """Adds ``std * N(0, 1)`` noise (or ``std * |x| * N(0, 1)`` with ``relative``) to its input while ``active``, in
    training and in evaluation alike, from its own generator (seeded by ``seed``, created on the data's device on
    first use, saved in checkpoints). Its input is the centre of the noisy output: :class:`ibcore.probe.Probe` taps
    it for sample propagation. ``passes_through``: not a layer of its own in :func:`ibcore.taps.default_layers`.

    Example:
        >>> noise = GaussianNoise(0.5, seed=1)
        >>> x = torch.zeros(4, 3)
        >>> bool((noise.eval()(x) != 0).all())  # on in evaluation too
        True
        >>> bool(torch.equal(GaussianNoise(0.5, seed=1)(x), GaussianNoise(0.5, seed=1)(x)))  # its own generator
        True
    """

    passes_through = True

    def __init__(self, std: float, *, relative: bool = False, seed: int = 0):
        super().__init__()
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not (math.isfinite(std) and std >= 0):
            raise ValueError(f"std must be a finite number >= 0, got {std!r}")
        self.std, self.relative, self.seed, self.active = float(std), bool(relative), int(seed), True
        self._noise_generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or self.std == 0:
            return x
        g = self._noise_generator
        if g is None or g.device != x.device:
            s = int(np.random.SeedSequence([self.seed, 0x6E]).generate_state(1, np.uint64)[0] >> 1)
            g = self._noise_generator = torch.Generator(device=x.device).manual_seed(s)
        eps = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return x + self.std * (x.abs() if self.relative else 1.0) * eps

    def extra_repr(self) -> str:
        return f"std={self.std}, relative={self.relative}, seed={self.seed}"


class BasicBlock(nn.Module):
    """torchvision's basic residual block: two 3x3 convolutions with batch norm, the identity (or a 1x1 projection
    ``downsample`` when the shape changes) added before the last ReLU; then optional :class:`GaussianNoise`."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, noise: GaussianNoise | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out + identity)
        return out if self.noise is None else self.noise(out)


class ResNet(nn.Module):
    """A residual classifier with torchvision's module names.

    Arguments:
        blocks: Basic blocks per stage (ResNet-18: ``(2, 2, 2, 2)``).
        widths: Channels per stage (ResNet-18: ``(64, 128, 256, 512)``); stages after the first halve the resolution.
        in_channels, n_classes: Input channels and classes.
        stem: ``"imagenet"`` (7x7/2 convolution and 3x3/2 max-pooling, torchvision's) or ``"small"`` (a 3x3/1
            convolution, ``maxpool`` the identity: for 28x28 and 32x32 images).
        noise_std: Gaussian noise after every block (0: none); ``relative_noise`` makes it multiplicative.
        seed: Initialisation (a local generator: torchvision's Kaiming-normal convolutions, unit batch norms,
            PyTorch's default linear layer) and the noise layers' seeds.
        device, dtype: Where the parameters live.

    Example:
        >>> net = small_resnet(seed=0)
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> [n for n, _ in net.named_children()]
        ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4', 'avgpool', 'fc']
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512), *,
                 in_channels: int = 3, n_classes: int = 1000, stem: str = "imagenet", noise_std: float = 0.0,
                 relative_noise: bool = False, seed: int = 0, device=None,
                 dtype: torch.dtype = torch.float32):  # fmt: skip
        super().__init__()
        if len(blocks) != len(widths) or not blocks or any(int(b) < 1 for b in blocks):
            raise ValueError(f"blocks and widths need one entry >= 1 per stage, got blocks={tuple(blocks)}, "
                             f"widths={tuple(widths)}")  # fmt: skip
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        self.seed = int(seed)
        w0 = int(widths[0])
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, w0, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, w0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)
        inplanes, count = w0, 0
        for i, (b, w) in enumerate(zip(blocks, widths), start=1):
            stage = []
            for j in range(int(b)):
                noise = GaussianNoise(noise_std, relative=relative_noise, seed=self.seed * 1009 + count) \
                    if noise_std > 0 else None  # fmt: skip
                stage.append(BasicBlock(inplanes, int(w), 2 if (i > 1 and j == 0) else 1, noise))
                inplanes, count = int(w), count + 1
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.n_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, n_classes)
        # modules are named in torchvision's order (conv1, bn1, relu, maxpool, layers, avgpool, fc)
        stages = [f"layer{i}" for i in range(1, self.n_stages + 1)]
        order = ["conv1", "bn1", "relu", "maxpool", *stages, "avgpool", "fc"]
        self._modules = {k: self._modules[k] for k in order}
        self._init(device, dtype)

    def _init(self, device, dtype) -> None:
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):  # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
                    fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_out))
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                elif isinstance(m, nn.Linear):  # PyTorch's default: uniform on +-1/sqrt(fan_in)
                    bound = 1.0 / math.sqrt(m.in_features)
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
        self.to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(*, in_channels: int = 3, n_classes: int = 1000, **kw) -> ResNet:
    """torchvision's ResNet-18 layout (``BasicBlock``, ``[2, 2, 2, 2]``, widths 64-512), built locally."""
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), in_channels=in_channels, n_classes=n_classes, **kw)


def small_resnet(*, in_channels: int = 1, n_classes: int = 10, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 1, 1, 1), **kw) -> ResNet:  # fmt: skip
    """The book's MNIST ResNet: ResNet-18's layout at widths 16-128, one block per stage, the small stem
    (feature maps 28, 14, 7 and 4 pixels wide)."""
    return ResNet(tuple(blocks), tuple(widths), in_channels=in_channels, n_classes=n_classes, stem="small", **kw)
