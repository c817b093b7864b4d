"""The 12-bit SZT task of Shwartz-Ziv and Tishby (the ``var_u.mat`` data set), regenerated from its label rule.

The inputs are all 4096 binary strings of 12 bits; row ``n`` is ``n`` written in binary, most significant bit first.
The label is a deterministic function of the input, so I(X;Y) = H(Y) and H(X) = ln 4096 exactly.

The authors never published the label function. The rule used here was reverse-engineered from ``var_u.mat`` and
reproduces all 4096 of its labels: bit ``j`` sits on vertex ``v_j`` of a regular icosahedron (unit length); with the
bit count ``w = sum_j x_j`` and ``R = |sum_j x_j v_j|^2``,

    y = 1  iff  w >= 8, or (w = 7 and R > 0.5), or (w = 6 and R > 2.5), or (w = 5 and R > 7).

Regeneration is checked against three fingerprints of the original labels (md5 of the packed labels, the number of
positives and the sum of their indices); a failure raises ``RuntimeError``, never a silently different data set.

References:
    Shwartz-Ziv & Tishby, "Opening the black box of deep neural networks via information", 2017.
    https://arxiv.org/abs/1703.00810
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

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
]

SZT_N_BITS = 12
SZT_N_INPUTS = 2**SZT_N_BITS  # 4096
SZT_N_POSITIVES = 2118

SZT_H_X_NATS = math.log(SZT_N_INPUTS)  # 12 bits = 8.3178 nats: the inputs are uniform over all 4096 strings


def _binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1.0 - p) * math.log(1.0 - p))


# The labels are a function of the input, so I(X;Y) = H(Y) = 0.69256 nats = 0.99916 bits.
SZT_MI_NATS = _binary_entropy(SZT_N_POSITIVES / SZT_N_INPUTS)
SZT_MI_BITS = SZT_MI_NATS / math.log(2.0)

# Shwartz-Ziv's IDNNs code splits 80/20 without shuffling; its train set is the first 3277 rows.
SZT_IDNNS_N_TRAIN = 3277

SZT_SPLIT_KINDS = ("stratified", "idnns")

# Fingerprints of the labels in var_u.mat (papers.md section 0).
_LABELS_MD5 = "4f5dc3cd96328e812f4dc21ea159eaaf"
_POSITIVE_INDEX_SUM = 5_241_600

_PHI = (1.0 + math.sqrt(5.0)) / 2.0
# Vertex of the icosahedron carrying bit j (before normalisation), in the order that reproduces var_u.mat.
_VERTICES = (
    (0.0, 1.0, _PHI),
    (1.0, _PHI, 0.0),
    (0.0, 1.0, -_PHI),
    (-1.0, _PHI, 0.0),
    (_PHI, 0.0, -1.0),
    (0.0, -1.0, _PHI),
    (1.0, -_PHI, 0.0),
    (-1.0, -_PHI, 0.0),
    (-_PHI, 0.0, -1.0),
    (0.0, -1.0, -_PHI),
    (-_PHI, 0.0, 1.0),
    (_PHI, 0.0, 1.0),
)


def _unit_vertices() -> np.ndarray:
    v = np.asarray(_VERTICES, dtype=np.float64)  # (12, 3)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _as_bits(x) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != SZT_N_BITS:
        raise ValueError(f"x must have shape (n, {SZT_N_BITS}), got {tuple(arr.shape)}")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError("x must hold only 0 and 1")
    return arr.astype(np.float64)


def _weight_and_radius(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = bits.sum(axis=1)
    r = ((bits @ _unit_vertices()) ** 2).sum(axis=1)  # (n,): squared norm of the sum of the "on" vertices
    return w, r


def szt_labels(x) -> torch.Tensor:
    """The SZT label rule applied to arbitrary 12-bit inputs.

    Arguments:
        x: Binary inputs of shape ``(n, 12)`` (tensor, array or nested lists of 0 and 1).

    Returns:
        The labels, an ``int64`` tensor of shape ``(n,)``.

    Example:
        >>> szt_labels([[1] * 12, [0] * 12]).tolist()
        [1, 0]
    """
    w, r = _weight_and_radius(_as_bits(x))
    # The thresholds sit far from every attainable R (the nearest values are 0.32/1.0, 2.21/2.89 and 5.68/8.58),
    # so float rounding cannot flip a label.
    y = (w >= 8) | ((w == 7) & (r > 0.5)) | ((w == 6) & (r > 2.5)) | ((w == 5) & (r > 7.0))
    return torch.from_numpy(y.astype(np.int64))


def szt_score(x) -> torch.Tensor:
    """A single continuous score ``f(x)`` with ``y = 1[f(x) > 0]`` on all 4096 inputs.

    ``f = R - 0.3668 w^2 + 7.085 w - 32.07`` (w the bit count, R as in the module docstring). It was fitted to the
    labels, so it matches them exactly on the 12-bit cube but is not a published part of the task. Useful for
    soft-label variants such as ``p(y=1|x) = sigmoid(gamma * f(x))``.

    Arguments:
        x: Binary inputs of shape ``(n, 12)``.

    Returns:
        A ``float64`` tensor of shape ``(n,)``.
    """
    w, r = _weight_and_radius(_as_bits(x))
    return torch.from_numpy(r - 0.3668 * w**2 + 7.085 * w - 32.07)


@functools.lru_cache(maxsize=1)
def _szt_arrays() -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(SZT_N_INPUTS)
    x = ((n[:, None] >> (SZT_N_BITS - 1 - np.arange(SZT_N_BITS))) & 1).astype(np.uint8)  # (4096, 12), MSB first
    y = szt_labels(x).numpy().astype(np.uint8)
    md5 = hashlib.md5(np.packbits(y).tobytes()).hexdigest()
    n_pos = int(y.sum())
    index_sum = int(n[y == 1].sum())
    if md5 != _LABELS_MD5 or n_pos != SZT_N_POSITIVES or index_sum != _POSITIVE_INDEX_SUM:
        raise RuntimeError(
            "regenerated SZT labels do not match var_u.mat: "
            f"md5 {md5} (expected {_LABELS_MD5}), {n_pos} positives (expected {SZT_N_POSITIVES}), "
            f"positive indices sum to {index_sum} (expected {_POSITIVE_INDEX_SUM})"
        )
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@dataclass(frozen=True, eq=False)
class SZTData:
    """The SZT data set: every 12-bit input and its label.

    Attributes:
        x: ``float32`` tensor ``(4096, 12)`` of 0/1; row ``n`` is ``n`` in binary, most significant bit first.
        y: ``int64`` tensor ``(4096,)`` of 0/1 labels.
    """

    x: torch.Tensor
    y: torch.Tensor

    @property
    def n_inputs(self) -> int:
        """Number of inputs (rows), 4096."""
        return int(self.x.shape[0])

    @property
    def n_bits(self) -> int:
        """Number of input bits (columns), 12."""
        return int(self.x.shape[1])

    @property
    def n_positives(self) -> int:
        """Number of inputs labelled 1, 2118."""
        return int(self.y.sum())

    @property
    def h_x(self) -> float:
        """H(X) in nats of the uniform distribution over the rows (ln 4096 when all rows are distinct)."""
        counts = torch.unique(self.x, dim=0, return_counts=True)[1]
        return _entropy_of_counts(counts)

    @property
    def h_y(self) -> float:
        """H(Y) in nats of the labels (0.69256 nats = 0.99916 bits)."""
        return _entropy_of_counts(torch.unique(self.y, return_counts=True)[1])

    @property
    def mi_xy(self) -> float:
        """I(X;Y) in nats: equal to H(Y) because every input has exactly one label."""
        return self.h_y

    def to(self, device=None, dtype: torch.dtype | None = None) -> SZTData:
        """A copy with ``x`` (and ``y``) moved to ``device`` and ``x`` cast to ``dtype``; ``y`` stays ``int64``."""
        return SZTData(x=self.x.to(device=device, dtype=dtype), y=self.y.to(device=device))


def _entropy_of_counts(counts: torch.Tensor) -> float:
    p = counts.to(torch.float64) / counts.sum()
    return float(-(p * p.log()).sum())


def szt_dataset() -> SZTData:
    """The full SZT data set (4096 inputs), regenerated from the label rule and checked against ``var_u.mat``.

    The regeneration and its checks run once per process (cached); each call returns fresh tensors, so changing
    them in place cannot corrupt later calls.

    Returns:
        An :class:`SZTData` on the CPU.

    Raises:
        RuntimeError: If the regenerated labels ever differ from the original ones.

    Example:
        >>> data = szt_dataset()
        >>> data.x.shape, data.n_positives, round(data.mi_xy, 5)
        (torch.Size([4096, 12]), 2118, 0.69256)
        >>> data.x[5].tolist()[-4:]
        [0.0, 1.0, 0.0, 1.0]
    """
    x, y = _szt_arrays()
    return SZTData(x=torch.tensor(x, dtype=torch.float32), y=torch.tensor(y, dtype=torch.int64))


def szt_split(
    kind: str = "stratified", *, test_fraction: float = 0.2, seed: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test row indices into :func:`szt_dataset`.

    ``"stratified"`` draws a per-class random split, as Lorenzen et al. do with scikit-learn's stratified split and
    seed 1000. The test set has ``ceil(test_fraction * 4096)`` rows, as in scikit-learn, shared between the classes
    in proportion to their sizes by largest remainder (by default 820 = 396 of the 1978 negatives + 424 of the 2118
    positives). It uses a local ``np.random.default_rng(seed)``; the split is stratified the same way as
    scikit-learn's but is not index-identical to it (scikit-learn is not a dependency).

    ``"idnns"`` is the split of Shwartz-Ziv's IDNNs code, which does not shuffle: train is the first 3277 rows and
    test the last 819. Pitfall: because rows are in binary order and high bit counts are mostly positive, the two
    halves are far from balanced (y-means 0.437 train, 0.836 test); test accuracy on it is not comparable with a
    stratified split. ``test_fraction`` and ``seed`` are ignored (but still validated) for this kind.

    Arguments:
        kind: ``"stratified"`` or ``"idnns"``.
        test_fraction: Fraction of the rows in the test set, in (0, 1).
        seed: Seed of the local random generator, a non-negative integer (used by ``"stratified"`` only).

    Returns:
        ``(train_idx, test_idx)``: sorted, disjoint ``int64`` tensors covering ``0..4095``.

    Example:
        >>> train, test = szt_split()
        >>> len(train), len(test)
        (3276, 820)
    """
    if kind not in SZT_SPLIT_KINDS:
        raise ValueError(f"kind must be one of {SZT_SPLIT_KINDS}, got kind={kind!r}")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be a number in (0, 1), got test_fraction={test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got seed={seed!r}")
    if kind == "idnns":
        idx = torch.arange(SZT_N_INPUTS, dtype=torch.int64)
        return idx[:SZT_IDNNS_N_TRAIN].clone(), idx[SZT_IDNNS_N_TRAIN:].clone()

    _, y = _szt_arrays()
    n_test = math.ceil(test_fraction * len(y))
    if n_test >= len(y):
        raise ValueError(f"test_fraction={test_fraction!r} leaves no rows for training out of {len(y)}")
    classes, class_sizes = np.unique(y, return_counts=True)
    share = n_test * class_sizes / len(y)
    n_test_c = np.floor(share).astype(np.int64)
    leftover = n_test - int(n_test_c.sum())
    n_test_c[np.argsort(-(share - n_test_c), kind="stable")[:leftover]] += 1

    rng = np.random.default_rng(seed)
    test_parts = []
    for c, k in zip(classes, n_test_c):
        members = np.flatnonzero(y == c)
        test_parts.append(rng.permutation(members)[:k])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_parts)] = True
    train_idx = np.flatnonzero(~is_test).astype(np.int64)
    test_idx = np.flatnonzero(is_test).astype(np.int64)
    return torch.from_numpy(train_idx), torch.from_numpy(test_idx)
