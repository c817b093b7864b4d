"""Data sets used by the information-bottleneck experiments.

``szt`` regenerates the 12-bit task of Shwartz-Ziv and Tishby from its label rule (no files needed) and provides
its standard train/test splits; ``mnist`` reads MNIST from local, md5-checked IDX files and ``cifar`` CIFAR-10 from
the md5-checked binary version, each downloading only when asked. Importing this package reads no files and touches
no network.

Example:
    >>> from ibcore.data import szt_dataset, szt_split
    >>> data = szt_dataset()
    >>> train, test = szt_split("stratified", seed=1000)
    >>> data.x[train].shape
    torch.Size([3276, 12])
"""

from .szt import (
    SZT_H_X_NATS,
    SZT_IDNNS_N_TRAIN,
    SZT_MI_BITS,
    SZT_MI_NATS,
    SZT_N_BITS,
    SZT_N_INPUTS,
    SZT_N_POSITIVES,
    SZT_SPLIT_KINDS,
    SZTData,
    szt_dataset,
    szt_labels,
    szt_score,
    szt_split,
)
from .cifar import CIFAR10_CLASSES, CIFAR10_SPLITS, cifar10_tensors, load_cifar10
from .mnist import MNIST_MIRRORS, MNIST_SPLITS, default_download_dir, load_mnist, mnist_tensors

__all__ = [
    "SZTData",
    "szt_dataset",
    "szt_split",
    "szt_labels",
    "szt_score",
    "SZT_N_BITS",
    "SZT_N_INPUTS",
    "SZT_N_POSITIVES",
    "SZT_H_X_NATS",
    "SZT_MI_NATS",
    "SZT_MI_BITS",
    "SZT_IDNNS_N_TRAIN",
    "SZT_SPLIT_KINDS",
    "load_mnist",
    "mnist_tensors",
    "default_download_dir",
    "MNIST_SPLITS",
    "MNIST_MIRRORS",
    "load_cifar10",
    "cifar10_tensors",
    "CIFAR10_SPLITS",
    "CIFAR10_CLASSES",
]
