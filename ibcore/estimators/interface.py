"""The estimator contract: declared capabilities, one call, one result schema, the registry.

This module imports nothing from the rest of :mod:`ibcore`, so every estimator module can depend on it. It is the
one place that says what an estimator is; ``docs`` of the book's API page render it.

**The call.** Every mutual-information estimator is ``estimate(x, y) -> MIEstimate`` with ``x`` the
*representation side* (a layer, its centres, its compressed codes) and ``y`` the *other side* (input ids, labels,
the second variable of a task), in that order, everywhere. Every entropy estimator is ``estimate(x) ->
EntropyEstimate``. Estimators of finite populations (``weighted = True``) also take ``p=``, the probability of each
row. Values are in nats; ``.bits`` converts. Constructors only store keyword hyperparameters; validation and work
happen in ``estimate``.

**Many estimates at once.** ``estimate_batch(x, y, p=None)`` takes a table, a sequence of tables or a stacked
``(S, N, d)`` array on either side (and one or several ``p``), broadcasts a single one against the others, and
returns one result per pair: stacked networks, one layer against several other sides, several weightings. The
default loops over :meth:`MIEstimator.estimate`; estimators with ``batched = True`` do it in one pass (exact MI for
stacked networks, sample propagation for several other sides from the same Monte Carlo points).

**Declared capabilities** (class attributes, read by the registry, the tests and the callers, never guessed from the
class): ``kind`` (``"mi"`` or ``"entropy"``), ``x_role`` and ``y_role`` (one of :data:`ROLES`; ``None`` for an
entropy's absent y), ``images`` (takes images ``(n, H, W)``/``(n, C, H, W)`` as they are; the others need rows),
``trained`` (fits a network on the data), ``weighted`` (takes ``p``), ``batched`` (native ``estimate_batch``),
``bound`` (what bounds the value from above, in words; its number is ``diagnostics["bound"]``) and
``max_dim`` (the widest side it is meant for; ``None``: no limit). The hyperparameters are the constructor's
arguments: :meth:`get_params`, :meth:`set_params` and :meth:`clone` follow from its signature.

**The result** (:class:`Estimate`): value (nats), unit, standard error where the method has one, n, seconds,
device, the estimator's params, warnings (saturation at a bound, early stop, not converged) and diagnostics whose
keys are documented in :data:`DIAGNOSTICS`. :meth:`Estimate.to_dict` and :meth:`Estimate.from_dict` write and read
it (records written before this schema are read too).
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

__all__ = [
    "Estimate",
    "MIEstimate",
    "EntropyEstimate",
    "MIEstimator",
    "EntropyEstimator",
    "ROLES",
    "DIAGNOSTICS",
    "register",
    "available",
    "make",
    "capabilities",
    "capability_table",
]

NATS_PER_BIT = math.log(2.0)

#: What an estimator's x or y is. ``continuous``: real vectors (rows); ``discrete``: rows taken as symbols (input
#: ids, quantized layers, codes); ``labels``: class labels, each class with many rows; ``centres``: the noise-free
#: centres of a noisy layer (several rows per input for replicas); ``any``: continuous rows are binned or compressed,
#: integer rows taken as symbols.
ROLES = ("continuous", "discrete", "labels", "centres", "any")

#: Every key an estimator may put in ``diagnostics``: its type and meaning. One place, read by the tests.
DIAGNOSTICS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "bound": ((float, type(None)), "the number the value cannot exceed (see the class's ``bound``), in nats"),
    "h_x": (float, "entropy of the x side (nats)"),
    "h_y": (float, "entropy of the y side (nats)"),
    "h_xy": (float, "joint entropy (nats)"),
    "h_t": (float, "differential entropy of the noisy layer (sample propagation, nats)"),
    "h_t_std": (float, "its Monte Carlo standard error"),
    "h_t_given_x": (float, "conditional entropy of the layer given the other side (nats)"),
    "h_t_given_x_std": (float, "its Monte Carlo standard error"),
    "h_x_given_y": (list, "per-class conditional entropies h(X | Y = y) (nats)"),
    "n_symbols": (int, "distinct symbols of x (entropy estimators)"),
    "n_symbols_x": (int, "distinct symbols of x"),
    "n_symbols_y": (int, "distinct symbols of y"),
    "n_symbols_xy": (int, "distinct joint symbols"),
    "y_function_of_x": (bool, "every x symbol has one y (exact MI)"),
    "x_function_of_y": (bool, "every y symbol has one x (exact MI)"),
    "n_inputs": (int, "distinct inputs of the other side (sample propagation)"),
    "exact_conditional": (bool, "one centre per input: h(T|X) is the Gaussian's, exactly"),
    "components": (int, "principal components of the layer kept before the noise (noisy-layer)"),
    "classes": (int, "number of classes"),
    "bias": (float, "finite-sample bias subtracted from the plug-in value (Gaussian, bias_correction)"),
    "canonical_correlations": (list, "canonical correlations of the (latent) pair"),
    "backend": (str, "k-NN backend used: 'kdtree' or 'torch'"),
    "dtype": (str, "floating dtype of the computation"),
    "chunk_size": ((int, type(None)), "query rows per brute-force chunk (None: k-d tree)"),
    "per_sample_term_std": (float, "spread of the per-sample terms (not a standard error)"),
    "mean_count_x": (float, "KSG: mean marginal neighbour count in x"),
    "mean_count_y": (float, "KSG: mean marginal neighbour count in y"),
    "weights": (list, "weights of the weighted Kozachenko-Leonenko estimator"),
    "standardized": (bool, "each column was scaled to unit variance first (k-NN)"),
    "curve": (list, "held-out value after each training epoch"),
    "curve_start": (float, "held-out value of the untrained network (epoch 0)"),
    "criterion": (list, "held-out early-stopping criterion (higher is better) per evaluation, the first at epoch 0: "
                        "any stopping rule can be replayed from it"),
    "held_out_nll": (list, "held-out negative log-likelihood per epoch (flows)"),
    "train_loss": (list, "training loss per epoch"),
    "epochs_run": (int, "epochs trained"),
    "n_train": (int, "rows trained on"),
    "n_held_out": (int, "rows the value is computed on"),
    "best": (float, "best held-out value seen: the highest of a bound, the lowest of an entropy (information only: "
                     "biased towards the optimum)"),
    "training_value": (float, "the same value on the rows trained on (information only: above the held-out value "
                              "where the network overfits, the MI small samples 'hallucinate')"),
    "stopped_early": (bool, "training stopped before its epochs (no held-out improvement)"),
    "not_converged": (bool, "ran out of epochs while the held-out criterion was still improving"),
    "still_increasing": (bool, "the last tenth of the held-out curve rose by more than two standard errors"),
    "latent": (int, "latent components per side entering the dependent Gaussian (flows)"),
    "held_out_gaussian_mi": (float, "Gaussian MI of the held-out latents (flows)"),
    "inner": (dict, "the diagnostics of the estimator applied after compression (lossy)"),
    "compressed_dims": (list, "dimensions of each side after compression (lossy)"),
    "compressors_fitted": (list, "for each side: 'given' (fitted before), 'fitted' (a copy fitted here) or None"),
    "candidates": (dict, "auto: each candidate estimator's value (nats)"),
    "chosen": (str, "auto: the candidate whose value is returned"),
    "reason": (str, "auto: why, in words"),
    "dof": (float, "degrees of freedom of the fitted t copula (inf: the Gaussian copula)"),
    "loglik": (dict, "copula log-likelihood (nats) per degree of freedom tried ('inf': Gaussian)"),
    "shared_scale_mi": (float, "the t copula's MI beyond its Gaussian part (nats)"),
    "subsample_values": (list, "the estimates on the half-samples of a subsampling interval"),
    "subsample_size": (int, "rows of each half-sample"),
    "shuffle_values": (list, "the estimates with y's rows permuted (the shuffle baseline)"),
    "shuffle_p": (float, "permutation p-value of no dependence: (1 + #{shuffled >= value}) / (shuffles + 1)"),
}

# diagnostics keys of records written before the schema, and their names now
_LEGACY_KEYS = {"max_value": "bound", "ceiling": "bound"}


@dataclass(frozen=True)
class Estimate:
    """An information estimate with what is needed to trust or reproduce it.

    Attributes:
        value: The estimate in nats. Never clipped: a negative MI estimate is reported as it came out.
        n_samples: Number of samples (rows) the estimate was computed from; also ``n``.
        estimator: Registered name of the estimator.
        params: The estimator's hyperparameters.
        std: Standard error of ``value`` in nats, where the method has one, else ``None``.
        diagnostics: Details, keys from :data:`DIAGNOSTICS`.
        unit: Always ``"nats"`` (``.bits`` converts).
        seconds: Wall time of the estimate (of the whole batch divided by its size for ``estimate_batch``).
        device: Where it was computed (``"cpu"``, ``"cuda:0"``).
        warnings: Reasons not to take the value at face value: saturation at the bound, no convergence.
        ci: The confidence interval ``(low, high)`` in nats, when ``estimate(..., ci=level)`` asked for one.
        ci_level: Its level (e.g. 0.95).
        ci_method: How it was obtained: ``"standard error"``, ``"subsampling"`` or ``"exact"``
            (:mod:`ibcore.estimators.uncertainty`).
    """

    value: float
    n_samples: int
    estimator: str
    params: dict[str, Any] = field(default_factory=dict)
    std: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    unit: str = "nats"
    seconds: float | None = None
    device: str | None = None
    warnings: tuple[str, ...] = ()
    ci: tuple[float, float] | None = None
    ci_level: float | None = None
    ci_method: str | None = None

    @property
    def n(self) -> int:
        return self.n_samples

    @property
    def bits(self) -> float:
        """The estimate in bits."""
        return self.value / NATS_PER_BIT

    @property
    def std_bits(self) -> float | None:
        """The standard error in bits, or ``None``."""
        return None if self.std is None else self.std / NATS_PER_BIT

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (non-finite floats as strings, objects in params by their repr)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Estimate:
        """Read :meth:`to_dict` output, or a record of an earlier version (missing fields take their defaults,
        legacy diagnostics keys ``max_value`` and ``ceiling`` become ``bound``)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("value", "std", "seconds"):
            if isinstance(kw.get(key), str):
                kw[key] = float(kw[key])
        diag = dict(kw.get("diagnostics") or {})
        for old, new in _LEGACY_KEYS.items():
            if old in diag:
                diag.setdefault(new, diag.pop(old))
        kw["diagnostics"] = diag
        kw["warnings"] = tuple(kw.get("warnings") or ())
        if kw.get("ci") is not None:
            kw["ci"] = tuple(float(v) for v in kw["ci"])
        kw.setdefault("n_samples", kw.pop("n", 0) if "n" in d else 0)
        kw.setdefault("estimator", "")
        return cls(**kw)


@dataclass(frozen=True)
class MIEstimate(Estimate):
    """An estimate of the mutual information I(X;Y), in nats."""


@dataclass(frozen=True)
class EntropyEstimate(Estimate):
    """An estimate of the (discrete or differential) entropy H(X), in nats."""


def _jsonable(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return repr(v)


class _Registered:
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    x_role: ClassVar[str] = "continuous"
    y_role: ClassVar[str | None] = "continuous"
    images: ClassVar[bool] = False
    trained: ClassVar[bool] = False
    weighted: ClassVar[bool] = False
    batched: ClassVar[bool] = False
    bound: ClassVar[str | None] = None
    max_dim: ClassVar[int | None] = None
    #: a value this close to ``diagnostics["bound"]`` (nats) is reported as saturated
    saturation: ClassVar[float] = 1e-9

    @classmethod
    def param_names(cls) -> list[str]:
        """The hyperparameters: the names of the constructor's arguments."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters this estimator holds (the constructor's arguments, by name)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params):
        """Change hyperparameters in place (unknown names are a ``ValueError``); returns the estimator."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameters {unknown}; it has {self.param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def clone(self, **params):
        """A new estimator with this one's hyperparameters (deep-copied) and ``params`` changed; this one is left
        as it is."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameters {unknown}; it has {self.param_names()}")
        return type(self)(**{**copy.deepcopy(self.get_params()), **params})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_p(self, p) -> None:
        if p is not None and not self.weighted:
            raise ValueError(f"p was given, but {self.name} reads its rows as samples, not as a weighted population "
                             "(estimators that take p: " + ", ".join(available(weighted=True)) + ")")

    def _finish(self, r: Estimate, start: float, data, count: int = 1) -> Estimate:
        # the fields every result gets the same way: params, seconds, device, warnings
        warn = list(r.warnings)
        b = r.diagnostics.get("bound")
        if isinstance(b, float) and math.isfinite(b) and r.value >= b - self.saturation:
            warn.append(f"saturated: {r.value:.6g} nats is at its bound {b:.6g} ({self.bound})")
        if r.diagnostics.get("not_converged"):
            warn.append("not converged: the held-out criterion was still improving when the epochs ran out")
        if r.diagnostics.get("still_increasing"):
            warn.append("still increasing: the held-out value rose over the last tenth of training")
        return replace(r, params=self.get_params(), seconds=(time.perf_counter() - start) / count,
                       device=r.device or _device_of(self, data), warnings=tuple(warn))  # fmt: skip


def _device_of(est, data) -> str:
    dev = getattr(est, "device", None)
    if dev is not None:
        return str(dev)
    for v in data:
        d = getattr(v, "device", None)
        if d is not None and not callable(d):
            return str(d)
    return "cpu"


def _many(v) -> list:
    # a stacked (S, N, d) array or tensor, or a list/tuple of tables, becomes a list of tables; else one table
    if isinstance(v, (list, tuple)) and v and getattr(v[0], "ndim", None) is not None:
        return list(v)
    if getattr(v, "ndim", None) == 3:
        return list(v)
    return [v]


def _many_p(p) -> list:
    if p is None:
        return [None]
    if isinstance(p, (list, tuple)) and p and getattr(p[0], "ndim", None) == 1:
        return list(p)
    if getattr(p, "ndim", None) == 2:
        return list(p)
    return [p]


def _broadcast(*sides: list, names=("x", "y", "p")) -> int:
    s = max(len(v) for v in sides)
    if any(len(v) not in (1, s) for v in sides):
        got = ", ".join(f"{n}: {len(v)}" for n, v in zip(names, sides))
        raise ValueError(f"estimate_batch needs one or the same number of tables on each side, got {got}")
    return s


class MIEstimator(_Registered):
    """Base class of mutual-information estimators: ``estimate(x, y) -> MIEstimate``, x the representation side.

    Subclasses implement ``_estimate(x, y, p)`` (and ``_estimate_batch(xs, ys, ps)`` if ``batched``); the public
    methods add the fields every result has (:meth:`_finish`).
    """

    kind: ClassVar[str] = "mi"

    def estimate(self, x, y, *, p=None, ci: float | None = None, resamples: int = 20, shuffles: int = 0,
                 resample_seed: int = 0) -> MIEstimate:  # fmt: skip
        """I(X;Y) in nats; ``x`` the representation side, ``y`` the other side; ``p`` the probability of each row,
        for estimators of finite populations (``weighted``).

        ``ci``: also a confidence interval at this level (``result.ci``; ``resamples`` half-samples where the method
        has no standard error of its own); ``shuffles``: also the estimates on that many permutations of y and
        their p-value (``diagnostics["shuffle_p"]``); ``resample_seed`` draws the subsamples and permutations. See
        :mod:`ibcore.estimators.uncertainty`."""
        from .uncertainty import check_ci, interval, shuffle_baseline

        self._check_p(p)
        check_ci(ci, resamples, shuffles)
        start = time.perf_counter()
        r = self._finish(self._estimate(x, y, p), start, (x, y))
        if ci is not None:
            r = interval(self, r, (x, y), p, ci, resamples, resample_seed, lambda a, b: self._estimate(a, b, None))
        if shuffles:
            r = shuffle_baseline(self, r, x, y, shuffles, ci, resample_seed, lambda a, b: self._estimate(a, b, p))
        return r

    def estimate_batch(self, x, y, *, p=None) -> list[MIEstimate]:
        """One estimate per pair: each side a table, a sequence of tables or a stacked ``(S, N, d)`` array (and
        ``p`` None, one probability vector or several); a single one is paired with every one of the others."""
        self._check_p(p)
        xs, ys, ps = _many(x), _many(y), _many_p(p)
        s = _broadcast(xs, ys, ps)
        start = time.perf_counter()
        raw = self._estimate_batch(xs, ys, ps, s)
        return [self._finish(r, start, (xs[0], ys[0]), count=s) for r in raw]

    def _estimate_batch(self, xs: list, ys: list, ps: list, s: int) -> list[MIEstimate]:
        return [self._estimate(xs[i % len(xs)], ys[i % len(ys)], ps[i % len(ps)]) for i in range(s)]

    def _estimate(self, x, y, p) -> MIEstimate:  # pragma: no cover - interface
        raise NotImplementedError


class EntropyEstimator(_Registered):
    """Base class of entropy estimators: ``estimate(x) -> EntropyEstimate``."""

    kind: ClassVar[str] = "entropy"
    y_role: ClassVar[str | None] = None

    def estimate(self, x, *, p=None, ci: float | None = None, resamples: int = 20,
                 resample_seed: int = 0) -> EntropyEstimate:  # fmt: skip
        """H(X) in nats; ``p`` the probability of each row, for estimators of finite populations; ``ci``,
        ``resamples``, ``resample_seed``: a confidence interval as :meth:`MIEstimator.estimate` gives."""
        from .uncertainty import check_ci, interval

        self._check_p(p)
        check_ci(ci, resamples, 0)
        start = time.perf_counter()
        r = self._finish(self._estimate(x, p), start, (x,))
        if ci is not None:
            r = interval(self, r, (x,), p, ci, resamples, resample_seed, lambda a: self._estimate(a, None))
        return r

    def _estimate(self, x, p) -> EntropyEstimate:  # pragma: no cover - interface
        raise NotImplementedError


_REGISTRY: dict[str, type[_Registered]] = {}
_CAPABILITIES = ("kind", "x_role", "y_role", "images", "trained", "weighted", "batched", "bound", "max_dim")


def register(name: str):
    """Class decorator that registers an estimator under ``name`` (its declared capabilities are checked).

    Example:
        >>> from ibcore.estimators.interface import MIEstimator, register
        >>> @register("zero-demo")
        ... class Zero(MIEstimator):
        ...     def _estimate(self, x, y, p):
        ...         return MIEstimate(0.0, len(x), self.name)
        >>> Zero().estimate([1, 2], [3, 4]).value
        0.0
        >>> _ = _REGISTRY.pop("zero-demo")  # keep the doctest free of side effects
    """

    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"estimator name {name!r} is already registered to {_REGISTRY[name].__name__}")
        if cls.kind not in ("mi", "entropy"):
            raise ValueError(f"{cls.__name__} must derive from MIEstimator or EntropyEstimator")
        if cls.x_role not in ROLES or (cls.y_role is not None and cls.y_role not in ROLES):
            raise ValueError(f"{cls.__name__}: x_role and y_role must be from {ROLES}, got {cls.x_role!r}, "
                             f"{cls.y_role!r}")  # fmt: skip
        if (cls.kind == "entropy") != (cls.y_role is None):
            raise ValueError(f"{cls.__name__}: y_role is None exactly for entropy estimators")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available(kind: str | None = None, **capabilities) -> list[str]:
    """Names of the registered estimators, sorted, optionally only those with the given capabilities.

    Arguments:
        kind: ``"mi"``, ``"entropy"`` or ``None`` for all.
        capabilities: Declared attributes to match, e.g. ``trained=True``, ``y_role="labels"``, ``images=True``.

    Example:
        >>> available("mi", trained=True)
        ['infonce', 'mienf', 'mine', 'nwj', 'smile', 'tridiag-mienf']
    """
    if kind not in (None, "mi", "entropy"):
        raise ValueError(f"kind must be None, 'mi' or 'entropy', got {kind!r}")
    unknown = sorted(set(capabilities) - set(_CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; declared ones: {list(_CAPABILITIES)}")
    return sorted(n for n, c in _REGISTRY.items() if (kind is None or c.kind == kind)
                  and all(getattr(c, k) == v for k, v in capabilities.items()))  # fmt: skip


def capabilities(name: str) -> dict[str, Any]:
    """The declared capabilities of the estimator registered as ``name``, with its hyperparameters' defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    defaults = {p.name: p.default for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}  # fmt: skip
    return {"name": name, "class": cls.__name__, **{k: getattr(cls, k) for k in _CAPABILITIES}, "params": defaults}


def capability_table() -> list[dict[str, Any]]:
    """One row of :func:`capabilities` per registered estimator, MI estimators first."""
    return [capabilities(n) for n in available("mi") + available("entropy")]


def _lookup(name: str) -> type[_Registered]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown estimator name={name!r}; available: {available()}")
    return _REGISTRY[name]


def make(name: str, **params) -> MIEstimator | EntropyEstimator:
    """Build the estimator registered as ``name`` with the given hyperparameters.

    Example:
        >>> import ibcore.estimators as est
        >>> est.make("ksg", k=3)
        KSG(k=3, ...)
    """
    cls = _lookup(name)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ValueError(f"{name} has no parameters {unknown}; it has {cls.param_names()}")
    return cls(**params)
