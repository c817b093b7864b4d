"""Networks whose layers the book measures.

One module per family, every public name re-exported here (``from ibcore.nets import MLP`` keeps working):

- :mod:`ibcore.nets.mlp`: :class:`MLP`, ``n_models`` fully connected networks of the same widths as stacked weight
  tensors (optionally quantized or noisy), :data:`SZT_WIDTHS`, the SZT 12-10-7-5-4-3-2 network, and
  :data:`MNIST_WIDTHS`, Lorenzen et al.'s fully connected MNIST networks;
- :mod:`ibcore.nets.cnn`: :class:`NoisyCNN`, a small convolutional classifier with Gaussian noise and dropout;
- :mod:`ibcore.nets.resnet`: :class:`ResNet` with torchvision's module names (:func:`resnet18`, :func:`small_resnet`)
  and :class:`GaussianNoise`, a noise layer to put into any network;
- :mod:`ibcore.nets.orthonormal`: :class:`OrthonormalUpdate`, the orthonormality retraction of the hidden weights;
- :mod:`ibcore.nets.common`: what they share, :data:`ACTIVATIONS` and the networks' own noise generator.
"""

from .cnn import NoisyCNN
from .common import ACTIVATIONS
from .mlp import MLP, MNIST_WIDTHS, SZT_WIDTHS
from .orthonormal import OrthonormalUpdate
from .resnet import BasicBlock, GaussianNoise, ResNet, resnet18, small_resnet

__all__ = ["MLP", "NoisyCNN", "OrthonormalUpdate", "ACTIVATIONS", "SZT_WIDTHS", "MNIST_WIDTHS", "ResNet", "BasicBlock",
           "GaussianNoise", "resnet18", "small_resnet"]
