"""Information-plane tracking: I(X;T_l) and I(T_l;Y) for every layer, epoch and network, as tidy records.

A record is a flat dict ``{"epoch", "model", "layer", "estimator", "i_xt", "i_ty"}`` with values in nats, ``model``
the network's seed and ``layer`` counted from 1 (the first hidden layer) to L (the softmax output). Lists of such
dicts load straight into any data-frame library and are what the plotting functions take.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ._io import write_atomic
from .estimators.interface import MIEstimator
from .training import RecordLayers, _AtEpochs

__all__ = [
    "InformationPlane",
    "NoisyInformationPlane",
    "layer_information",
    "select",
    "aggregate",
    "compression",
    "compressing_layers",
    "smooth",
    "phases",
    "save_records",
    "load_records",
]


def layer_information(
    layers: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    estimators: Mapping[str, MIEstimator],
    *,
    shared_bounds: bool = False,
) -> list[dict]:
    """I(X;T_l) and I(T_l;Y) of one network's layers with every estimator.

    Arguments:
        layers: Representations ``(N, width)`` of the N inputs, one tensor per layer.
        x: What stands for X in I(X;T): for a finite input set, integer input indices (every input its own symbol).
        y: Labels ``(N,)``.
        estimators: ``{label: estimator}``.
        shared_bounds: For estimators with a ``bounds`` hyperparameter (binning), bin every layer between the
            minimum and maximum over all layers (the "global bounds" of Lorenzen et al. 2022, App. A) instead of the
            estimator's own setting.
    """
    out = []
    for label, est in estimators.items():
        if shared_bounds and "bounds" in est.get_params():
            lo = min(float(t.min()) for t in layers)
            hi = max(float(t.max()) for t in layers)
            est = type(est)(**{**est.get_params(), "bounds": (lo, hi)})
        for i, t in enumerate(layers, start=1):
            out.append(
                {"layer": i, "estimator": label,
                 "i_xt": est.estimate(x, t).value, "i_ty": est.estimate(t, y).value}
            )  # fmt: skip
    return out


class InformationPlane(RecordLayers):
    """Callback that measures the information plane of every stacked network at the given epochs.

    Arguments:
        x: Network inputs ``(N, d)`` on which the layers are measured (e.g. all 4096 SZT inputs).
        y: Labels ``(N,)``.
        estimators: ``{label: MI estimator}``, used for both I(X;T) and I(T;Y), or ``{label: (estimator for
            I(X;T), estimator for I(T;Y))}`` (e.g. a continuous-continuous and a continuous-discrete one).
        epochs: Epochs at which to measure (``None``: every epoch).
        x_ids: What stands for X; default ``arange(N)``: every input is its own equiprobable symbol. Or any
            per-input rows, e.g. compressed codes of the inputs (Butakov et al. 2024).
        shared_bounds: See :func:`layer_information`.

    Example:
        >>> from ibcore.nets import MLP
        >>> from ibcore.estimators import Binning
        >>> x = torch.rand(64, 3); y = (x[:, 0] > 0.5).long()
        >>> plane = InformationPlane(x, y, {"30 bins": Binning(n_bins=30)}, epochs=[0])
        >>> plane.on_epoch_end(type("S", (), {"epoch": 0, "model": MLP((3, 4, 2), seeds=[7])})())
        >>> sorted(plane.records[0])
        ['epoch', 'estimator', 'i_ty', 'i_xt', 'layer', 'model']
    """

    def __init__(self, x, y, estimators: Mapping[str, MIEstimator], *, epochs=None, x_ids=None, shared_bounds=False):
        super().__init__(x, self._measure, epochs)
        self.y = y
        self.estimators = dict(estimators)
        for label, est in self.estimators.items():
            pair = est if isinstance(est, tuple) else (est,)
            if len(pair) not in (1, 2) or not all(isinstance(e, MIEstimator) for e in pair):
                raise ValueError(f"estimators[{label!r}] must be an MI estimator or a pair of them, got {est!r}")
        self.x_ids = torch.arange(x.shape[0], device=x.device) if x_ids is None else x_ids
        self.shared_bounds = shared_bounds
        self.records: list[dict] = []
        self._seeds: list[int] = [0]

    def on_epoch_end(self, state) -> None:
        self._seeds = list(getattr(state.model, "seeds", [0]))
        super().on_epoch_end(state)

    def _measure(self, epoch: int, layers: list[torch.Tensor]) -> None:
        layers = [t if t.ndim == 3 else t.unsqueeze(0) for t in layers]  # (S, N, width)
        for label, est in self.estimators.items():
            est_xt, est_ty = est if isinstance(est, tuple) else (est, est)
            if self.shared_bounds and "bounds" in est_xt.get_params():
                if est_ty is not est_xt:
                    raise ValueError(f"shared_bounds needs one binning estimator per label; {label!r} has a pair")  # bounds differ per network: one at a time
                for s, seed in enumerate(self._seeds):
                    rows = layer_information([t[s] for t in layers], self.x_ids, self.y, {label: est},
                                             shared_bounds=True)  # fmt: skip
                    self.records.extend({"epoch": epoch, "model": seed, **r} for r in rows)
                continue
            for i, t in enumerate(layers, start=1):  # every network at once where the estimator can
                i_xt = est_xt.estimate_stacked(self.x_ids, t)
                i_ty = est_ty.estimate_stacked(t, self.y)
                self.records.extend(
                    {"epoch": epoch, "model": seed, "layer": i, "estimator": label,
                     "i_xt": a.value, "i_ty": b.value}
                    for seed, a, b in zip(self._seeds, i_xt, i_ty)
                )  # fmt: skip


class NoisyInformationPlane(_AtEpochs):
    """I(X;T_l) and I(T_l;Y) of every hidden layer of a noisy network by sample propagation (Goldfeld et al. 2019).

    At each given epoch the network's :meth:`~ibcore.nets.MLP.centres` are drawn (``replicas`` noisy propagations
    per input for layers 2 and deeper) and :class:`~ibcore.estimators.SamplePropagation` computes, for every stacked
    network and hidden layer, I(X;T) with X the input index and I(T;Y) with Y the label. Records are those of
    :class:`InformationPlane` plus the Monte Carlo standard errors ``i_xt_std`` and ``i_ty_std``.

    Arguments:
        x, y: The finite input set ``(N, d)`` (every input equiprobable) and its labels ``(N,)``.
        estimator: A :class:`~ibcore.estimators.SamplePropagation` whose ``noise_std`` is the network's.
        replicas: Noisy propagations per input.
        epochs: Epochs at which to measure (``None``: every epoch).
        label: The ``estimator`` field of the records.
        seed: Seed of the propagation noise (combined with the epoch), so measurements are reproducible.
        keep: Epochs (among the measured ones) at which the centres themselves are kept, on the CPU, for figures
            of the representations: ``kept[epoch][layer]`` is a tensor ``(S, rows, width)`` (layers from 1).
        keep_layers: The layers kept (default: all hidden layers).
        measures: More numbers per record, ``{name: fn}`` with ``fn(t, labels) -> float`` called on each network's
            centres of each layer ``(rows, width)`` and their labels, e.g. a clustering measure
            (:mod:`ibcore.clustering`) to plot beside I(X;T).
    """

    def __init__(self, x, y, estimator, *, replicas: int, epochs=None, label: str = "sp", seed: int = 0,
                 keep: Sequence[int] = (), keep_layers: Sequence[int] | None = None,
                 measures: Mapping[str, Callable] | None = None):  # fmt: skip
        super().__init__(epochs)
        self.x, self.y, self.estimator, self.replicas = x, y, estimator, replicas
        self.label, self.seed = label, seed
        self.keep = {int(e) for e in keep}
        self.keep_layers = None if keep_layers is None else {int(l) for l in keep_layers}
        self.measures = dict(measures or {})
        clash = set(self.measures) & {"epoch", "model", "layer", "estimator", "i_xt", "i_ty", "i_xt_std", "i_ty_std"}
        if clash:
            raise ValueError(f"measures must not reuse the record fields {sorted(clash)}")
        self.records: list[dict] = []
        self.kept: dict[int, dict[int, torch.Tensor]] = {}

    def on_epoch_end(self, state) -> None:
        if not self.due(state):
            return
        model = state.model
        if abs(model.noise_std - self.estimator.noise_std) > 1e-12 * max(1.0, model.noise_std):
            raise ValueError(f"estimator noise_std={self.estimator.noise_std} differs from the network's "
                             f"noise_std={model.noise_std}")  # fmt: skip
        g = torch.Generator(device=self.x.device).manual_seed(int(self.seed) * 1_000_003 + int(state.epoch))
        n = self.x.shape[0]
        ids = torch.arange(n, device=self.x.device)
        centres = model.centres(self.x, self.replicas, generator=g)
        if state.epoch in self.keep:
            self.kept[state.epoch] = {l: c.cpu() for l, c in enumerate(centres, start=1)
                                      if self.keep_layers is None or l in self.keep_layers}  # fmt: skip
        for layer, c in enumerate(centres, start=1):
            r = c.shape[1] // n
            rows_x, rows_y = ids.repeat_interleave(r), self.y.repeat_interleave(r)
            for s, seed in enumerate(getattr(model, "seeds", [0])):
                a, b = self.estimator.estimate_each([rows_x, rows_y], c[s])
                self.records.append(
                    {"epoch": state.epoch, "model": seed, "layer": layer, "estimator": self.label,
                     "i_xt": a.value, "i_ty": b.value, "i_xt_std": a.std, "i_ty_std": b.std}
                    | {name: float(fn(c[s], rows_y)) for name, fn in self.measures.items()}
                )  # fmt: skip


def select(records: Iterable[dict], **where) -> list[dict]:
    """The records whose fields equal the given values, e.g. ``select(recs, estimator="30 bins", layer=5)``."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def aggregate(records: Iterable[dict], value: str, by: Sequence[str] = ("layer", "epoch")) -> dict[tuple, dict]:
    """Mean, standard deviation and count of ``value`` over the records sharing the fields ``by``.

    Returns:
        ``{key: {"mean", "std", "n"}}`` with ``key`` the tuple of ``by`` values, sorted. ``std`` is the sample
        standard deviation over models (0 for a single model).
    """
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        groups[tuple(r[k] for k in by)].append(r[value])
    out = {}
    for key in sorted(groups):
        v = np.asarray(groups[key], dtype=np.float64)
        out[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
    return out


def compression(records: Iterable[dict], *, estimator: str, layer: int, value: str = "i_xt",
                n_se: float = 2.0) -> dict:  # fmt: skip
    """Does ``value`` of one layer fall after its peak? The criterion the book uses for "the layer compresses".

    Over the records of one estimator and layer, take the mean over networks at every epoch. The layer compresses
    when the mean at the last epoch lies more than ``n_se`` standard errors (over networks, at the last epoch)
    below the highest mean.

    Returns:
        ``{"peak", "peak_epoch", "final", "final_std", "n", "drop", "compresses"}``, values in nats.

    Example:
        >>> recs = [{"estimator": "b", "layer": 1, "epoch": e, "model": m, "i_xt": v + 0.01 * m}
        ...         for e, v in [(0, 1.0), (10, 3.0), (100, 2.0)] for m in range(3)]
        >>> c = compression(recs, estimator="b", layer=1)
        >>> c["peak_epoch"], round(c["drop"], 3), c["compresses"]
        (10, 1.0, True)
    """
    agg = aggregate(select(records, estimator=estimator, layer=layer), value, by=("epoch",))
    if not agg:
        raise ValueError(f"no records with estimator={estimator!r} and layer={layer!r}")
    (peak_epoch,) = max(agg, key=lambda key: agg[key]["mean"])
    last = agg[max(agg)]
    drop = agg[(peak_epoch,)]["mean"] - last["mean"]
    return {
        "peak": agg[(peak_epoch,)]["mean"], "peak_epoch": peak_epoch, "final": last["mean"],
        "final_std": last["std"], "n": last["n"], "drop": drop,
        "compresses": bool(drop > n_se * last["std"] / np.sqrt(last["n"])),
    }  # fmt: skip


def compressing_layers(records: Iterable[dict], *, estimator: str, value: str = "i_xt", n_se: float = 2.0) -> list[int]:
    """The layers of one estimator's records that compress by the criterion of :func:`compression`.

    Example:
        >>> recs = [{"estimator": "b", "layer": l, "epoch": e, "model": m, "i_xt": v * l + 0.01 * m}
        ...         for l in (1, 2) for e, v in [(0, 1.0), (10, 3.0), (100, 3.0 if l == 1 else 2.0)] for m in range(3)]
        >>> compressing_layers(recs, estimator="b")
        [2]
    """
    recs = select(records, estimator=estimator)
    layers = sorted({r["layer"] for r in recs})
    return [l for l in layers if compression(recs, estimator=estimator, layer=l, value=value, n_se=n_se)["compresses"]]


def smooth(values, *, window: int = 30, polyorder: int = 4, cutoff: float | None = 0.125, order: int = 8) -> np.ndarray:
    """A per-epoch curve smoothed as Butakov et al. (2024) smooth their information planes: a Savitzky-Golay filter
    (``window`` points, or all of them when fewer; polynomial order ``polyorder``, at most the window minus one),
    then a zero-phase Butterworth low-pass filter (``order``, ``cutoff`` as a fraction of the Nyquist frequency;
    ``None``: no low-pass). The defaults are the paper's, for its 300 epochs; a run of a few tens of epochs needs a
    window of a few epochs and no low-pass, or the smoothing moves the peaks (a window as long as the run fits one
    polynomial to all of it).
    The paper pads the Butterworth pass by 5 points, which bends the last epochs by up to several tenths of a nat on
    a smooth curve; here the padding is scipy's default (27 points for order 8), or the whole curve when shorter.
    Curves of fewer than 3 points come back unchanged.

    Example:
        >>> v = np.sin(np.linspace(0, 3, 60)) + 0.1 * np.random.default_rng(0).standard_normal(60)
        >>> bool(np.abs(smooth(v) - np.sin(np.linspace(0, 3, 60))).max() < 0.1)
        True
    """
    from scipy.signal import butter, savgol_filter, sosfiltfilt

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a 1-D sequence of finite numbers, got shape {v.shape}")
    for name, k in (("window", window), ("polyorder", polyorder), ("order", order)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    if cutoff is not None and not 0 < cutoff < 1:
        raise ValueError(f"cutoff must be in (0, 1) (a fraction of the Nyquist frequency) or None, got {cutoff!r}")
    if v.size < 3:
        return v.copy()
    w = min(int(window), v.size)
    v = savgol_filter(v, w, min(int(polyorder), w - 1))
    if cutoff is None:
        return v
    sos = butter(int(order), cutoff, output="sos")
    return sosfiltfilt(sos, v, padlen=min(3 * (2 * len(sos) + 1), v.size - 1))


def phases(epochs, values, *, min_drop: float = 0.0) -> list[dict]:
    """Split a (smoothed) I(X;T) curve into fitting and compression phases: the legs of its zigzag, turning only
    where the curve has moved back from its last extreme by more than ``min_drop`` nats (so that a wiggle of the
    estimate's own noise neither starts nor ends a phase; 0: every change of direction turns).

    Returns:
        ``[{"phase": "fitting" | "compression", "start", "end", "change"}]`` in epoch order, consecutive phases
        alternating; ``change`` is the value at ``end`` minus the value at ``start``.

    Example:
        >>> [(p["phase"], p["start"], p["end"]) for p in phases([0, 1, 2, 3, 4], [0.0, 1.0, 0.5, 0.7, 2.0])]
        [('fitting', 0, 1), ('compression', 1, 2), ('fitting', 2, 4)]
        >>> [(p["phase"], p["start"], p["end"]) for p in phases([0, 1, 2, 3, 4], [0.0, 1.0, 0.9, 1.2, 2.0],
        ...                                                       min_drop=0.2)]
        [('fitting', 0, 4)]
    """
    e = np.asarray(epochs)
    v = np.asarray(values, dtype=np.float64)
    if e.shape != v.shape or v.ndim != 1 or v.size < 2:
        raise ValueError(f"epochs and values must be 1-D of equal length >= 2, got shapes {e.shape} and {v.shape}")
    if not (isinstance(min_drop, (int, float)) and math.isfinite(min_drop) and min_drop >= 0):
        raise ValueError(f"min_drop must be a finite number >= 0, got {min_drop!r}")
    pivots, trend, ext = [0], 0, 0
    for i in range(1, v.size):
        if trend == 0:  # no move beyond min_drop yet: small first moves belong to the first phase
            if abs(v[i] - v[0]) > min_drop:
                trend, ext = (1 if v[i] > v[0] else -1), i
        elif trend * (v[i] - v[ext]) >= 0:  # the current phase goes on
            ext = i
        elif abs(v[i] - v[ext]) > min_drop:  # it turned at ext
            pivots.append(ext)
            trend, ext = -trend, i
    pivots.append(v.size - 1)
    return [{"phase": "compression" if v[b] < v[a] else "fitting", "start": e[a].item(), "end": e[b].item(),
             "change": float(v[b] - v[a])} for a, b in zip(pivots, pivots[1:]) if b > a]  # fmt: skip


def save_records(records: list[dict], path: str | os.PathLike) -> None:
    """Write records as JSON atomically (a temporary file renamed into place), so a crash leaves no partial file."""
    write_atomic(path, json.dumps(records))


def load_records(path: str | os.PathLike) -> list[dict]:
    """Read records written by :func:`save_records`."""
    with open(path) as f:
        return json.load(f)
