"""One network, every lens: does a layer compress, by one stated rule, whatever estimator measured it.

The compression debate (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018; Goldfeld et al. 2019; Lorenzen et al. 2022;
Butakov et al. 2024) is about one quantity, the fall of I(X;T) after its peak, seen through different lenses. Here a
*lens* is a label of information-plane records (:class:`~ibcore.infoplane.InformationPlane`): an estimator, on the
network it applies to. :func:`fall_verdict` decides, for one lens and layer, from the networks of several seeds:

- the peak epoch ``e*`` is where the mean over networks of I(X;T) is highest; each network's *fall* is its value at
  ``e*`` minus its value at the last epoch (paired, so that what differs between networks cancels);
- with ``d`` the mean fall, ``se`` its standard error over networks and ``tau = min_fall * peak`` the smallest fall
  that counts (a fraction of the peak, so that the rule reads the same in bits or nats and for every lens):
  **compresses** when ``d - n_se * se > tau``, **does not** when ``d + n_se * se < tau``, else **cannot tell**
  (also with fewer than two networks).

:func:`verdict_table` applies it to every (setting, lens, layer); :func:`verdict_html` and :func:`verdict_glue` give
its rows to a book page. :func:`float_lenses` builds the lenses of a float network's layers, the same for every
chapter that compares them (the SZT capstone and its MNIST counterpart), and :func:`last_epoch_lens` measures one
network's layers through one more lens (the flow lens at the end of training).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from .estimators import Binning, KDEBound, NoisyLayerMI
from .infoplane import select
from .tables import html_table, to_bits

__all__ = ["VERDICTS", "fall_verdict", "float_lenses", "flow_lens_estimator", "lens_key", "last_epoch_lens",
           "verdict_glue", "verdict_html", "verdict_table"]

VERDICTS = ("compresses", "does not", "cannot tell")


def _check_rule(n_se, min_fall) -> None:
    for name, v in (("n_se", n_se), ("min_fall", min_fall)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if n_se <= 0:
        raise ValueError(f"n_se must be > 0, got {n_se!r}")
    if not 0 <= min_fall < 1:
        raise ValueError(f"min_fall must be in [0, 1), got {min_fall!r}")


def fall_verdict(records: Iterable[dict], *, estimator: str, layer: int, value: str = "i_xt", n_se: float = 2.0,
                 min_fall: float = 0.05) -> dict:  # fmt: skip
    """Does one layer compress through one lens? The rule of the module docstring, with the numbers behind it.

    Arguments:
        records: Information-plane records (``epoch``, ``model``, ``layer``, ``estimator`` and ``value``).
        estimator: The lens (the records' ``estimator`` label).
        layer: The layer (from 1).
        value: The quantity (``"i_xt"``).
        n_se: Standard errors of the mean fall that the decision must clear.
        min_fall: The smallest fall that counts, as a fraction of the peak.

    Returns:
        ``{"verdict", "peak", "peak_epoch", "final", "fall", "fall_se", "threshold", "n", "falls"}`` in the records'
        unit (``falls``: per network, in the order of their ``model`` labels). Only epochs that every network was
        measured at are used.

    Example:
        >>> recs = [{"estimator": "b", "layer": 1, "epoch": e, "model": m, "i_xt": v + 0.01 * m * e / 100}
        ...         for e, v in [(0, 1.0), (10, 3.0), (100, 2.0)] for m in range(3)]
        >>> v = fall_verdict(recs, estimator="b", layer=1)
        >>> v["verdict"], v["peak_epoch"], round(v["fall"], 3)
        ('compresses', 10, 0.991)
    """
    _check_rule(n_se, min_fall)
    rows = select(records, estimator=estimator, layer=layer)
    if not rows:
        raise ValueError(f"no records with estimator={estimator!r} and layer={layer!r}")
    curves: dict = {}
    for r in rows:
        v = r.get(value)
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"record of model {r['model']!r} at epoch {r['epoch']} has {value}={v!r}")
        curves.setdefault(r["model"], {})[r["epoch"]] = float(v)
    models = sorted(curves, key=str)
    epochs = sorted(set.intersection(*(set(c) for c in curves.values())))
    if not epochs:
        raise ValueError(f"estimator={estimator!r}, layer={layer!r}: no epoch was measured for every network")
    table = np.array([[curves[m][e] for e in epochs] for m in models])  # (models, epochs)
    mean = table.mean(axis=0)
    i_peak = int(np.argmax(mean))
    falls = table[:, i_peak] - table[:, -1]
    n = len(falls)
    fall = float(falls.mean())
    se = float(falls.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    threshold = min_fall * abs(float(mean[i_peak]))
    if n < 2:
        verdict = "cannot tell"
    elif fall - n_se * se > threshold:
        verdict = "compresses"
    elif fall + n_se * se < threshold:
        verdict = "does not"
    else:
        verdict = "cannot tell"
    return {"verdict": verdict, "peak": float(mean[i_peak]), "peak_epoch": epochs[i_peak], "final": float(mean[-1]),
            "fall": fall, "fall_se": se, "threshold": threshold, "n": n, "falls": [float(f) for f in falls]}


def verdict_table(runs: Mapping[str, Sequence[dict]], lenses: Sequence[str], *, layers: Sequence[int] | None = None,
                  value: str = "i_xt", n_se: float = 2.0, min_fall: float = 0.05) -> list[dict]:  # fmt: skip
    """:func:`fall_verdict` for every setting, lens and layer: one row each, ``{"setting", "lens", "layer", ...}``.

    Arguments:
        runs: ``{setting: records}`` (e.g. ``{"tanh": ..., "relu": ...}``); each setting's records may hold the
            lenses of several networks (float, quantized, noisy) concatenated.
        lenses: The ``estimator`` labels, in the order of the table. A lens absent from a setting's records is
            skipped for that setting (e.g. a lens that applies to one activation only).
        layers: The layers (default: every layer in the records); a lens that did not measure one of them (sample
            propagation measures the hidden layers only) has no row for it.
        value, n_se, min_fall: As in :func:`fall_verdict`.
    """
    _check_rule(n_se, min_fall)
    if not runs:
        raise ValueError("runs must hold at least one setting")
    runs = {setting: list(records) for setting, records in runs.items()}
    labels = {r["estimator"] for records in runs.values() for r in records}
    unknown = [lens for lens in lenses if lens not in labels]
    if unknown:
        raise ValueError(f"lenses {unknown} are in no setting's records (labels: {sorted(labels)})")
    table = []
    for setting, records in runs.items():
        present = {r["estimator"] for r in records}
        for lens in lenses:
            if lens not in present:
                continue
            rows = select(records, estimator=lens)
            measured = sorted({r["layer"] for r in rows})
            for layer in measured if layers is None else [l for l in layers if l in measured]:
                v = fall_verdict(rows, estimator=lens, layer=layer, value=value, n_se=n_se, min_fall=min_fall)
                table.append({"setting": setting, "lens": lens, "layer": layer, **v})
    return table


def flow_lens_estimator(*, noise_variance: float = 1e-3, n_components: int = 4, seed: int = 0,
                        device=None) -> NoisyLayerMI:  # fmt: skip
    """The flow lens: the noisy, compressed layer of :func:`float_lenses`' k-NN lens with the entropy of T~ from a
    normalizing flow's held-out likelihood (:class:`~ibcore.estimators.FlowEntropy`; Butakov et al., NeurIPS 2024).
    One noisy draw per input: a flow learns the density, it needs no neighbours within a draw's own Gaussian."""
    return NoisyLayerMI(noise_variance=noise_variance, n_components=n_components, replicas=1, entropy="flow-entropy",
                        entropy_params={"seed": seed, "device": device}, seed=seed, device=device)  # fmt: skip


def float_lenses(activation: str, *, n_bins: int = 30, noise_variance: float = 1e-3, n_components: int = 4,
                 replicas: int = 8, flow: bool = False, seed: int = 0, device=None) -> dict:  # fmt: skip
    """The lenses that measure a float (noiseless, unquantized) network's layers, ``{label: estimator}`` in the order of
    the verdict table:

    - ``f"{n_bins} bins"``: equal-width bins per unit, on [-1, 1] for tanh (Shwartz-Ziv & Tishby 2017), on each
      layer's range otherwise (Saxe et al. 2018);
    - ``"equal-mass bins"``: ``n_bins`` bins per unit holding equal numbers of inputs (Saxe et al.'s adaptive binning);
    - ``"KDE upper bound"``: Kolchinsky & Tracey's pairwise-distance bound on I(X; T + Z), Z ~ N(0, noise_variance I)
      (Saxe et al.);
    - ``"PCA + k-NN"``: the same noisy layer on its ``n_components`` leading principal axes, by k-NN from
      ``replicas`` noisy draws per input (:class:`~ibcore.estimators.NoisyLayerMI`; Butakov et al. 2024);
    - with ``flow``, ``"flow"``: :func:`flow_lens_estimator`.

    Example:
        >>> list(float_lenses("tanh", flow=True))
        ['30 bins', 'equal-mass bins', 'KDE upper bound', 'PCA + k-NN', 'flow']
    """
    if not isinstance(flow, bool):
        raise ValueError(f"flow must be True or False, got {flow!r}")
    common = {"noise_variance": noise_variance, "n_components": n_components, "seed": seed, "device": device}
    lenses = {
        f"{n_bins} bins": Binning(n_bins=n_bins, bounds=(-1, 1) if activation == "tanh" else "layer"),
        "equal-mass bins": Binning(n_bins=n_bins, spacing="mass"),
        "KDE upper bound": KDEBound(noise_variance=noise_variance, device=device),
        "PCA + k-NN": NoisyLayerMI(replicas=replicas, **common),
    }
    if flow:
        lenses["flow"] = flow_lens_estimator(**common)
    return lenses


def lens_key(label: str) -> str:
    """The short key of a lens label in glued names (``"30 bins"`` -> ``"bins"``, ``"exact, 8-bit"`` -> ``"exact"``).

    Example:
        >>> [lens_key(l) for l in ("30 bins", "equal-mass bins", "KDE upper bound", "PCA + k-NN", "PCA codes + k-NN",
        ...                        "flow", "exact, 8-bit", "SP, noisy")]
        ['bins', 'mass', 'kde', 'lossy', 'codes', 'flow', 'exact', 'sp']
    """
    fixed = {"equal-mass bins": "mass", "KDE upper bound": "kde", "PCA + k-NN": "lossy", "PCA codes + k-NN": "codes",
             "flow": "flow", "SP, noisy": "sp"}  # fmt: skip
    if label in fixed:
        return fixed[label]
    head, _, tail = label.partition(" ")
    if head.isdigit() and tail == "bins":
        return "bins"
    if label.startswith("exact, ") and label.endswith("-bit"):
        return "exact"
    raise ValueError(f"label {label!r} is not a lens of the verdict table ({sorted(fixed)}, 'N bins', "
                     f"'exact, N-bit')")  # fmt: skip


def verdict_html(table: Sequence[dict], lenses: Sequence[str], layers: Sequence[int]) -> str:
    """The verdict table as HTML: for each setting (in the rows' order) one table, a row per lens and a column per
    layer, each cell ``verdict (mean fall ± its standard error)`` in bits; a lens or layer a setting lacks is blank.
    Rows of :func:`verdict_table` in nats."""
    cells = {(v["setting"], v["lens"], v["layer"]): v for v in table}
    html = ""
    for setting in dict.fromkeys(v["setting"] for v in table):
        rows = []
        for lens in lenses:
            if not any((setting, lens, l) in cells for l in layers):
                continue
            row = [lens]
            for l in layers:
                v = cells.get((setting, lens, l))
                row.append("" if v is None else
                           f"{v['verdict']} ({to_bits(v['fall']):.2f} ± {to_bits(v['fall_se']):.2f})")
            rows.append(row)
        html += f"<p><b>{setting}</b></p>" + html_table(["lens"] + [f"T{l}" for l in layers], rows)
    return html


def verdict_glue(table: Sequence[dict], prefix: str, *, keys: Mapping[str, str] | None = None) -> dict:
    """Every verdict as a named value for the chapter text, ``{name: value}``:
    ``<prefix>_<setting>_<lens key>_T<layer>`` the verdict and ``..._fall`` its mean fall in bits (lens keys from
    :func:`lens_key`, settings as keyed in the rows, or renamed by ``keys``); and per setting where the lenses agree,
    ``<prefix>_<setting>_all_flat`` / ``_all_falls`` (the layers every lens that measured them calls "does not" /
    "compresses") and ``_split`` (the layers the lenses disagree on), as "T1, T2" or "none"."""
    keys = dict(keys or {})
    out, by_layer = {}, {}
    for v in table:
        name = f"{prefix}_{keys.get(v['setting'], v['setting'])}_{lens_key(v['lens'])}_T{v['layer']}"
        out[name], out[f"{name}_fall"] = v["verdict"], to_bits(v["fall"])
        by_layer.setdefault(v["setting"], {}).setdefault(v["layer"], set()).add(v["verdict"])
    for setting, layers in by_layer.items():
        s = f"{prefix}_{keys.get(setting, setting)}"
        for verdict, key in (("does not", "flat"), ("compresses", "falls")):
            out[f"{s}_all_{key}"] = ", ".join(f"T{l}" for l in sorted(layers) if layers[l] == {verdict}) or "none"
        out[f"{s}_split"] = ", ".join(f"T{l}" for l in sorted(layers) if len(layers[l]) > 1) or "none"
    return out


def last_epoch_lens(net, x: torch.Tensor, lens, *, model: int = 0) -> list[float]:
    """I(X;T) of every layer of one network of a stack (``model``: its index) through ``lens``, on inputs ``x``,
    each input its own outcome (nats): a lens too slow for every measured epoch, at the end of training."""
    if isinstance(model, bool) or not isinstance(model, int) or not 0 <= model < net.n_models:
        raise ValueError(f"model must be an index in [0, {net.n_models}), got {model!r}")
    ids = torch.arange(len(x), device=x.device)
    with torch.no_grad():
        layers = net.layers(x)
    return [lens.estimate(t[model], ids).value for t in layers]
