"""The information plane of any ``torch.nn.Module``: layer taps (:mod:`ibcore.taps`), an optional compressor per
layer, and any pair of registered estimators, in the user's own training loop or in :func:`ibcore.training.fit`.

:class:`Probe` is both a callable for a hand-written loop (``probe(model, step)`` measures when the step is due)
and a :class:`~ibcore.training.Callback` of ``fit`` (it measures ``state.model`` at ``state.epoch``); the two give
the same table for the same network. :func:`measure` measures a network once.

A row of the table is a flat dict: ``epoch`` (the step or epoch the loop passed), ``model`` (a label: the seed),
``layer`` (the tapped layer's position, from 1, so that :mod:`ibcore.plotting` and :func:`ibcore.infoplane.aggregate`
take the table as they take :class:`~ibcore.infoplane.InformationPlane` records), ``module`` (its name),
``estimator`` (the pair's label), ``i_xt``, ``i_ty`` (nats) with ``i_xt_std``, ``i_ty_std`` (standard errors where
the estimator has them, else ``None``), ``width`` (units of the layer's output), ``dims`` (what the estimators were
given after pooling and compression), ``pool``, ``compressor`` and ``compressor_fitted_at`` (the step at which the
layer's compressor was fitted, ``None`` without one), ``warnings`` (both estimates'), and, with ``details``, the two
whole estimates (params, seconds, device, diagnostics).

Which estimator may measure what is checked against its declared capabilities before anything runs where it can be
(roles) and at the first measurement where widths are known (``max_dim``): an estimator meant for a few dimensions
that is given a 20,000-unit layer says so and names the compressor to use.

Sample propagation (estimators with ``x_role = "centres"``) measures the tapped layers that are additive
:class:`~ibcore.nets.GaussianNoise` modules (all of them when ``layers`` is ``None``): their input is the centre,
and ``replicas`` noisy passes per input give the deeper layers' centres. Mean pooling over ``s`` positions and an orthonormal projection (:class:`PCA`,
:class:`IncrementalPCA`) keep additive Gaussian noise Gaussian (standard deviation ``sigma / sqrt(s)`` and
``sigma``), so the estimator is given the noise of the rows it measures: I(X; pooled T), which is at most I(X; T).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from .estimators.interface import MIEstimate, MIEstimator
from .estimators.lossy import PCA, IncrementalPCA, is_fitted
from .infoplane import record
from .taps import LayerTaps, resolve_layers
from .training import Callback

__all__ = ["Probe", "measure", "compressor_for"]


def compressor_for(estimator: MIEstimator, width: int) -> str:
    """The advice given when a layer is too wide for ``estimator``: which compressor to use."""
    k = min(estimator.max_dim or 10, 10)
    return (f"compress it first: Probe(..., compressor=PCA({k})) (IncrementalPCA({k}) for layers too wide to hold, "
            f"fitted batch by batch), or pool='mean' for feature maps (Butakov et al. 2024)")  # fmt: skip


class Probe(Callback):
    """Measures I(X;T) and I(T;Y) of named layers of any network, at given steps, as a tidy table (``records``).

    Arguments:
        x: The probe inputs, ``(N, ...)`` as the model takes them (or a tuple of positional arguments).
        y: Their labels ``(N,)``.
        estimators: ``{label: estimator}`` (used for both sides) or ``{label: (for I(X;T), for I(T;Y))}``.
        layers: Module names or globs (:func:`ibcore.taps.resolve_layers`); ``None``: every leaf that changes the
            representation.
        x_ids: What stands for X in I(X;T): default ``arange(N)`` (every probe input its own symbol), or rows such
            as compressed codes of the inputs (Butakov et al. 2024).
        pool: Per-batch reduction of each layer's output (:func:`ibcore.taps.pool_output`), or ``{name: choice}``.
        compressor: ``None``; an object with ``fit``/``transform`` (:class:`PCA`, :class:`Autoencoder`) or with
            ``partial_fit`` (:class:`IncrementalPCA`, fitted batch by batch); or ``{name: compressor}``. Each layer
            gets its own copy. Layers narrower than its components are not compressed.
        refit: ``"once"`` (fitted at the first measurement, or when :meth:`fit_compressors` is called, then kept)
            or ``"each"`` (refitted at every measurement). The table records the step each was fitted at.
        at: Steps at which ``probe(model, step)`` measures (e.g. :func:`ibcore.training.log_epochs`).
        every: Or measure every ``every`` steps (step 0 included). Neither given: every call measures.
        batch_size: Probe rows per forward pass.
        mode: ``"eval"`` or ``"train"`` (dropout on; batch norm stays in evaluation) for the forward passes.
        replicas: Passes per input (input-major rows), for noisy networks: sample propagation gets ``replicas``
            centres per input, the other estimators ``replicas`` noisy rows per input (e.g. ``class-mi`` against the
            input ids: a k-NN estimate of the same I(X;T) from samples alone). Ids and labels are repeated to match.
        model_label: The ``model`` field of the rows (e.g. the seed).
        details: Keep the whole estimates in each row.
        ci, resamples, shuffles: Confidence intervals at level ``ci`` (rows ``i_xt_ci``, ``i_ty_ci``) and the
            shuffle baseline (``i_xt_shuffle_p``, ``i_ty_shuffle_p``), as ``estimate`` gives them
            (:mod:`ibcore.estimators.uncertainty`); each interval costs ``resamples`` more estimates where the
            estimator has no standard error of its own.

    Example:
        >>> from ibcore.estimators import Binning
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
        >>> x = torch.rand(64, 3); y = (x[:, 0] > 0.5).long()
        >>> probe = Probe(x, y, {"30 bins": Binning(n_bins=30)}, layers=["1", "2"], every=10)
        >>> for step in range(20):
        ...     _ = probe(net, step)  # measures at steps 0 and 10
        >>> sorted({(r["epoch"], r["module"]) for r in probe.records})
        [(0, '1'), (0, '2'), (10, '1'), (10, '2')]
    """

    def __init__(self, x, y, estimators: Mapping, *, layers: str | Sequence[str] | None = None, x_ids=None,
                 pool="flatten", compressor=None, refit: str = "once", at: Sequence[int] | None = None,
                 every: int | None = None, batch_size: int = 512, mode: str = "eval", replicas: int = 1,
                 model_label=0, details: bool = False, ci: float | None = None, resamples: int = 20,
                 shuffles: int = 0):  # fmt: skip
        self.x, self.y = x, y
        first = x[0] if isinstance(x, (tuple, list)) else x
        n = int(first.shape[0])
        if int(y.shape[0]) != n:
            raise ValueError(f"x and y must have the same number of rows, got {n} and {int(y.shape[0])}")
        self.x_ids = torch.arange(n, device=first.device) if x_ids is None else x_ids
        if int(self.x_ids.shape[0]) != n:
            raise ValueError(f"x_ids must have one row per probe input ({n}), got {int(self.x_ids.shape[0])}")
        self.estimators = {}
        for label, est in dict(estimators).items():
            pair = est if isinstance(est, tuple) else (est, est)
            if len(pair) != 2 or not all(isinstance(e, MIEstimator) for e in pair):
                raise ValueError(f"estimators[{label!r}] must be an MI estimator or a pair of them, got {est!r}")
            if (pair[0].x_role == "centres") != (pair[1].x_role == "centres"):
                raise ValueError(f"estimators[{label!r}]: both or neither must measure centres of a noisy layer, "
                                 f"got x_role {pair[0].x_role!r} and {pair[1].x_role!r}")  # fmt: skip
            if x_ids is None and (pair[0].y_role == "continuous" or (pair[0].y_role == "labels" and replicas == 1)):
                raise ValueError(f"estimators[{label!r}]: {pair[0].name} takes {pair[0].y_role} y, but I(X;T) "
                                 "gives it input ids (every probe input its own symbol, one row each); give x_ids "
                                 "(e.g. compressed inputs), an estimator with y_role 'discrete' or 'any' for I(X;T), "
                                 "or, for a noisy network, replicas > 1 noisy rows per input")  # fmt: skip
            self.estimators[label] = pair
        if not self.estimators:
            raise ValueError("estimators must name at least one estimator")
        if refit not in ("once", "each"):
            raise ValueError(f"refit must be 'once' or 'each', got {refit!r}")
        if at is not None and every is not None:
            raise ValueError(f"give at or every, not both (got at={at!r}, every={every!r})")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        self.layers, self.pool, self.compressor, self.refit = layers, pool, compressor, refit
        self.at = None if at is None else {int(s) for s in at}
        self.every, self.batch_size, self.mode, self.replicas = every, batch_size, mode, replicas
        self.model_label, self.details = model_label, bool(details)
        from .estimators.uncertainty import check_ci

        check_ci(ci, resamples, shuffles)
        self.ci, self.resamples, self.shuffles = ci, resamples, shuffles
        self.records: list[dict] = []
        self.fitted: dict[tuple[str, str], tuple[object, int]] = {}  # (module, side) -> (compressor, step fitted)
        self._checked = False

    # -- when -------------------------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        if self.at is not None:
            return int(step) in self.at
        return self.every is None or int(step) % self.every == 0

    def __call__(self, model: torch.nn.Module, step: int) -> list[dict] | None:
        """Measure ``model`` if ``step`` is due; returns the new rows (``None`` when not due)."""
        return self.measure(model, step) if self.due(step) else None

    def on_epoch_end(self, state) -> None:
        self(state.model, state.epoch)

    def state_dict(self) -> dict:
        if self.compressor is not None and self.refit == "once":
            raise ValueError("a Probe with compressors fitted once cannot be checkpointed yet (the compressors are "
                             "not saved); use refit='each' or no compressor in a checkpointed run")  # fmt: skip
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

    # -- what -------------------------------------------------------------------------------------------------
    def _names(self, model, centres: bool) -> list[str]:
        if not centres:
            return resolve_layers(model, self.layers)
        from .nets.resnet import GaussianNoise

        modules = dict(model.named_modules())
        every = [n for n, m in modules.items() if isinstance(m, GaussianNoise)] if self.layers is None else \
            resolve_layers(model, self.layers)  # fmt: skip
        names = [n for n in every if isinstance(modules[n], GaussianNoise) and not modules[n].relative]
        if not names:
            raise ValueError(f"sample propagation measures the additive GaussianNoise layers (their input is the "
                             f"centre), and none of the tapped modules is one: {every[:8]}. Tap the noise layers, "
                             f"e.g. layers='*.noise'")  # fmt: skip
        return names

    def _compressor(self, name: str):
        c = self.compressor.get(name) if isinstance(self.compressor, Mapping) else self.compressor
        return c() if callable(c) and not hasattr(c, "transform") else c

    def fit_compressors(self, model: torch.nn.Module, step: int) -> None:
        """Fit every layer's compressor on the probe set now (``refit="once"`` then keeps them)."""
        if self.compressor is None:
            return
        for centres in sorted({a.x_role == "centres" for a, _ in self.estimators.values()}):
            self._fit(model, step, centres)

    def _fit(self, model, step, centres: bool, tables: Mapping[str, torch.Tensor] | None = None) -> None:
        # Fit a fresh copy of every layer's compressor: on ``tables`` (the pooled rows, when one pass serves both
        # fitting and measuring), else streaming the probe set through the taps (``partial_fit`` batch by batch).
        side = "centres" if centres else "output"
        names = self._names(model, centres)
        fresh = {n: copy.deepcopy(c) for n in names if (c := self._compressor(n)) is not None}
        incremental = {n for n, c in fresh.items() if callable(getattr(c, "partial_fit", None))}
        full = {}

        def take(n, rows):
            if n in fresh and rows.shape[1] <= getattr(fresh[n], "n_components", 0):
                del fresh[n]  # already as narrow as the compressor's output: measured as it is
            if n in incremental and n in fresh:
                fresh[n].partial_fit(rows)
            elif n in fresh:
                full.setdefault(n, []).append(rows)

        if tables is not None:
            for n, t in tables.items():
                take(n, t)
        else:
            with self._taps(model, names, centres) as taps:
                for batch in taps.batches(self._inputs(), self.batch_size):
                    for n, rows in batch.items():
                        take(n, rows)
        for n, rows in full.items():
            fresh[n].fit(torch.cat(rows))
        for n in names:
            self.fitted[(n, side)] = (fresh[n], int(step)) if n in fresh else (None, None)

    def _inputs(self):
        if self.replicas == 1:
            return self.x
        rep = lambda a: a.repeat_interleave(self.replicas, dim=0)  # noqa: E731 - input-major replicas
        return tuple(rep(a) for a in self.x) if isinstance(self.x, (tuple, list)) else rep(self.x)

    def _taps(self, model, names, centres: bool) -> LayerTaps:
        return LayerTaps(model, names, pool=self.pool, capture="input" if centres else "output", mode=self.mode)

    def measure(self, model: torch.nn.Module, step: int = 0) -> list[dict]:
        """Measure every tapped layer of ``model`` now, with every estimator pair; returns the new rows."""
        rows: list[dict] = []
        for centres in sorted({a.x_role == "centres" for a, _ in self.estimators.values()}):
            rows.extend(self._measure(model, int(step), centres))
        self.records.extend(rows)
        return rows

    def _measure(self, model, step: int, centres: bool) -> list[dict]:
        side = "centres" if centres else "output"
        names = self._names(model, centres)
        refit = self.compressor is not None and (
            self.refit == "each" or any((n, side) not in self.fitted for n in names))  # fmt: skip
        # compressors fitted on whole tables (not batch by batch) are fitted on the measuring pass's rows
        one_pass = refit and not any(callable(getattr(self._compressor(n), "partial_fit", None)) for n in names)
        if refit and not one_pass:
            self._fit(model, step, centres)
        modules = dict(model.named_modules())
        reduce, widths = {}, {}
        for n in names:
            c = None if one_pass else self.fitted.get((n, side), (None,))[0]
            reduce[n] = self._reducer(n, c, widths)
        with self._taps(model, names, centres) as taps:
            tables = taps.run(self._inputs(), self.batch_size, reduce=reduce)
        for n in names:
            widths[n]["units"] = taps.widths[n]
        if one_pass:
            self._fit(model, step, centres, tables)
            for n in names:
                comp = self.fitted[(n, side)][0]
                if comp is not None:
                    tables[n] = comp.transform(tables[n]).to(tables[n].dtype)
        r = self.replicas
        ids, labels = self.x_ids.repeat_interleave(r, dim=0), self.y.repeat_interleave(r, dim=0)
        out = []
        for depth, n in enumerate(names, start=1):
            t = tables[n]
            comp, fitted_at = self.fitted.get((n, side), (None, None))
            for label, (est_xt, est_ty) in self.estimators.items():
                if (est_xt.x_role == "centres") != centres:
                    continue
                self._check_width(label, (est_xt, est_ty), n, t.shape[1], widths[n])
                if centres:
                    est_xt, est_ty = self._with_noise(label, est_xt, modules[n], n, widths, comp), \
                        self._with_noise(label, est_ty, modules[n], n, widths, comp)  # fmt: skip
                if self.ci is not None or self.shuffles:
                    kw = {"ci": self.ci, "resamples": self.resamples, "shuffles": self.shuffles}
                    a, b = est_xt.estimate(t, ids, **kw), est_ty.estimate(t, labels, **kw)
                elif est_xt is est_ty and est_xt.batched:
                    a, b = est_xt.estimate_batch(t, [ids, labels])
                else:
                    a, b = est_xt.estimate(t, ids), est_ty.estimate(t, labels)
                out.append({"epoch": step, "model": self.model_label, "layer": depth, "module": n,
                            "estimator": label, **record(a, b, self.details), "width": widths[n]["units"],
                            "dims": int(t.shape[1]), "pool": _describe(self._pool_of(n)),
                            "compressor": None if comp is None else repr(comp), "compressor_fitted_at": fitted_at,
                            "warnings": [*a.warnings, *b.warnings]})  # fmt: skip
        return out

    def _pool_of(self, name):
        return self.pool.get(name, "flatten") if isinstance(self.pool, Mapping) else self.pool

    def _reducer(self, name: str, comp, widths: dict) -> Callable:
        def reduce(rows: torch.Tensor) -> torch.Tensor:
            widths.setdefault(name, {"pooled": int(rows.shape[1])})
            return rows if comp is None else comp.transform(rows).to(rows.dtype)
        return reduce

    def _check_width(self, label, pair, name, dims, width) -> None:
        for est in pair:
            if est.max_dim is not None and dims > est.max_dim:
                raise ValueError(f"estimators[{label!r}]: {est.name} is meant for at most {est.max_dim} dimensions "
                                 f"(its declared max_dim), but layer {name!r} gives it {dims} "
                                 f"({width['units']} units); {compressor_for(est, dims)}")  # fmt: skip

    def _with_noise(self, label, est, module, name, widths, comp) -> MIEstimator:
        if comp is not None and not isinstance(comp, (PCA, IncrementalPCA)):
            raise ValueError(f"estimators[{label!r}]: sample propagation after the compressor {comp!r} of layer "
                             f"{name!r} is not defined (only an orthonormal projection, PCA or IncrementalPCA, keeps "
                             f"the noise Gaussian)")  # fmt: skip
        s = widths[name]["units"] / widths[name]["pooled"]  # positions averaged into each pooled unit
        pool = self._pool_of(name)
        if pool not in ("flatten", "mean") and not (isinstance(pool, int) and s == round(s)):
            raise ValueError(f"estimators[{label!r}]: pool={pool!r} of layer {name!r} does not keep the noise "
                             "Gaussian with one standard deviation; use pool='flatten' or 'mean'")  # fmt: skip
        return est.clone(noise_std=module.std / math.sqrt(s))


def _describe(pool) -> str:
    return pool if isinstance(pool, str) else (f"{pool}x{pool}" if isinstance(pool, int) else getattr(
        pool, "__name__", repr(pool)))  # fmt: skip


def measure(model: torch.nn.Module, x, y, estimators: Mapping, *, step: int = 0, **probe) -> list[dict]:
    """Measure ``model`` once: the rows of :class:`Probe` (its other arguments in ``probe``) at ``step``."""
    return Probe(x, y, estimators, **probe).measure(model, step)
