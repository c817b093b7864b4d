"""Information-plane tracking: I(X;T_l) and I(T_l;Y) for every layer, epoch and network, as tidy records.

A record is a flat dict ``{"epoch", "model", "layer", "estimator", "i_xt", "i_ty", "i_xt_std", "i_ty_std",
"estimates"}`` with values in nats, ``model`` the network's seed, ``layer`` counted from 1 (the first hidden layer)
to L (the softmax output) and ``estimates`` the two whole results (params, seconds, device, warnings, diagnostics).
Lists of such dicts load straight into any data-frame library and are what the plotting functions take; records
written before ``i_xt_std`` and ``estimates`` existed read the same way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ._io import write_atomic
from .estimators.interface import MIEstimate, MIEstimator
from .tables import describe, group_by
from .training import Metrics, _AtEpochs, fit

__all__ = [
    "InformationPlane",
    "train_and_track",
    "layer_information",
    "record",
    "select",
    "mean_of",
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
    details: bool = True,
    uncertainty: Mapping | None = None,
) -> list[dict]:
    """I(X;T_l) and I(T_l;Y) of one network's layers with every estimator, as records (:func:`record`).

    Arguments:
        layers: Representations ``(N, width)`` of the N inputs, one tensor per layer.
        x: What stands for X in I(X;T): for a finite input set, integer input indices (every input its own symbol).
        y: Labels ``(N,)``.
        estimators: ``{label: estimator}``.
        shared_bounds: For estimators with a ``bounds`` hyperparameter (binning), bin every layer between the
            minimum and maximum over all layers (the "global bounds" of Lorenzen et al. 2022, App. A) instead of the
            estimator's own setting.
        uncertainty: ``{"ci", "resamples", "shuffles"}`` passed to every ``estimate`` (intervals and the shuffle
            baseline, :mod:`ibcore.estimators.uncertainty`).
    """
    kw = dict(uncertainty or {})
    out = []
    for label, est in estimators.items():
        if shared_bounds and "bounds" in est.param_names():
            lo = min(float(t.min()) for t in layers)
            hi = max(float(t.max()) for t in layers)
            est = est.clone(bounds=(lo, hi))
        for i, t in enumerate(layers, start=1):
            # both sides in one call where no interval is asked for (a binning estimator bins the layer once)
            if kw:
                i_xt, i_ty = est.estimate(t, x, **kw), est.estimate(t, y, **kw)
            else:
                i_xt, i_ty = est.estimate_batch(t, [x, y])
            out.append({"layer": i, "estimator": label, **record(i_xt, i_ty, details)})
    return out


def record(i_xt: MIEstimate, i_ty: MIEstimate, details: bool = True) -> dict:
    """The fields of an information-plane record from the two estimates: ``i_xt`` and ``i_ty`` (nats), their
    standard errors ``i_xt_std`` and ``i_ty_std`` (``None`` where the method has none), their confidence intervals
    ``i_xt_ci`` and ``i_ty_ci`` (``[low, high]``, only when they were estimated with ``ci``) and shuffle p-values
    ``i_xt_shuffle_p``, ``i_ty_shuffle_p`` (only with ``shuffles``), and ``estimates``, the
    whole results (:meth:`~ibcore.estimators.Estimate.to_dict`: params, seconds, device, warnings, diagnostics),
    unless ``details`` is false (a sixth of the size: paper-scale runs keep hundreds of thousands of records)."""
    out = {"i_xt": i_xt.value, "i_ty": i_ty.value, "i_xt_std": i_xt.std, "i_ty_std": i_ty.std}
    for key, r in (("i_xt", i_xt), ("i_ty", i_ty)):
        if r.ci is not None:  # estimated with ci=level: the interval, and the shuffle p-value where there is one
            out[f"{key}_ci"] = [float(r.ci[0]), float(r.ci[1])]
        if "shuffle_p" in r.diagnostics:
            out[f"{key}_shuffle_p"] = r.diagnostics["shuffle_p"]
    if details:
        out["estimates"] = {"i_xt": i_xt.to_dict(), "i_ty": i_ty.to_dict()}
    return out


_FIELDS = {"epoch", "model", "layer", "estimator", "i_xt", "i_ty", "i_xt_std", "i_ty_std", "estimates"}


def _without_devices(v):
    # hyperparameters as they identify a measurement: every "device" entry dropped, at any depth, keys sorted
    if isinstance(v, dict):
        return {k: _without_devices(u) for k, u in sorted(v.items(), key=lambda kv: str(kv[0])) if k != "device"}
    if isinstance(v, (list, tuple)):
        return [_without_devices(u) for u in v]
    return v


class InformationPlane(_AtEpochs):
    """Callback that measures the information plane of every stacked network at the given epochs, with any pair of
    registered MI estimators.

    Each estimator is called ``estimate(t, other)``: the layer first, then what stands for X (``x_ids``) or the
    labels. What it is given follows its declared ``x_role``: estimators of noisy layers (``"centres"``, sample
    propagation) get the network's :meth:`~ibcore.nets.MLP.centres` (``replicas`` noisy propagations per input for
    layers 2 and deeper, the ids and labels repeated to match; the hidden layers only), every other estimator the
    layers themselves, ``model.layers(x)``. Estimators that batch (``batched``) measure every stacked network, or
    both sides, in one pass; any other estimator that measures both sides is asked for both in one call per network
    (``estimate_batch(layer, [ids, labels])``), which the default makes two estimates and which an estimator may
    serve from one pass (:class:`~ibcore.estimators.KDEBound`).

    Arguments:
        x: Network inputs ``(N, d)`` on which the layers are measured (e.g. all 4096 SZT inputs).
        y: Labels ``(N,)``.
        estimators: ``{label: MI estimator}``, used for both I(X;T) and I(T;Y), or ``{label: (estimator for
            I(X;T), estimator for I(T;Y))}`` (e.g. a continuous-continuous and a continuous-discrete one).
        epochs: Epochs at which to measure (``None``: every epoch).
        x_ids: What stands for X; default ``arange(N)``: every input is its own equiprobable symbol. Or any
            per-input rows, e.g. compressed codes of the inputs (Butakov et al. 2024).
        shared_bounds: See :func:`layer_information`.
        replicas: Noisy propagations per input, for estimators of centres.
        seed: Seed of the propagation noise (combined with the epoch), so that measurements are reproducible.
        keep: Epochs (among the measured ones) at which the representations themselves are kept, on the CPU, for
            figures: ``kept[epoch][layer]`` is a tensor ``(S, rows, width)`` (layers from 1; the centres when an
            estimator of centres is measured, else the layers).
        keep_layers: The layers kept (default: all).
        keep_replicas: Of the noisy propagations of each input in a table of centres, keep the first this many
            (``None``: all). A paper-scale run with 100 replicas keeps a hundredth as much with 1.
        measures: More numbers per record, ``{name: fn}`` with ``fn(t, labels) -> float`` called on each network's
            representation of each layer ``(rows, width)`` and its labels, e.g. a clustering measure
            (:mod:`ibcore.clustering`) to plot beside I(X;T).
        details: Keep the whole estimates in each record (default), or only the numbers (:func:`record`).
        ci, resamples, shuffles: Confidence intervals at level ``ci`` and the shuffle baseline in every record
            (``i_xt_ci``, ``i_ty_ci``, ``*_shuffle_p``; :mod:`ibcore.estimators.uncertainty`); the networks are
            then measured one at a time.

    Records are flat dicts (:func:`record`) with ``epoch``, ``model`` (the network's seed), ``layer`` (from 1) and
    ``estimator`` (the label).

    Example:
        >>> from ibcore.nets import MLP
        >>> from ibcore.estimators import Binning
        >>> x = torch.rand(64, 3); y = (x[:, 0] > 0.5).long()
        >>> plane = InformationPlane(x, y, {"30 bins": Binning(n_bins=30)}, epochs=[0])
        >>> plane.on_epoch_end(type("S", (), {"epoch": 0, "model": MLP((3, 4, 2), seeds=[7])})())
        >>> sorted(plane.records[0])
        ['epoch', 'estimates', 'estimator', 'i_ty', 'i_ty_std', 'i_xt', 'i_xt_std', 'layer', 'model']
    """

    def __init__(self, x, y, estimators: Mapping[str, MIEstimator], *, epochs=None, x_ids=None, shared_bounds=False,
                 replicas: int = 1, seed: int = 0, keep: Sequence[int] = (), keep_layers: Sequence[int] | None = None,
                 keep_replicas: int | None = None, measures: Mapping[str, Callable] | None = None,
                 details: bool = True, ci: float | None = None, resamples: int = 20, shuffles: int = 0):  # fmt: skip
        super().__init__(epochs)
        from .estimators.uncertainty import check_ci

        check_ci(ci, resamples, shuffles)
        self.uncertainty = {"ci": ci, "resamples": resamples, "shuffles": shuffles} if ci is not None or shuffles \
            else None  # fmt: skip
        self.details = bool(details)
        self.x, self.y = x, y
        self.estimators = {}
        for label, est in dict(estimators).items():
            pair = est if isinstance(est, tuple) else (est, est)
            if len(pair) != 2 or not all(isinstance(e, MIEstimator) for e in pair):
                raise ValueError(f"estimators[{label!r}] must be an MI estimator or a pair of them, got {est!r}")
            if (pair[0].x_role == "centres") != (pair[1].x_role == "centres"):
                raise ValueError(f"estimators[{label!r}]: both or neither must measure centres of a noisy layer, "
                                 f"got x_role {pair[0].x_role!r} and {pair[1].x_role!r}")  # fmt: skip
            if x_ids is None and pair[0].y_role == "labels":
                raise ValueError(f"estimators[{label!r}]: {pair[0].name} takes class labels as y, but I(X;T) gives "
                                 "it input ids (every input its own class); use an estimator with y_role "
                                 "'discrete' or 'continuous' for I(X;T), e.g. a pair (entropy-mi, class-mi) with "
                                 "x_ids")  # fmt: skip
            self.estimators[label] = pair
        if shared_bounds and any(a is not b and "bounds" in a.param_names() for a, b in self.estimators.values()):
            raise ValueError("shared_bounds needs one binning estimator per label, not a pair")
        self.x_ids = torch.arange(x.shape[0], device=x.device) if x_ids is None else x_ids
        self.shared_bounds = shared_bounds
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        self.replicas, self.seed = replicas, seed
        self.keep = {int(e) for e in keep}
        self.keep_layers = None if keep_layers is None else {int(l) for l in keep_layers}
        if keep_replicas is not None and (isinstance(keep_replicas, bool) or not isinstance(keep_replicas, int)
                                          or not 1 <= keep_replicas <= replicas):  # fmt: skip
            raise ValueError(f"keep_replicas must be None or an integer in [1, replicas={replicas}], got "
                             f"{keep_replicas!r}")  # fmt: skip
        self.keep_replicas = keep_replicas
        self.measures = dict(measures or {})
        clash = set(self.measures) & _FIELDS
        if clash:
            raise ValueError(f"measures must not reuse the record fields {sorted(clash)}")
        self.records: list[dict] = []
        self.kept: dict[int, dict[int, torch.Tensor]] = {}

    def on_epoch_end(self, state) -> None:
        if not self.due(state):
            return
        model, epoch = state.model, state.epoch
        seeds = list(getattr(model, "seeds", [0]))
        with torch.no_grad():
            if any(a.x_role == "centres" for a, _ in self.estimators.values()):
                self._check_noise(model)
                g = torch.Generator(device=self.x.device).manual_seed(int(self.seed) * 1_000_003 + int(epoch))
                centres = model.centres(self.x, self.replicas, generator=g)
                self._keep(epoch, centres)
                self._measure_centres(epoch, seeds, centres)
            if any(a.x_role != "centres" for a, _ in self.estimators.values()):
                layers = [t if t.ndim == 3 else t.unsqueeze(0) for t in model.layers(self.x)]  # (S, N, width)
                if not any(a.x_role == "centres" for a, _ in self.estimators.values()):
                    self._keep(epoch, layers)
                self._measure_layers(epoch, seeds, layers)

    def state_dict(self) -> dict:
        return {"records": self.records, "kept": self.kept, "measured": self._measured()}

    def load_state_dict(self, state: dict) -> None:
        saved, now = state.get("measured"), self._measured()  # absent in checkpoints written before it was stored
        if saved is not None and saved != now:
            diff = sorted(k for k in set(saved["estimators"]) | set(now["estimators"])
                          if saved["estimators"].get(k) != now["estimators"].get(k))  # fmt: skip
            raise ValueError(f"the checkpoint's information plane measured other things (estimators that differ: "
                             f"{diff}; measures: checkpoint {saved['measures']}, this run {now['measures']}): "
                             "resuming would leave its earlier epochs without them; delete the checkpoint to start "
                             "afresh")  # fmt: skip
        self.records, self.kept = list(state["records"]), dict(state["kept"])

    def _measured(self) -> dict:
        # What the records hold: every label's estimators with their hyperparameters (devices left out, so that a
        # run may resume on another device) and the extra measures' names. A checkpoint resumed with other lenses is
        # refused rather than continued with records that lack them at the epochs already measured.
        def params(est):
            return repr(_without_devices(est.get_params()))

        estimators = {label: [f"{e.name} {params(e)}" for e in pair] for label, pair in self.estimators.items()}
        return {"estimators": estimators, "measures": sorted(self.measures)}

    def _check_noise(self, model) -> None:
        for label, pair in self.estimators.items():
            for est in pair:
                sigma = est.get_params().get("noise_std")
                if est.x_role == "centres" and sigma is not None and abs(model.noise_std - sigma) > 1e-12 * max(
                        1.0, model.noise_std):  # fmt: skip
                    raise ValueError(f"estimators[{label!r}] noise_std={sigma} differs from the network's "
                                     f"noise_std={model.noise_std}")  # fmt: skip

    def _keep(self, epoch, tables) -> None:
        if epoch in self.keep:
            self.kept[epoch] = {l: self._first_replicas(t).detach().cpu() for l, t in enumerate(tables, start=1)
                                if self.keep_layers is None or l in self.keep_layers}  # fmt: skip

    def _first_replicas(self, t: torch.Tensor) -> torch.Tensor:
        # centres are input-major (S, N * replicas, w): input i's propagations are rows i * replicas ...
        n = self.x.shape[0]
        if self.keep_replicas is None or t.shape[-2] != n * self.replicas or self.keep_replicas == self.replicas:
            return t
        first = t.reshape(*t.shape[:-2], n, self.replicas, t.shape[-1])[..., : self.keep_replicas, :]
        # a copy: a view would keep (and a checkpoint would save) the storage of every replica
        return first.reshape(*t.shape[:-2], n * self.keep_replicas, t.shape[-1]).clone()

    def _extra(self, t, labels) -> dict:
        return {name: float(fn(t, labels)) for name, fn in self.measures.items()}

    def _measure_centres(self, epoch, seeds, centres) -> None:
        n = self.x.shape[0]
        for layer, c in enumerate(centres, start=1):
            r = c.shape[1] // n
            rows_x, rows_y = self.x_ids.repeat_interleave(r, dim=0), self.y.repeat_interleave(r, dim=0)
            for s, seed in enumerate(seeds):
                for label, (est_xt, est_ty) in self.estimators.items():
                    if est_xt.x_role != "centres":
                        continue
                    if self.uncertainty:
                        a, b = (est_xt.estimate(c[s], rows_x, **self.uncertainty),
                                est_ty.estimate(c[s], rows_y, **self.uncertainty))  # fmt: skip
                    elif est_xt is est_ty:  # both sides from the same Monte Carlo points
                        a, b = est_xt.estimate_batch(c[s], [rows_x, rows_y])
                    else:
                        a, b = est_xt.estimate(c[s], rows_x), est_ty.estimate(c[s], rows_y)
                    self.records.append({"epoch": epoch, "model": seed, "layer": layer, "estimator": label,
                                         **record(a, b, self.details), **self._extra(c[s], rows_y)})  # fmt: skip

    def _measure_layers(self, epoch, seeds, layers) -> None:
        for label, (est_xt, est_ty) in self.estimators.items():
            if est_xt.x_role == "centres":
                continue
            if self.shared_bounds and "bounds" in est_xt.param_names():  # bounds differ per network: one at a time
                for s, seed in enumerate(seeds):
                    rows = layer_information([t[s] for t in layers], self.x_ids, self.y, {label: est_xt},
                                             shared_bounds=True, details=self.details,
                                             uncertainty=self.uncertainty)  # fmt: skip
                    self.records.extend({"epoch": epoch, "model": seed, **r, **self._extra(layers[r["layer"] - 1][s],
                                                                                            self.y)} for r in rows)
                continue
            for i, t in enumerate(layers, start=1):  # every network at once where the estimator can
                if self.uncertainty:
                    i_xt = [est_xt.estimate(ts, self.x_ids, **self.uncertainty) for ts in t]
                    i_ty = [est_ty.estimate(ts, self.y, **self.uncertainty) for ts in t]
                elif est_xt is est_ty and not est_xt.batched:  # both sides in one call (one pass where it can)
                    i_xt, i_ty = zip(*(est_xt.estimate_batch(ts, [self.x_ids, self.y]) for ts in t))
                else:
                    i_xt = est_xt.estimate_batch(t, self.x_ids)
                    i_ty = est_ty.estimate_batch(t, self.y)
                self.records.extend(
                    {"epoch": epoch, "model": seed, "layer": i, "estimator": label, **record(a, b, self.details),
                     **self._extra(t[s], self.y)}
                    for s, (seed, a, b) in enumerate(zip(seeds, i_xt, i_ty))
                )  # fmt: skip


def train_and_track(model, train: tuple, estimators: Mapping, *, measure_on: tuple, epochs: int, batch_size: int,
                    lr: float, seed: int = 0, at=None, splits: Mapping | None = None, metrics_at=None,
                    save_to: str | os.PathLike | None = None, name: str = "run", callbacks=(), after_step=(),
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                    **plane) -> dict:  # fmt: skip
    """Train a network with :func:`~ibcore.training.fit` and measure it: the information plane of every layer on
    ``measure_on`` and loss and accuracy on ``splits``, at the given epochs. The recipe of every chapter.

    Arguments:
        model: The (stacked) network.
        train: Its training tensors ``(x, y)``.
        estimators: ``{label: estimator or (estimator for I(X;T), estimator for I(T;Y))}`` (:class:`InformationPlane`).
        measure_on: ``(x, y)`` on which the layers are measured (e.g. all 4096 SZT inputs).
        epochs, batch_size, lr, seed, callbacks, after_step: Passed to :func:`~ibcore.training.fit` (the
            measurements run first, then ``callbacks``).
        at: Epochs at which the plane is measured (``None``: every epoch).
        splits: ``{"train": (x, y), "test": (x, y)}`` for :class:`~ibcore.training.Metrics` (``None``: no metrics).
        metrics_at: Epochs of the metrics (default ``at``).
        save_to: A folder: the plane and metrics are saved there as ``<name>_plane.json`` and
            ``<name>_metrics.json`` (atomically) when training ends, so a sweep interrupted later keeps them.
        checkpoint: A folder: the run is checkpointed to ``<checkpoint>/<name>.ckpt`` and continued from there when
            started again (:func:`~ibcore.training.fit`); ``checkpoint_every`` as in ``fit``. Empty or ``None``: no
            checkpoints.
        plane: The other arguments of :class:`InformationPlane` (``x_ids``, ``shared_bounds``, ``replicas``,
            ``seed`` as ``plane_seed``, ``keep``, ``keep_layers``, ``keep_replicas``, ``measures``, ``details``).

    Returns:
        A dict: ``"plane"`` (records), ``"metrics"`` (records), ``"kept"`` (the representations kept),
        ``"seconds"`` (training time) and ``"state"`` (the final TrainState).
    """
    if "plane_seed" in plane:
        plane["seed"] = plane.pop("plane_seed")
    tracker = InformationPlane(*measure_on, estimators, epochs=at, **plane)
    metrics = Metrics(dict(splits), epochs=at if metrics_at is None else metrics_at) if splits else None
    state = fit(model, train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, after_step=after_step,
                callbacks=[*([metrics] if metrics else []), tracker, *callbacks],
                checkpoint=Path(checkpoint) / f"{name}.ckpt" if checkpoint else None,
                checkpoint_every=checkpoint_every)  # fmt: skip
    out = {"plane": tracker.records, "metrics": metrics.records if metrics else [], "kept": tracker.kept,
           "seconds": state.seconds, "state": state}  # fmt: skip
    if save_to:
        save_records(out["plane"], Path(save_to) / f"{name}_plane.json")
        if metrics:
            save_records(out["metrics"], Path(save_to) / f"{name}_metrics.json")
    return out


def mean_of(records: Iterable[dict], value: str, **where) -> float:
    """The mean of ``value`` over the records whose fields equal ``where`` (e.g. the final test accuracy over
    networks: ``mean_of(metrics, "accuracy", epoch=epochs, split="test")``); ``ValueError`` if none match."""
    vals = [r[value] for r in select(records, **where)]
    if not vals:
        raise ValueError(f"no records with {where}")
    return float(np.mean(vals))


def select(records: Iterable[dict], **where) -> list[dict]:
    """The records whose fields equal the given values, e.g. ``select(recs, estimator="30 bins", layer=5)``."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def aggregate(records: Iterable[dict], value: str, by: Sequence[str] = ("layer", "epoch")) -> dict[tuple, dict]:
    """Mean, standard deviation and count of ``value`` over the records sharing the fields ``by``.

    Returns:
        ``{key: {"mean", "std", "n"}}`` with ``key`` the tuple of ``by`` values, sorted. ``std`` is the sample
        standard deviation over models (0 for a single model).
    """
    return {key: describe([r[value] for r in rows], single_std=0.0) for key, rows in group_by(records, by).items()}


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
