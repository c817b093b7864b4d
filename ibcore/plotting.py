"""Figures of the book. Every function takes tidy records (see :mod:`ibcore.infoplane`) and returns a Figure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors

from .infoplane import aggregate, phases, select, smooth
from .tables import group_by

__all__ = [
    "information_plane", "layer_curves", "training_curves", "mixture_density", "representations",
    "estimated_vs_true", "smoothed_plane", "smoothed_curves", "sweep_summary", "suite_heatmap", "error_curves",
    "gradient_phases", "lens_grid", "rmse_by_dimension",
]  # fmt: skip

_UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}


def _scale(unit: str) -> float:
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {list(_UNITS)}, got {unit!r}")
    return _UNITS[unit]


def _epoch_norm(epochs: Sequence[int]) -> colors.Normalize:
    return colors.LogNorm(vmin=max(1, min(epochs)), vmax=max(2, max(epochs)))


def information_plane(records, *, estimator: str, unit: str = "bits", ax=None, title: str | None = None,
                      cmap: str = "gnuplot", layer_labels: Sequence[str] | None = None, spread_epochs: int = 0,
                      colorbar: bool = True):  # fmt: skip
    """The information plane as in Shwartz-Ziv & Tishby (2017, Fig. 3): I(X;T) against I(T;Y) for every layer.

    Points are the means over networks (seeds), coloured by epoch on a log scale; a thin line joins the layers of
    the same epoch, so each line is the network at one moment of training. With ``spread_epochs = k > 0``, error
    bars of one standard deviation over networks (in both coordinates) are drawn at k recorded epochs spread
    evenly on the log axis, the last epoch included.
    """
    recs = select(records, estimator=estimator)
    if not recs:
        raise ValueError(f"no records with estimator={estimator!r}")
    k = _scale(unit)
    ixt = aggregate(recs, "i_xt", by=("epoch", "layer"))
    ity = aggregate(recs, "i_ty", by=("epoch", "layer"))
    epochs = sorted({key[0] for key in ixt})
    layers = sorted({key[1] for key in ixt})
    norm, cm = _epoch_norm(epochs), plt.get_cmap(cmap)
    fig, ax = _figure(ax)
    for e in epochs:
        xs = [ixt[(e, l)]["mean"] * k for l in layers]
        ys = [ity[(e, l)]["mean"] * k for l in layers]
        c = cm(norm(max(e, 1)))
        ax.plot(xs, ys, "-", color=c, alpha=0.15, lw=0.8)
        ax.scatter(xs, ys, color=c, s=14, zorder=3)
    if spread_epochs > 0:
        picks = np.unique(np.geomspace(max(1, epochs[0]), epochs[-1], spread_epochs).round())
        marked = sorted({min(epochs, key=lambda e: abs(math.log(max(e, 1)) - math.log(p))) for p in picks})
        for e in marked:
            ax.errorbar([ixt[(e, l)]["mean"] * k for l in layers], [ity[(e, l)]["mean"] * k for l in layers],
                        xerr=[ixt[(e, l)]["std"] * k for l in layers], yerr=[ity[(e, l)]["std"] * k for l in layers],
                        fmt="none", ecolor=cm(norm(max(e, 1))), alpha=0.6, lw=0.8, zorder=2)  # fmt: skip
    last = epochs[-1]
    for i, l in enumerate(layers):
        name = layer_labels[i] if layer_labels else f"T{l}"
        ax.annotate(name, (ixt[(last, l)]["mean"] * k, ity[(last, l)]["mean"] * k), xytext=(4, -10),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    if colorbar:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cm), ax=ax, label="epoch")
    ax.set_xlabel(f"I(X;T) [{unit}]")
    ax.set_ylabel(f"I(T;Y) [{unit}]")
    ax.set_title(title or estimator)
    return fig


def layer_curves(records, *, estimator: str, value: str = "i_xt", unit: str = "bits", ax=None,
                 title: str | None = None, hline: float | None = None, hline_label: str | None = None,
                 intervals: bool = True):  # fmt: skip
    """One quantity (``"i_xt"`` or ``"i_ty"``) per layer against the epoch (log axis above epoch 1, epoch 0 at 0), mean
    +- std over seeds (a shaded band). With ``intervals`` and records that carry confidence intervals
    (``"i_xt_ci"``, estimated with ``ci``), the mean over seeds of their ends is drawn as thin dotted lines: the
    estimator's own uncertainty, beside the spread over networks."""
    recs = select(records, estimator=estimator)
    if not recs:
        raise ValueError(f"no records with estimator={estimator!r}")
    k = _scale(unit)
    agg = aggregate(recs, value, by=("layer", "epoch"))
    fig, ax = _figure(ax)
    for l in sorted({key[0] for key in agg}):
        ep = np.array([key[1] for key in agg if key[0] == l])
        m = np.array([agg[(l, e)]["mean"] for e in ep]) * k
        s = np.array([agg[(l, e)]["std"] for e in ep]) * k
        (line,) = ax.plot(ep, m, label=f"T{l}")
        ax.fill_between(ep, m - s, m + s, color=line.get_color(), alpha=0.2, lw=0)
        rows = [r for r in recs if r["layer"] == l]
        if intervals and rows and all(r.get(f"{value}_ci") for r in rows):
            for end in (0, 1):
                ci = aggregate([{**r, "_ci": r[f"{value}_ci"][end]} for r in rows], "_ci", by=("epoch",))
                ax.plot(ep, np.array([ci[(e,)]["mean"] for e in ep]) * k, ":", color=line.get_color(), lw=0.8)
    if hline is not None:
        ax.axhline(hline, color="k", ls=":", lw=1, label=hline_label)
    _epoch_axis(ax)
    ax.set_ylabel(f"{'I(X;T)' if value == 'i_xt' else 'I(T;Y)'} [{unit}]")
    ax.set_title(title or estimator)
    return fig


def training_curves(records, *, value: str = "accuracy", ax=None, title: str | None = None, hline=None,
                    hline_label: str | None = None):  # fmt: skip
    """Loss or accuracy per split against the epoch (the axis of :func:`layer_curves`), mean +- std over seeds (records
    of ``Metrics``)."""
    fig, ax = _figure(ax)
    for split in sorted({r["split"] for r in records}):
        agg = aggregate(select(records, split=split), value, by=("epoch",))
        ep = np.array([key[0] for key in agg])
        m = np.array([agg[(e,)]["mean"] for e in ep])
        s = np.array([agg[(e,)]["std"] for e in ep])
        (line,) = ax.plot(ep, m, label=split)
        ax.fill_between(ep, m - s, m + s, color=line.get_color(), alpha=0.2, lw=0)
    if hline is not None:
        ax.axhline(hline, color="k", ls=":", lw=1, label=hline_label)
    _epoch_axis(ax)
    ax.set_ylabel(value)
    ax.set_title(title or value)
    ax.legend(fontsize=8)
    return fig


def mixture_density(centres, noise_std: float, *, groups=None, ax=None, title: str | None = None,
                    grid: int = 800, labels: Sequence[str] | None = None):  # fmt: skip
    """The density of a noisy one-unit layer: the equal-weight mixture of N(c_k, noise_std^2) over the centres.

    With ``groups`` (one integer per centre, e.g. the input), each group's share of the density is drawn filled
    under the total, so one sees which inputs the noise can still tell apart (Goldfeld et al. 2019, Fig. 4).
    """
    c = np.asarray(centres, dtype=float).reshape(-1)
    if c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError(f"centres must be a non-empty finite 1-D array, got {c.size} values")
    if not (noise_std > 0):
        raise ValueError(f"noise_std must be > 0, got {noise_std!r}")
    t = np.linspace(c.min() - 4 * noise_std, c.max() + 4 * noise_std, grid)
    dens = np.exp(-0.5 * ((t[:, None] - c[None, :]) / noise_std) ** 2) / (noise_std * math.sqrt(2 * math.pi) * c.size)
    fig, ax = _figure(ax)
    if groups is not None:
        g = np.asarray(groups).reshape(-1)
        if g.shape != c.shape:
            raise ValueError(f"groups must give one group per centre, got {g.shape[0]} for {c.size} centres")
        for j, k in enumerate(np.unique(g)):
            name = labels[j] if labels else str(k)
            ax.fill_between(t, dens[:, g == k].sum(1), alpha=0.35, lw=0, label=name)
    ax.plot(t, dens.sum(1), color="k", lw=1)
    ax.set_xlabel("t")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    return fig


def representations(t, labels, *, ax=None, title: str | None = None, dims: tuple[int, int] = (0, 1),
                    max_points: int = 4000):  # fmt: skip
    """Scatter of two units of a layer's representations ``t`` ``(N, d)``, coloured by class (Goldfeld et al., Fig. 5).

    At most ``max_points`` rows are drawn (evenly spaced), in a fixed order, so that figures are reproducible.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(labels).reshape(-1)
    if t.ndim != 2 or t.shape[0] != y.shape[0]:
        raise ValueError(f"t must be (N, d) with one label per row, got t {t.shape} and {y.shape[0]} labels")
    if max(dims) >= t.shape[1]:
        raise ValueError(f"dims {dims} out of range for a layer of width {t.shape[1]}")
    keep = np.unique(np.linspace(0, t.shape[0] - 1, min(max_points, t.shape[0])).round().astype(int))
    fig, ax = _figure(ax)
    for k in np.unique(y):
        m = keep[y[keep] == k]
        ax.scatter(t[m, dims[0]], t[m, dims[1]], s=3, alpha=0.5, label=f"y = {k}")
    ax.set_xlabel(f"unit {dims[0] + 1}")
    ax.set_ylabel(f"unit {dims[1] + 1}")
    if title:
        ax.set_title(title)
    return fig


def estimated_vs_true(records, *, task: str, ax=None, title: str | None = None, ceiling: float | None = None):
    """Estimated against true MI on one task (records of :func:`ibcore.comparison.compare`), one line per
    estimator, with the identity line. The band is mean +- std over seeds where there are several, else the
    estimate's confidence interval where the records have one (``compare(ci=...)``), else +- 2 standard errors of
    the single estimate (where the estimator reports one). ``ceiling`` draws InfoNCE's ln B.
    """
    rs = [r for r in records if r["task"] == task]
    if not rs:
        raise ValueError(f"no records for task={task!r}; tasks present: {sorted({r['task'] for r in records})}")
    fig, ax = _figure(ax)
    top = max(r["true_mi"] for r in rs)
    ax.plot([0, top], [0, top], color="k", lw=1, ls="--", label="true MI")
    if ceiling is not None:
        ax.axhline(ceiling, color="0.5", lw=1, ls=":", label=f"ln B = {ceiling:.2f}")
    for label in dict.fromkeys(r["estimator"] for r in rs):
        by_level = group_by([r for r in rs if r["estimator"] == label], ("true_mi",))
        t = np.array([k[0] for k in by_level])
        vals = [np.array([r["value"] for r in group]) for group in by_level.values()]
        m = np.array([v.mean() for v in vals])
        lo, hi = _band(list(by_level.values()), vals, m)
        (line,) = ax.plot(t, m, marker="o", ms=3, label=label)
        ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("true MI (nats)")
    ax.set_ylabel("estimated MI (nats)")
    ax.set_title(title or task)
    ax.legend(fontsize=7)
    return fig


def _smoothed(records, estimator: str, value: str, smoothing=None) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    # {layer: (epochs, mean over networks, smoothed mean)} of one quantity.
    recs = select(records, estimator=estimator)
    if not recs:
        raise ValueError(f"no records with estimator={estimator!r}")
    agg = aggregate(recs, value, by=("layer", "epoch"))
    out = {}
    for l in sorted({key[0] for key in agg}):
        ep = np.array([key[1] for key in agg if key[0] == l])
        m = np.array([agg[(l, e)]["mean"] for e in ep])
        out[l] = (ep, m, smooth(m, **(smoothing or {})))
    return out


def smoothed_plane(records, *, estimator: str, unit: str = "nats", ax=None, title: str | None = None,
                   cmap: str = "viridis", layer_labels: Sequence[str] | None = None, smoothing=None):  # fmt: skip
    """The information plane of a long per-epoch record as Butakov et al. (2024) draw it: every layer's
    measured points (mean over networks), small and coloured by epoch, under its trajectory smoothed by
    :func:`ibcore.infoplane.smooth` (``smoothing``: its keyword arguments), with an arrow at the last epoch."""
    k = _scale(unit)
    xt, ty = _smoothed(records, estimator, "i_xt", smoothing), _smoothed(records, estimator, "i_ty", smoothing)
    fig, ax = _figure(ax)
    epochs = xt[min(xt)][0]
    norm, cm = colors.Normalize(vmin=epochs.min(), vmax=max(epochs.max(), 1)), plt.get_cmap(cmap)
    for i, l in enumerate(xt):
        ep, mx, sx = xt[l]
        _, my, sy = ty[l]
        ax.scatter(mx * k, my * k, c=cm(norm(ep)), s=12, alpha=0.8, lw=0, zorder=3)
        (line,) = ax.plot(sx * k, sy * k, lw=1.5, label=layer_labels[i] if layer_labels else f"L{l}")
        if len(sx) > 1:
            ax.annotate("", xy=(sx[-1] * k, sy[-1] * k), xytext=(sx[-2] * k, sy[-2] * k),
                        arrowprops={"arrowstyle": "->", "color": line.get_color()})  # fmt: skip
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cm), ax=ax, label="epoch")
    ax.set_xlabel(f"I(X;L) [{unit}]")
    ax.set_ylabel(f"I(L;Y) [{unit}]")
    ax.set_title(title or estimator)
    ax.legend(fontsize=7)
    return fig


def smoothed_curves(records, *, estimator: str, value: str = "i_xt", unit: str = "nats", ax=None,
                    title: str | None = None, min_drop: float = 0.0, smoothing=None):  # fmt: skip
    """One quantity per layer against the epoch (linear axis): the measured means as dots, the smoothed curve as a
    line (``smoothing``: keyword arguments of :func:`ibcore.infoplane.smooth`), and for ``value="i_xt"`` the
    compression phases of the smoothed curve (:func:`ibcore.infoplane.phases`, falls larger than ``min_drop`` nats)
    drawn thick."""
    k = _scale(unit)
    fig, ax = _figure(ax)
    for l, (ep, m, sm) in _smoothed(records, estimator, value, smoothing).items():
        (line,) = ax.plot(ep, sm * k, lw=1.2, label=f"L{l}")
        ax.scatter(ep, m * k, color=line.get_color(), s=9, alpha=0.6, lw=0)
        if value == "i_xt" and len(ep) > 1:
            for p in phases(ep, sm, min_drop=min_drop):
                if p["phase"] == "compression":
                    sel = (ep >= p["start"]) & (ep <= p["end"])
                    ax.plot(ep[sel], sm[sel] * k, lw=4, alpha=0.5, color=line.get_color(), solid_capstyle="butt")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{'I(X;L)' if value == 'i_xt' else 'I(L;Y)'} [{unit}]")
    ax.set_title(title or estimator)
    ax.legend(fontsize=7)
    return fig


def sweep_summary(summary, *, name: str, x: str, by: str | None = None, ax=None, title: str | None = None):
    """Mean +- standard deviation over repeats of one recorded number against a sweep parameter, one line per value
    of ``by`` (rows from :func:`ibcore.batch.summarise`)."""
    fig, ax = _figure(ax)
    rows = [r for r in summary if r["name"] == name]
    if not rows:
        raise ValueError(f"no summary rows for name={name!r}; names: {sorted({r['name'] for r in summary})}")
    groups = group_by(rows, (by,) if by else (), key=lambda k: str(k[0] if k else None))
    for (key, *_), rs in ((k or (None,), g) for k, g in groups.items()):
        rs = sorted(rs, key=lambda r: r[x])
        std = [0.0 if math.isnan(r["std"]) else r["std"] for r in rs]
        ax.errorbar([r[x] for r in rs], [r["mean"] for r in rs], yerr=std, marker="o", capsize=3,
                    label=None if by is None else f"{by} = {key}")  # fmt: skip
    ax.set_xlabel(x)
    ax.set_ylabel(f"{name} (mean +- sd, n = {min(r['n'] for r in rows)}..{max(r['n'] for r in rows)})")
    ax.set_title(title or name)
    if by is not None:
        ax.legend(fontsize=8)
    return fig


def _band(groups, vals, m):
    # the band around the means m of grouped records: sd over seeds, else each run's interval, else +- 2 std
    if all(len(v) > 1 for v in vals):
        half = np.array([v.std(ddof=1) for v in vals])
        return m - half, m + half
    if all(g[0].get("ci") for g in groups):
        return np.array([g[0]["ci"][0] for g in groups]), np.array([g[0]["ci"][1] for g in groups])
    half = np.array([2 * (g[0]["std"] or 0.0) for g in groups])
    return m - half, m + half


def rmse_by_dimension(records, *, ax=None, title: str | None = None):
    """Root-mean-square error over levels and seeds (:func:`ibcore.comparison.rmse`) against the dimension per side,
    one line per estimator, on a log-2 dimension axis: the shape of Butakov et al. (2024)'s Table 1."""
    from .comparison import rmse

    rows = rmse(records, by=("estimator", "dim"))
    if not rows:
        raise ValueError("no records to summarise")
    fig, ax = _figure(ax)
    for label in dict.fromkeys(r["estimator"] for r in rows):
        pts = sorted((r["dim"], r["rmse"]) for r in rows if r["estimator"] == label)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dimension per side (d_X = d_Y)")
    ax.set_ylabel("RMSE over MI levels (nats)")
    ax.set_title(title or "error against dimension")
    ax.legend(fontsize=7)
    return fig


def error_curves(records, *, x: str, task: str, ax=None, title: str | None = None, log_x: bool = False):
    """Estimate minus truth against a record field ``x`` (``"n"``, ``"dim"``, ``"true_mi"``) on one task, one line
    per estimator, with the band of :func:`estimated_vs_true` and the benchmark's tolerance max(0.1, 0.1 I) shaded
    around zero."""
    rs = [r for r in records if r["task"] == task and math.isfinite(r["value"])]
    if not rs:
        raise ValueError(f"no records for task={task!r}; tasks present: {sorted({r['task'] for r in records})}")
    fig, ax = _figure(ax)
    truth = {k[0]: np.mean([r["true_mi"] for r in g]) for k, g in group_by(rs, (x,)).items()}
    at = np.array(sorted(truth))
    tol = np.array([max(0.1, 0.1 * truth[v]) for v in at])
    ax.fill_between(at, -tol, tol, color="0.85", lw=0, label="tolerance max(0.1, 0.1 I)")
    ax.axhline(0, color="k", lw=1, ls="--")
    for label in dict.fromkeys(r["estimator"] for r in rs):
        groups = group_by([r for r in rs if r["estimator"] == label], (x,))
        xs = np.array([k[0] for k in groups])
        order = np.argsort(xs)
        gs = [list(groups.values())[i] for i in order]
        vals = [np.array([r["value"] - r["true_mi"] for r in g]) for g in gs]
        m = np.array([v.mean() for v in vals])
        shifted = [[{**r, "ci": None if not r.get("ci") else [c - r["true_mi"] for c in r["ci"]],
                     "std": r.get("std")} for r in g] for g in gs]  # fmt: skip
        lo, hi = _band(shifted, vals, m)
        (line,) = ax.plot(xs[order], m, marker="o", ms=3, label=label)
        ax.fill_between(xs[order], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(at, [f"{v:g}" for v in at])
    ax.set_xlabel({"n": "samples", "dim": "dimensions per side", "true_mi": "true MI (nats)"}.get(x, x))
    ax.set_ylabel("estimate - truth (nats)")
    ax.set_title(title or task)
    ax.legend(fontsize=7)
    return fig


def suite_heatmap(records, *, ax=None, title: str | None = None, estimators: Sequence[str] | None = None):
    """Tasks (rows, in suite order, families separated) against estimators (columns): the colour is the error in
    units of the benchmark's tolerance max(0.1, 0.1 I) (mean over seeds), blue below the truth and red above; a
    dot marks a solved cell (every seed within the tolerance), a grey cell a task without a value (not run: wider
    than the estimator's max_dim or refused; or failed: training diverged). Records of
    :func:`ibcore.comparison.run_suite`."""
    from .comparison import solved

    tasks = list(dict.fromkeys(r["task"] for r in records))
    labels = list(estimators or dict.fromkeys(r["estimator"] for r in records))
    err = np.full((len(tasks), len(labels)), np.nan)
    ok = np.zeros_like(err, dtype=bool)
    for (task, label), rs in group_by(records, ("task", "estimator")).items():
        if label not in labels:
            continue
        i, j = tasks.index(task), labels.index(label)
        vals = [r["value"] for r in rs if math.isfinite(r["value"])]
        if vals:
            tol = max(0.1, 0.1 * rs[0]["true_mi"])
            err[i, j] = (np.mean(vals) - rs[0]["true_mi"]) / tol
            ok[i, j] = all(solved(r["value"], r["true_mi"]) for r in rs)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 3, 0.22 * len(tasks) + 1.2))
    else:
        fig = ax.figure
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")
    im = ax.imshow(np.clip(err, -5, 5), cmap=cmap, vmin=-5, vmax=5, aspect="auto", interpolation="nearest")
    ii, jj = np.nonzero(ok)
    ax.plot(jj, ii, "k.", ms=3)
    families = [next(r["family"] for r in records if r["task"] == t) for t in tasks]
    for i in range(1, len(tasks)):
        if families[i] != families[i - 1]:
            ax.axhline(i - 0.5, color="k", lw=0.5)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=6)
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=30, ha="right")
    fig.colorbar(im, ax=ax, shrink=0.6, label="(estimate - truth) / tolerance")
    ax.set_title(title or "which estimator solves which task (dot: solved)", fontsize=9)
    return fig


def gradient_phases(records, *, layer: int, ax=None, title: str | None = None, marks: dict | None = None):
    """Shwartz-Ziv & Tishby (2017, Fig. 4) for one layer: the norm of the mean and of the standard deviation of the
    minibatch gradients over each epoch (:class:`ibcore.sgd.GradientStats` records), both divided by the norm of
    the weights, against the epoch on log axes; geometric means over networks, the band their spread (one standard
    deviation of the logarithm). ``marks``: ``{label: epoch}`` drawn as vertical lines (e.g. the SNR boundary and
    the start of compression)."""
    recs = [r for r in records if r["layer"] == layer]
    if not recs:
        raise ValueError(f"no records of layer {layer}")
    fig, ax = _figure(ax)
    epochs = sorted({r["epoch"] for r in recs})
    for key, label, colour in (("mean_norm", "||mean of gradients||", "tab:blue"),
                               ("std_norm", "||std of gradients||", "tab:orange")):  # fmt: skip
        logs = [[math.log(r[key] / r["weight_norm"]) for r in recs if r["epoch"] == e] for e in epochs]
        m, sd = np.array([np.mean(v) for v in logs]), np.array([np.std(v) for v in logs])
        ax.plot(epochs, np.exp(m), color=colour, label=label)
        ax.fill_between(epochs, np.exp(m - sd), np.exp(m + sd), color=colour, alpha=0.2, lw=0)
    for (label, epoch), style in zip((marks or {}).items(), ("--", ":", "-.")):
        if epoch is not None:  # an epoch before the first recorded one (e.g. 0) is drawn at the axis' left end
            ax.axvline(max(epoch, epochs[0]), color="k", ls=style, lw=1, label=f"{label} ({epoch})")
    ax.set(xscale="log", yscale="log", xlabel="epoch", ylabel="norm / ||W||", title=title or f"layer {layer}",
           xlim=(epochs[0], epochs[-1]))
    return fig


_VERDICT_MARKS = {"compresses": "\u2193", "does not": "\u2014", "cannot tell": "?"}  # down arrow, dash, ?


def lens_grid(runs, *, lenses: Sequence[str], layers: Sequence[int], unit: str = "bits", verdicts=None,
              value: str = "i_xt", lens_labels: dict | None = None, panel_size: tuple = (2.2, 1.7)):  # fmt: skip
    """Small multiples of the compression debate: rows = lenses, columns = layers, one curve per setting (mean over
    networks against the epoch, log above epoch 1 and epoch 0 at 0; the band one standard deviation). ``runs``:
    ``{setting: records}`` as :func:`ibcore.lenses.verdict_table` takes them; ``verdicts``: its rows, marked in each
    panel beside the setting (an arrow down: compresses, a dash: does not, ?: cannot tell). A lens without records
    of a layer leaves its panel empty. Each row has its own y-axis (lenses measure on different scales);
    ``lens_labels`` renames the rows."""
    k = _scale(unit)
    if not lenses or not layers:
        raise ValueError(f"lenses and layers must not be empty, got {list(lenses)} and {list(layers)}")
    marks = {(r["setting"], r["lens"], r["layer"]): r["verdict"] for r in (verdicts or [])}
    fig, axes = plt.subplots(len(lenses), len(layers), squeeze=False, sharex=True, sharey="row",
                             figsize=(panel_size[0] * len(layers) + 0.8, panel_size[1] * len(lenses) + 0.6))
    colours = dict(zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for i, lens in enumerate(lenses):
        for j, layer in enumerate(layers):
            ax, notes = axes[i][j], []
            for setting, records in runs.items():
                recs = select(records, estimator=lens, layer=layer)
                if not recs:
                    continue
                agg = aggregate(recs, value, by=("epoch",))
                ep = np.array([key[0] for key in agg])
                m = np.array([v["mean"] for v in agg.values()]) * k
                sd = np.array([v["std"] for v in agg.values()]) * k
                ax.plot(ep, m, color=colours[setting], lw=1.2, label=setting)
                ax.fill_between(ep, m - sd, m + sd, color=colours[setting], alpha=0.2, lw=0)
                verdict = marks.get((setting, lens, layer))
                if verdict is not None:
                    notes.append((setting, _VERDICT_MARKS.get(verdict, "?")))
            for n, (setting, mark) in enumerate(notes):
                ax.text(0.97, 0.05 + 0.16 * n, f"{setting} {mark}", transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=7, color=colours[setting], bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                                                  "ec": "none", "alpha": 0.8})  # fmt: skip
            if not notes and not ax.lines:
                ax.set_axis_off()
            _epoch_axis(ax)
            ax.set_xlabel("")
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"T{layer}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{(lens_labels or {}).get(lens, lens)}\n[{unit}]", fontsize=8)
            if i == len(lenses) - 1:
                ax.set_xlabel("epoch", fontsize=8)
    handles = [plt.Line2D([], [], color=c, label=s) for s, c in colours.items()]
    fig.legend(handles=handles, loc="upper center", fontsize=8, ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def _epoch_axis(ax) -> None:
    # Epochs on a log axis that keeps epoch 0 (the initialisation) apart from epoch 1: linear on [0, 1], logarithmic
    # above (a symlog axis), where a plain log axis would have to draw epoch 0 at 1.
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")


def _figure(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
        return fig, ax
    return ax.figure, ax
