"""MI through entropies and through lossy compression (Butakov et al., ICLR 2024).

- ``entropy-mi``: I(X;Y) = h(X) + h(Y) - h(X, Y) with a k-NN entropy estimator (weighted Kozachenko-Leonenko by
  default, the paper's choice).
- ``class-mi``: I(X;Y) = h(X) - sum_y p(y) h(X | Y = y) for a continuous X and class labels Y (the paper's
  continuous-discrete estimator for I(L;Y)).
- ``lossy``: compress X and/or Y first (:class:`PCA`, or any object with ``fit(x)`` and ``transform(x)``), then apply
  a registered MI estimator to the compressed pair. Compression can only lose information (data processing), so the
  result estimates I(f(X); g(Y)) <= I(X;Y), with equality when the compressors keep everything the other variable
  shares; the paper's point is that for data on a low-dimensional manifold they do, and that k-NN estimators are
  reliable only in the few dimensions left.
- :class:`NoisyCodes` adds Gaussian noise after any compressor: the noisy layer of a deterministic network, whose
  own differential entropy is minus infinity (the paper measures noisy networks).

References:
    Butakov, Tolmachev, Malanchuk, Neopryatnaya, Frolov & Salnikov (2024). Information bottleneck analysis of deep
    neural networks via lossy compression. ICLR.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
from torch import nn

from ..training import fit
from ._init import init_uniform

from ._validation import as_samples, check_choice, check_positive_int, check_same_length, image_rows, resolve_device
from .interface import MIEstimate, MIEstimator, make, register
from .kde import check_noise_variance

__all__ = ["PCA", "IncrementalPCA", "Autoencoder", "EntropyMI", "ClassMI", "LossyMI", "NoisyCodes", "is_fitted"]

ENTROPIES = ("wkl", "kl")


class PCA:
    """Principal-component compression in torch (on the data's device): ``fit(x)`` then ``transform(x)`` gives the
    coordinates on the ``n_components`` leading principal axes (centred, not whitened). Images ``(n, H, W)`` /
    ``(n, C, H, W)`` are taken as rows of pixels.

    Example:
        >>> x = torch.randn(500, 6) * torch.tensor([5.0, 1, 1, 1, 1, 0.1])
        >>> PCA(2).fit(x).transform(x).shape
        torch.Size([500, 2])
    """

    #: Above this many rows and columns, and for few components, the axes come from a randomized SVD.
    EXACT_MAX = 512

    def __init__(self, n_components: int, seed: int = 0):
        self.n_components, self.seed = n_components, seed
        self.mean = self.axes = None

    def fit(self, x) -> PCA:
        k = check_positive_int(self.n_components, "n_components")
        t = as_samples(image_rows(x)[0], "x", min_samples=2)
        if k > t.shape[1]:
            raise ValueError(f"n_components must be at most the data's dimension {t.shape[1]}, got {k}")
        t = t.to(torch.float64)
        self.mean = t.mean(0)
        centred = t - self.mean
        if min(t.shape) > self.EXACT_MAX and 4 * k < min(t.shape):
            self.axes = _randomized_axes(centred, k, int(self.seed))
        else:
            self.axes = torch.linalg.svd(centred, full_matrices=False)[2][:k].T  # (d, k)
        return self

    @property
    def is_fitted(self) -> bool:
        return self.axes is not None

    def transform(self, x) -> torch.Tensor:
        if self.axes is None:
            raise ValueError("PCA.transform called before fit")
        t = as_samples(image_rows(x)[0], "x", device=self.axes.device).to(torch.float64)
        if t.shape[1] != self.axes.shape[0]:
            raise ValueError(f"x has {t.shape[1]} columns; this PCA was fitted on {self.axes.shape[0]}")
        return (t - self.mean) @ self.axes

    def __repr__(self) -> str:
        return f"PCA({self.n_components}, seed={self.seed})"


class NoisyCodes:
    """A compressor followed by Gaussian noise: ``transform(x)`` is ``compressor.transform(x) + Z`` with
    Z ~ N(0, noise_variance I), drawn from a generator seeded with ``seed`` (on the CPU, so every device gets the same
    draws; the same rows get the same noise on every call).

    The noise makes the k-NN lenses of a deterministic network's layer finite (Butakov et al. 2024 measure noisy
    networks; a noiseless layer with a dead unit or fewer directions than the kept axes has a differential entropy of
    minus infinity): ``NoisyCodes(PCA(4), 1e-3)`` is the layer T + Z of the KDE bound on its 4 leading principal axes
    (isotropic noise keeps its variance under the orthonormal projection, so adding it after the projection is the same
    in distribution as before, up to the axes being fitted on T rather than T + Z).

    Example:
        >>> x = torch.zeros(100, 6, dtype=torch.float64)
        >>> x[:, 0] = torch.arange(100.0)  # rank 1: the other axes of PCA(2) are constant, the noise fills them
        >>> c = NoisyCodes(PCA(2), 1e-2).fit(x).transform(x)
        >>> round(float(c[:, 1].var()), 2)
        0.01
    """

    def __init__(self, compressor, noise_variance: float = 1e-3, seed: int = 0):
        self.compressor, self.noise_variance, self.seed = compressor, noise_variance, seed

    @property
    def is_fitted(self) -> bool:
        return is_fitted(self.compressor)

    def fit(self, x) -> NoisyCodes:
        check_noise_variance(self.noise_variance)
        self.compressor.fit(x)
        return self

    def transform(self, x) -> torch.Tensor:
        v = check_noise_variance(self.noise_variance)
        c = torch.as_tensor(self.compressor.transform(x))
        g = torch.Generator().manual_seed(int(self.seed))
        noise = torch.randn(c.shape, generator=g, dtype=torch.float64).to(device=c.device, dtype=c.dtype)
        return c + math.sqrt(v) * noise

    def __repr__(self) -> str:
        return f"NoisyCodes({self.compressor!r}, noise_variance={self.noise_variance}, seed={self.seed})"


class IncrementalPCA:
    """Principal components fitted batch by batch (Ross, Lim, Lin & Yang 2008, the incremental SVD with a running
    mean that scikit-learn's ``IncrementalPCA`` uses), in torch on the data's device: memory ``(k + batch) x d``
    however many rows are seen, so a 50,000-unit layer of 10,000 probe images never sits in memory at once.

    ``partial_fit(rows)`` takes the next batch (at least ``n_components`` rows in the first); ``fit(x)`` runs over
    ``x`` in batches of ``batch_size``; ``transform`` as :class:`PCA` (centred, not whitened). It tracks
    ``2 k + 10`` axes and keeps ``k``, so the leading axes agree with :class:`PCA`'s on all rows (up to sign) to
    within the truncation error of the tail; on data of rank at most ``2 k + 10`` they are the same.

    Example:
        >>> x = torch.randn(900, 6, dtype=torch.float64) * torch.tensor([5.0, 2, 1, 1, 1, 0.1])
        >>> a = IncrementalPCA(2, batch_size=100).fit(x).transform(x).abs()
        >>> b = PCA(2).fit(x).transform(x).abs()
        >>> bool(torch.allclose(a, b, atol=1e-6))
        True
    """

    def __init__(self, n_components: int, batch_size: int = 512):
        self.n_components, self.batch_size = n_components, batch_size
        self.mean = self._axes = self.singular_values = None
        self.n_seen = 0

    def partial_fit(self, x) -> IncrementalPCA:
        k = check_positive_int(self.n_components, "n_components")
        t = as_samples(image_rows(x)[0], "x", min_samples=1).to(torch.float64)
        if self.axes is not None and t.shape[1] != self.axes.shape[0]:
            raise ValueError(f"x has {t.shape[1]} columns; this IncrementalPCA was fitted on {self.axes.shape[0]}")
        if k > t.shape[1]:
            raise ValueError(f"n_components must be at most the data's dimension {t.shape[1]}, got {k}")
        if self.axes is None and t.shape[0] < k:
            raise ValueError(f"the first batch needs at least n_components={k} rows, got {t.shape[0]}")
        m, mean_b = t.shape[0], t.mean(0)
        if self.axes is None:
            stacked = t - mean_b
            mean = mean_b
        else:
            n = self.n_seen
            mean = (n * self.mean + m * mean_b) / (n + m)
            correction = math.sqrt(n * m / (n + m)) * (self.mean - mean_b)
            stacked = torch.cat([self.singular_values[:, None] * self._axes.T, t - mean_b, correction[None]])
        _, s, vt = torch.linalg.svd(stacked, full_matrices=False)
        keep = min(2 * k + 10, vt.shape[0])  # more axes than asked for: the truncation error stays in the tail
        self.mean, self.n_seen = mean, self.n_seen + m
        self._axes, self.singular_values = vt[:keep].T.contiguous(), s[:keep]
        return self

    @property
    def axes(self) -> torch.Tensor | None:
        """The ``n_components`` leading axes ``(d, k)`` (``None`` before fitting)."""
        return None if self._axes is None else self._axes[:, : self.n_components]

    def fit(self, x) -> IncrementalPCA:
        b = check_positive_int(self.batch_size, "batch_size")
        t = image_rows(x)[0]
        self.mean = self._axes = self.singular_values = None
        self.n_seen = 0
        for lo in range(0, int(t.shape[0]), b):
            self.partial_fit(t[lo : lo + b])
        return self

    @property
    def is_fitted(self) -> bool:
        return self.axes is not None

    def transform(self, x) -> torch.Tensor:
        if self.axes is None:
            raise ValueError("IncrementalPCA.transform called before fit or partial_fit")
        t = as_samples(image_rows(x)[0], "x", device=self.axes.device).to(torch.float64)
        if t.shape[1] != self.axes.shape[0]:
            raise ValueError(f"x has {t.shape[1]} columns; this IncrementalPCA was fitted on {self.axes.shape[0]}")
        return (t - self.mean) @ self.axes

    def __repr__(self) -> str:
        return f"IncrementalPCA({self.n_components}, batch_size={self.batch_size})"


def _randomized_axes(a: torch.Tensor, k: int, seed: int, oversample: int = 10, power: int = 4) -> torch.Tensor:
    # The k leading right singular vectors of ``a`` (n, d) by a randomized range finder with power iterations
    # (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1), from a local generator: O(n d k) instead of
    # O(n d min(n, d)), and to float64 precision for the leading axes of data with a decaying spectrum.
    g = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(a.shape[1], k + oversample, generator=g, dtype=a.dtype).to(a.device)
    q = torch.linalg.qr(a @ omega).Q
    for _ in range(power):
        q = torch.linalg.qr(a.T @ q).Q
        q = torch.linalg.qr(a @ q).Q
    return torch.linalg.svd(q.T @ a, full_matrices=False)[2][:k].T


class _DenseAE(nn.Module):
    def __init__(self, d: int, latent: int, hidden):
        super().__init__()
        sizes = (d, *hidden)
        enc, dec = [], []
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        for a, b in zip(sizes[::-1][:-1], sizes[::-1][1:]):
            dec = dec + [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*enc, nn.Linear(sizes[-1], latent), nn.Tanh())
        self.decoder = nn.Sequential(nn.Linear(latent, sizes[-1]), nn.LeakyReLU(0.2), *dec[:-1])

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class _ConvAE(nn.Module):
    # Three stride-2 conv blocks (8, 16, 32 channels) to a tanh bottleneck; the decoder upsamples back to the exact
    # input size (nearest-neighbour upsampling + 3x3 convolutions).
    def __init__(self, shape, latent: int):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        sizes = [(h, w)]
        for _ in range(3):
            sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
        chans = [c, 8, 16, 32]
        enc = []
        for a, b in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        flat = 32 * sizes[-1][0] * sizes[-1][1]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent), nn.Tanh())
        dec = [nn.Linear(latent, flat), nn.LeakyReLU(0.2), nn.Unflatten(1, (32, *sizes[-1]))]
        for i, (a, b) in enumerate(zip(chans[::-1][:-1], chans[::-1][1:])):
            dec += [nn.Upsample(size=sizes[2 - i]), nn.Conv2d(a, b, 3, padding=1)]
            if b != c:
                dec.append(nn.LeakyReLU(0.2))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x):
        return self.encoder(x.reshape(-1, *self.shape))

    def forward(self, x):
        return self.decoder(self.encode(x)).reshape(x.shape[0], -1)


def _mean_absolute_error(model, v):  # the autoencoder's loss, the paper's: mean absolute reconstruction error
    return (model(v) - v).abs().mean()


class Autoencoder:
    """Autoencoder compression (Butakov et al. 2024): ``fit(x)`` trains an encoder to a ``latent``-dimensional tanh
    bottleneck and a decoder back by the mean absolute reconstruction error (the paper's loss), with the project's
    training loop; ``transform(x)`` returns the codes. Images ``(n, H, W)`` / ``(n, C, H, W)`` get a convolutional
    autoencoder (8-16-32 channels, stride 2), vectors a dense one.

    Arguments:
        latent: Bottleneck dimension.
        hidden: Hidden widths of the dense autoencoder.
        epochs, batch_size, lr: Adam on all rows given to ``fit``.
        seed: Seed of the initialisation and the minibatch order (a local generator).
        device: Where to train (``None``: where the data are).

    After ``fit``, ``loss`` is the final mean absolute error on the standardised data (``train_losses`` per epoch).
    """

    def __init__(self, latent: int, hidden=(128, 64), epochs: int = 100, batch_size: int = 256, lr: float = 1e-3,
                 seed: int = 0, device=None):  # fmt: skip
        self.latent, self.hidden, self.epochs, self.batch_size = latent, hidden, epochs, batch_size
        self.lr, self.seed, self.device = lr, seed, device
        self.model = None

    def _rows(self, x):
        x, shape = image_rows(x)
        t = as_samples(x, "x", min_samples=2, device=resolve_device(self.device), float_dtype=torch.float32)
        return t, shape

    def fit(self, x, *, checkpoint: str | os.PathLike | None = None) -> Autoencoder:
        """Train on the rows of ``x``. ``checkpoint``: a file the training is saved to every two minutes and at its
        end, and continued (or, finished, read back) from when it exists (:func:`ibcore.training.fit`)."""
        latent = check_positive_int(self.latent, "latent")
        epochs = check_positive_int(self.epochs, "epochs")
        batch = check_positive_int(self.batch_size, "batch_size")
        t, shape = self._rows(x)
        self.image = shape is not None
        self.mean = t.mean() if self.image else t.mean(0)
        self.scale = (t.std() if self.image else t.std(0)).clamp_min(1e-12)
        t = (t - self.mean) / self.scale
        with torch.random.fork_rng(devices=[]):  # the layers' constructors draw; init_uniform redraws from the seed
            model = _ConvAE(shape, latent) if self.image else _DenseAE(t.shape[1], latent, tuple(self.hidden))
        init_uniform(model, torch.Generator().manual_seed(int(self.seed)), (nn.Linear, nn.Conv2d))
        model = model.to(t.device)
        state = fit(model, (t,), epochs=epochs, batch_size=min(batch, len(t)), lr=self.lr, seed=self.seed,
                    objective=_mean_absolute_error, checkpoint=checkpoint or None)  # fmt: skip
        self.model, self.loss, self.train_losses = model.eval(), state.last_loss, list(state.losses)
        return self

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def transform(self, x) -> torch.Tensor:
        if self.model is None:
            raise ValueError("Autoencoder.transform called before fit")
        t, _ = self._rows(x)
        return self.model.encode((t.to(self.mean.device) - self.mean) / self.scale).double()

    def __repr__(self) -> str:
        return f"Autoencoder(latent={self.latent}, epochs={self.epochs}, seed={self.seed})"


class _EntropyBased(MIEstimator):
    # MI from k-NN entropy estimates: the shared hyperparameters and their validation. Every entropy is estimated
    # after whitening its own sample (``whiten``), as Butakov et al.'s estimators do by default.
    #: k-NN estimates degrade as O(N^(-1/d)) (../shared/research/estimators.md, failure mode 1): at the book's
    #: N of a few thousand, beyond a few tens of dimensions a layer must be compressed first (Butakov et al. 2024)
    max_dim = 32

    def __init__(self, entropy: str = "wkl", k: int = 5, whiten: bool = True, device=None):
        self.entropy, self.k, self.whiten, self.device = entropy, k, whiten, device

    def _entropy_estimator(self):
        k = check_positive_int(self.k, "k")
        if not isinstance(self.whiten, bool):
            raise ValueError(f"whiten must be True or False, got {self.whiten!r}")
        name = check_choice(self.entropy, "entropy", ENTROPIES)
        return k, make(name, k=k, whiten=self.whiten, device=self.device)


@register("entropy-mi")
class EntropyMI(_EntropyBased):
    """I(X;Y) = h(X) + h(Y) - h(X, Y) with k-NN entropy estimates (``entropy``: ``"wkl"`` or ``"kl"``), each of
    a whitened sample unless ``whiten=False`` (see :class:`~ibcore.estimators.KozachenkoLeonenko`).

    Example:
        >>> from ibcore.tasks import correlated_gaussian
        >>> x, y = correlated_gaussian(5000, mi=1.0, dim=2, seed=0)
        >>> round(EntropyMI().estimate(x, y).value, 1)
        1.0
    """

    def _estimate(self, x, y, p) -> MIEstimate:
        k, h = self._entropy_estimator()
        dev = resolve_device(self.device)
        tx = as_samples(x, "x", min_samples=k + 1, device=dev)
        ty = as_samples(y, "y", min_samples=k + 1, device=tx.device)
        check_same_length(tx, ty)
        dtype = torch.promote_types(tx.dtype, ty.dtype)
        hx, hy = _entropy(h, tx, "x"), _entropy(h, ty, "y")
        hxy = _entropy(h, torch.cat([tx.to(dtype), ty.to(dtype)], dim=1), "the joint sample (x, y)")
        return MIEstimate(hx + hy - hxy, tx.shape[0], self.name, self.get_params(),
                          diagnostics={"h_x": hx, "h_y": hy, "h_xy": hxy})  # fmt: skip


def _entropy(h, t, side: str) -> float:
    # h(t) by the entropy estimator, whose own argument is called x: its errors name the side instead
    try:
        return h.estimate(t).value
    except ValueError as err:
        msg = str(err)
        if side == "x" or not msg.startswith("x "):
            raise
        raise ValueError(side + msg[1:]) from err


@register("class-mi")
class ClassMI(_EntropyBased):
    """I(X;Y) = h(X) - sum_y p(y) h(X | Y = y) for continuous ``x`` and class labels ``y`` (one integer per row, or
    any values whose distinct rows are the classes). Every class needs more than ``k`` samples.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 4000)
        >>> x = y[:, None] * 50.0 + rng.standard_normal((4000, 2))  # two far-apart clusters: I = H(Y) = ln 2
        >>> round(ClassMI().estimate(x, y).value, 1)
        0.7
    """

    y_role = "labels"
    bound = "H(Y), the entropy of the labels"

    def _estimate(self, x, y, p) -> MIEstimate:
        k, h = self._entropy_estimator()
        tx = as_samples(x, "x", min_samples=k + 1, device=resolve_device(self.device))
        ty = as_samples(y, "y", device=tx.device)
        check_same_length(tx, ty)
        _, labels, counts = torch.unique(ty, dim=0, return_inverse=True, return_counts=True)
        if int(counts.min()) <= k:
            small = int((counts <= k).sum())
            raise ValueError(f"y has {small} of {len(counts)} classes with at most k={k} samples (smallest: "
                             f"{int(counts.min())}); class-mi needs more than k samples per class: are the labels "
                             "continuous?")  # fmt: skip
        n = tx.shape[0]
        hx = h.estimate(tx).value
        conditional = [h.estimate(tx[labels == c]).value for c in range(len(counts))]
        p = counts.double().cpu().numpy() / n
        value = hx - float(np.dot(p, conditional))
        return MIEstimate(value, n, self.name, self.get_params(),
                          diagnostics={"h_x": hx, "h_x_given_y": conditional, "classes": len(counts),
                                       "h_y": float(-(p * np.log(p)).sum())})  # fmt: skip


@register("lossy")
class LossyMI(MIEstimator):
    """A registered MI estimator applied to compressed representations (Butakov et al. 2024).

    Arguments:
        estimator: Name of the registered MI estimator applied after compression.
        params: Its hyperparameters.
        x_compressor, y_compressor: Objects with ``fit(x)`` (returning themselves) and ``transform(x)``, e.g.
            :class:`PCA` or :class:`Autoencoder`, or ``None`` to use that side as it is (images flattened to rows).
            They get the data as given (images stay images). A compressor that is already fitted (``is_fitted``
            true, or, for scikit-learn-style objects, a public attribute ending in ``_``) is used as it is, never
            refitted; an unfitted one is copied and the copy fitted on the data being estimated, so the object
            passed in is never changed. ``diagnostics["compressors_fitted"]`` says which happened.

    Example:
        >>> from ibcore.tasks import correlated_gaussian
        >>> x, y = correlated_gaussian(4000, mi=1.0, dim=2, seed=0)
        >>> pad = np.random.default_rng(1).standard_normal((4000, 30)) * 1e-3  # 30 near-empty dimensions
        >>> lossy = LossyMI("ksg", x_compressor=PCA(2), y_compressor=PCA(2))
        >>> round(lossy.estimate(np.hstack([x, pad]), np.hstack([y, pad])).value, 1)
        1.0
    """

    x_role = y_role = "any"
    images = True

    def __init__(self, estimator: str = "entropy-mi", params=None, x_compressor=None, y_compressor=None):
        self.estimator, self.params = estimator, params
        self.x_compressor, self.y_compressor = x_compressor, y_compressor

    def _estimate(self, x, y, p) -> MIEstimate:
        if self.estimator == self.name:
            raise ValueError("estimator='lossy' would compress forever; name the estimator to apply after compression")
        inner = make(self.estimator, **(self.params or {}))
        for name, c in (("x_compressor", self.x_compressor), ("y_compressor", self.y_compressor)):
            if c is not None and not (callable(getattr(c, "fit", None)) and callable(getattr(c, "transform", None))):
                raise ValueError(f"{name} must have fit(x) and transform(x), got {c!r}")
        (cx, fx), (cy, fy) = self._compress(self.x_compressor, x), self._compress(self.y_compressor, y)
        r = inner.estimate(cx, cy)
        dims = [int(as_samples(v, n).shape[1]) for v, n in ((cx, "x"), (cy, "y"))]
        return MIEstimate(r.value, r.n_samples, self.name, self.get_params(), std=r.std,
                          diagnostics={"inner": r.diagnostics, "compressed_dims": dims, "compressors_fitted": [fx, fy]},
                          warnings=r.warnings, device=r.device)  # fmt: skip

    def _compress(self, c, v):
        if c is None:
            return image_rows(v)[0], None
        how = "given"
        if not is_fitted(c):
            c, how = copy.deepcopy(c).fit(v), "fitted"
        out = c.transform(v)
        if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
            raise ValueError(f"{c!r} produced non-finite values")
        return out, how


def is_fitted(compressor) -> bool:
    """Whether a compressor has been fitted: its ``is_fitted`` attribute where it has one (:class:`PCA`,
    :class:`Autoencoder`), else scikit-learn's convention (a public attribute whose name ends in ``_``)."""
    flag = getattr(compressor, "is_fitted", None)
    if flag is not None:
        return bool(flag)
    return any(k.endswith("_") and not k.startswith("_") for k in getattr(compressor, "__dict__", {}))
