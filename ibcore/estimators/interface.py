"""The estimator interface: results, base classes and the registry.

This module imports nothing from the rest of :mod:`ibcore`, so every estimator module can depend on it.

Every mutual-information estimator is an object with ``estimate(x, y) -> MIEstimate`` and every entropy
estimator an object with ``estimate(x) -> EntropyEstimate``. Values are in nats; ``.bits`` converts.
Constructors only store keyword hyperparameters; validation and work happen in ``estimate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Estimate",
    "MIEstimate",
    "EntropyEstimate",
    "MIEstimator",
    "EntropyEstimator",
    "register",
    "available",
    "make",
]

NATS_PER_BIT = math.log(2.0)


@dataclass(frozen=True)
class Estimate:
    """An information estimate with what is needed to trust or reproduce it.

    Attributes:
        value: The estimate in nats. Never clipped: a negative MI estimate is reported as it came out.
        n_samples: Number of samples the estimate was computed from.
        estimator: Registered name of the estimator.
        params: The estimator's hyperparameters.
        std: Standard error of ``value`` in nats, where the estimator has one, else ``None``.
        diagnostics: Machine-readable details (convergence flags, counts, training curves).
    """

    value: float
    n_samples: int
    estimator: str
    params: dict[str, Any] = field(default_factory=dict)
    std: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

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


@dataclass(frozen=True)
class MIEstimate(Estimate):
    """An estimate of the mutual information I(X;Y), in nats."""


@dataclass(frozen=True)
class EntropyEstimate(Estimate):
    """An estimate of the (discrete or differential) entropy H(X), in nats."""


class _Registered:
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters this estimator was built with (the constructor's keyword arguments)."""
        return dict(vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class MIEstimator(_Registered):
    """Base class of mutual-information estimators: ``estimate(x, y) -> MIEstimate``."""

    kind: ClassVar[str] = "mi"

    def estimate(self, x, y) -> MIEstimate:  # pragma: no cover - interface
        raise NotImplementedError

    def estimate_stacked(self, x, y) -> list[MIEstimate]:
        """One estimate per stacked network: ``x`` and/or ``y`` of shape ``(S, N, d)``, the other shared.

        This default calls :meth:`estimate` S times; estimators that can do all networks in one pass override it.
        """
        xs, ys = _unstack(x), _unstack(y)
        s = max(len(xs), len(ys))
        if {len(xs), len(ys)} - {1, s}:
            raise ValueError(f"x and y must stack the same number of networks, got [{len(xs)}, {len(ys)}]")
        return [self.estimate(xs[i % len(xs)], ys[i % len(ys)]) for i in range(s)]


def _unstack(x) -> list:
    # A (S, N, d) array or tensor becomes S tables (N, d); anything else is one table.
    ndim = getattr(x, "ndim", None)
    return list(x) if ndim == 3 else [x]


class EntropyEstimator(_Registered):
    """Base class of entropy estimators: ``estimate(x) -> EntropyEstimate``."""

    kind: ClassVar[str] = "entropy"

    def estimate(self, x) -> EntropyEstimate:  # pragma: no cover - interface
        raise NotImplementedError


_REGISTRY: dict[str, type[_Registered]] = {}


def register(name: str):
    """Class decorator that registers an estimator under ``name``.

    Example:
        >>> from ibcore.estimators.interface import MIEstimator, register
        >>> @register("zero-demo")
        ... class Zero(MIEstimator):
        ...     def estimate(self, x, y):
        ...         return MIEstimate(0.0, len(x), self.name)
        >>> _ = _REGISTRY.pop("zero-demo")  # keep the doctest free of side effects
    """

    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"estimator name {name!r} is already registered to {_REGISTRY[name].__name__}")
        if cls.kind not in ("mi", "entropy"):
            raise ValueError(f"{cls.__name__} must derive from MIEstimator or EntropyEstimator")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available(kind: str | None = None) -> list[str]:
    """Names of the registered estimators, sorted.

    Arguments:
        kind: ``"mi"`` for mutual-information estimators, ``"entropy"`` for entropy estimators, ``None`` for all.
    """
    if kind not in (None, "mi", "entropy"):
        raise ValueError(f"kind must be None, 'mi' or 'entropy', got {kind!r}")
    return sorted(n for n, c in _REGISTRY.items() if kind is None or c.kind == kind)


def make(name: str, **params) -> MIEstimator | EntropyEstimator:
    """Build the estimator registered as ``name`` with the given hyperparameters.

    Example:
        >>> import ibcore.estimators as est
        >>> est.make("ksg", k=3)
        KSG(k=3, ...)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown estimator name={name!r}; available: {available()}")
    return _REGISTRY[name](**params)
