"""Layer taps: the outputs of named submodules of any ``torch.nn.Module``, through forward hooks, reduced per batch.

:class:`LayerTaps` is a context manager. Inside it, :meth:`LayerTaps.run` sends a probe set through the network in
batches, without autograd graphs, and keeps for each tapped module its output (or input) reduced on the module's
device before the next batch: pooled over space or tokens, projected by a fitted compressor, or kept at full width
only when ``pool="flatten"`` asks for it. On exit every hook is removed and every module's train/eval mode restored.

Names are those of ``model.named_modules()`` (``"layer3.1.relu"``); a pattern with ``*``, ``?`` or ``[`` is a glob
over them (``"layer*.1"``). The default, :func:`default_layers`, is every leaf module that changes the
representation (not dropout, identity, flatten or noise modules, which pass it on or only perturb it).

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> with LayerTaps(net, ["1", "2"]) as taps:
    ...     out = taps.run(torch.randn(10, 4), batch_size=4)
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'1': (10, 8), '2': (10, 3)}
    >>> len(net[1]._forward_hooks)
    0
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["LayerTaps", "default_layers", "resolve_layers", "pool_output", "PASS_THROUGH"]

#: Leaf modules that pass the representation on unchanged in evaluation (or only perturb it): not tapped by default.
PASS_THROUGH: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                             nn.AlphaDropout, nn.Flatten, nn.Unflatten)  # fmt: skip

POOLS = ("flatten", "mean", "max")


def default_layers(model: nn.Module) -> list[str]:
    """Every leaf submodule (no children) that changes the representation, in registration order: not the
    :data:`PASS_THROUGH` modules nor modules with a true ``passes_through`` attribute (noise layers)."""
    return [name for name, m in model.named_modules()
            if name and not any(True for _ in m.children()) and not isinstance(m, PASS_THROUGH)
            and not getattr(m, "passes_through", False)]  # fmt: skip


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    """The module names that ``layers`` selects (:mod:`fnmatch` globs allowed), in the order given; ``ValueError``
    naming what matched nothing."""
    if layers is None:
        names = default_layers(model)
        if not names:
            raise ValueError(f"{type(model).__name__} has no leaf module to tap; name the layers")
        return names
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"layers must be a module name, a glob or a list of them, got {layers!r}")
    modules = dict(model.named_modules())
    out: list[str] = []
    for p in patterns:
        hits = fnmatch.filter([n for n in modules if n], p) if any(ch in p for ch in "*?[") else (
            [p] if p in modules and p else [])  # fmt: skip
        if not hits:
            some = ", ".join(list(n for n in modules if n)[:12])
            raise ValueError(f"layers: {p!r} names no submodule of {type(model).__name__} (some names: {some})")
        out.extend(h for h in hits if h not in out)
    return out


def pool_output(t: torch.Tensor, pool: str | int | Callable = "flatten") -> torch.Tensor:
    """One batch of a layer's output as rows ``(B, features)``.

    ``pool``: ``"flatten"`` (every unit), ``"mean"`` or ``"max"`` over the spatial positions of ``(B, C, ...)``
    feature maps (one number per channel) or over the tokens of ``(B, L, D)`` sequences (one per feature),
    an integer ``k`` (average pooling to ``k x k`` positions for ``(B, C, H, W)``, ``k`` tokens for sequences), or
    a function of the batch. Rows of ``(B, d)`` are returned as they are for every choice but a function.
    """
    if callable(pool):
        out = pool(t)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != t.shape[0]:
            raise ValueError(f"pool function must return (batch, features) rows, got "
                             f"{getattr(out, 'shape', type(out))} for a batch of {t.shape[0]}")  # fmt: skip
        return out
    if isinstance(pool, bool) or not (pool in POOLS or (isinstance(pool, int) and pool >= 1)):
        raise ValueError(f"pool must be one of {POOLS}, an integer >= 1 or a function, got {pool!r}")
    if t.ndim <= 2 or pool == "flatten":
        return t.reshape(t.shape[0], -1)
    if t.ndim == 3:  # (B, L, D) tokens: pool over L
        if isinstance(pool, int):
            return nn.functional.adaptive_avg_pool1d(t.transpose(1, 2), pool).flatten(1)
        return t.mean(1) if pool == "mean" else t.amax(1)
    if isinstance(pool, int):
        if t.ndim != 4:
            raise ValueError(f"pool={pool} (k x k positions) needs (B, C, H, W) maps, got shape {tuple(t.shape)}")
        return nn.functional.adaptive_avg_pool2d(t, pool).flatten(1)
    flat = t.flatten(2)
    return flat.mean(-1) if pool == "mean" else flat.amax(-1)


def _first_tensor(v):
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (tuple, list)) and v and isinstance(v[0], torch.Tensor):
        return v[0]  # e.g. the (output, weights) of nn.MultiheadAttention
    raise ValueError(f"a tapped module produced {type(v).__name__}, not a tensor")


class LayerTaps:
    """Forward hooks on named submodules that record their outputs, reduced per batch (see the module's text).

    Arguments:
        model: Any module.
        layers: Names or globs of submodules (:func:`resolve_layers`); ``None``: :func:`default_layers`.
        pool: How each batch of an output becomes rows (:func:`pool_output`); one choice for every layer, or
            ``{name: choice}`` (names missing from it are flattened).
        capture: ``"output"`` (default) or ``"input"`` of each module (the input of a noise module is the centre
            that sample propagation needs).
        mode: ``"eval"`` (default: dropout and noise of modules that follow ``training`` off) or ``"train"``
            (dropout and training-mode noise on; batch-norm layers stay in evaluation, so that probing never
            moves their running statistics). The modes are restored on exit.

    A module called several times in one forward pass (torchvision's blocks call their ``relu`` twice) keeps its
    last call: ``"layer3.1.relu"`` is the block's output.

    ``run(x, batch_size, reduce=None)`` returns ``{name: rows}``; ``reduce`` (``{name: fn}``) maps each pooled batch
    further on the device (a fitted compressor's ``transform``, a quantizer) before it is kept, or consumes it
    (``fn`` returning ``None``, e.g. an incremental fit), so that no layer is ever kept at its full width unless
    ``pool="flatten"`` and no ``reduce`` ask for it.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str] | None = None, *,
                 pool: str | int | Callable | Mapping = "flatten", capture: str = "output",
                 mode: str = "eval"):  # fmt: skip
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if capture not in ("output", "input"):
            raise ValueError(f"capture must be 'output' or 'input', got {capture!r}")
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        self.model, self.capture, self.mode = model, capture, mode
        self.names = resolve_layers(model, layers)
        if isinstance(pool, Mapping):
            unknown = sorted(set(pool) - set(self.names))
            if unknown:
                raise ValueError(f"pool names layers that are not tapped: {unknown}")
            self.pool = {n: pool.get(n, "flatten") for n in self.names}
        else:
            self.pool = {n: pool for n in self.names}
        for n, p in self.pool.items():
            if not callable(p) and (isinstance(p, bool) or not (p in POOLS or (isinstance(p, int) and p >= 1))):
                raise ValueError(f"pool for {n!r} must be one of {POOLS}, an integer >= 1 or a function, got {p!r}")
        self._handles: list = []
        self._modes: dict[nn.Module, bool] = {}
        self._batch: dict[str, torch.Tensor] = {}
        #: units of each tapped output (per row, before pooling), once a batch has run
        self.widths: dict[str, int] = {}

    def __enter__(self) -> LayerTaps:
        modules = dict(self.model.named_modules())
        self._modes = {m: m.training for m in self.model.modules()}
        self.model.train(self.mode == "train")
        if self.mode == "train":
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for name in self.names:
            if self.capture == "output":
                hook = modules[name].register_forward_hook(self._keeper(name))
            else:
                hook = modules[name].register_forward_pre_hook(self._keeper(name))
            self._handles.append(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook and restore every module's mode (what leaving the ``with`` block does)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, training in self._modes.items():
            m.training = training
        self._modes.clear()

    def _keeper(self, name: str):
        def keep(module, inputs, output=None):
            v = _first_tensor(inputs if self.capture == "input" else output)
            self.widths[name] = int(v[0].numel())
            self._batch[name] = pool_output(v.detach(), self.pool[name])
        return keep

    def batches(self, x: torch.Tensor | Sequence, batch_size: int = 512) -> Iterable[dict[str, torch.Tensor]]:
        """Yield ``{name: pooled rows}`` for each batch of ``x`` (a tensor, or a tuple of tensors that are the
        model's positional arguments), under ``torch.no_grad``."""
        if not self._handles:
            raise ValueError("LayerTaps.batches needs the taps attached: use it inside 'with LayerTaps(...) as taps'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        args = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        n = int(args[0].shape[0])
        with torch.no_grad():
            for lo in range(0, n, batch_size):
                self._batch = {}
                self.model(*(a[lo : lo + batch_size] for a in args))
                missing = [k for k in self.names if k not in self._batch]
                if missing:
                    raise ValueError(f"the forward pass did not call the tapped modules {missing}")
                yield self._batch
        self._batch = {}

    def run(self, x, batch_size: int = 512, reduce: Mapping[str, Callable] | None = None) -> dict[str, torch.Tensor]:
        """Every tapped layer's rows over all of ``x``: ``{name: (N, features)}``, each batch pooled and passed
        through ``reduce[name]`` (where given) on the device before it is kept; layers whose ``reduce`` returns
        ``None`` are consumed and left out."""
        reduce = dict(reduce or {})
        kept: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        for batch in self.batches(x, batch_size):
            for name, rows in batch.items():
                out = reduce[name](rows) if name in reduce else rows
                if out is not None:
                    kept[name].append(out)
        return {n: torch.cat(v) for n, v in kept.items() if v}
