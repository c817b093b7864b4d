"""Input validation shared by every estimator.

Bad input raises ``ValueError`` naming the argument and the offending values; nothing is clipped or replaced.
Inputs may be NumPy arrays, torch tensors or nested sequences; the result is a 2-D torch tensor of shape
``(n_samples, n_dims)`` on the input's device (NumPy input lives on the CPU) unless ``device`` says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "as_samples", "check_same_length", "check_positive_int", "check_choice", "check_training", "resolve_device",
    "image_rows",
]  # fmt: skip


def resolve_device(device) -> torch.device | None:
    """``None`` (follow the data) or a :class:`torch.device`; an unusable device is a ``ValueError``."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine")
    return dev


def as_samples(
    x,
    name: str,
    *,
    min_samples: int = 1,
    device=None,
    float_dtype: torch.dtype | None = None,
    keep_integer: bool = False,
) -> torch.Tensor:
    """Validate ``x`` and return it as a 2-D tensor ``(n_samples, n_dims)``.

    Arguments:
        x: The samples: 1-D (one scalar per sample) or 2-D (one row per sample).
        name: The argument's name, used in error messages.
        min_samples: The fewest samples the caller can work with (e.g. ``k + 1`` for k-NN).
        device: Where the result should live; ``None`` keeps the input's device.
        float_dtype: Floating dtype of the result; ``None`` keeps a floating input's dtype and turns integers into
            ``float64``. Ignored for integer input when ``keep_integer`` is true.
        keep_integer: Return integer and boolean input as ``int64`` codes instead of floats.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric (bool, integer or float), got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype not in _NUMERIC:
        raise ValueError(f"{name} must be numeric (bool, integer or float), got dtype {t.dtype}")
    if t.ndim == 1:
        t = t.reshape(-1, 1)
    elif t.ndim != 2:
        raise ValueError(
            f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_dims), got shape {tuple(t.shape)}"
            " (flatten images to rows first)"
        )
    n, d = t.shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if n < min_samples:
        raise ValueError(f"{name} has {n} samples; this estimator needs at least {min_samples}")
    dev = resolve_device(device)
    if dev is not None:
        t = t.to(dev)
    is_int = not t.is_floating_point()
    if is_int and keep_integer:
        return t.to(torch.int64)
    src = t
    if is_int:
        t = t.to(float_dtype or torch.float64)
    elif float_dtype is not None:
        t = t.to(float_dtype)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        if t.dtype != src.dtype and bool(torch.isfinite(src).all()):  # finite, but not in the dtype asked for
            raise ValueError(
                f"{name} has values up to {float(src.abs().max()):.3g} in magnitude, beyond the range of "
                f"{dtype_name(t.dtype)} (+-{torch.finfo(t.dtype).max:.3g}) that this estimator computes in: rescale "
                f"{name} (standardize its columns)"
            )
        bad = (~finite).nonzero()[:3].tolist()
        raise ValueError(
            f"{name} contains {int((~finite).sum())} non-finite values (NaN or inf), first at (row, col) {bad}"
        )
    if t.dtype != src.dtype and t.dtype != torch.float64 and src.dtype != torch.bool:
        _check_not_collapsed(src, t, name)
    return t


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: the dtype as error messages and diagnostics name it."""
    return str(dtype).removeprefix("torch.")


def _check_not_collapsed(src: torch.Tensor, t: torch.Tensor, name: str) -> None:
    # A column that varies in the input but is constant once converted to a narrower dtype (values below its
    # smallest number, 1e-200 in float32, or differences below its resolution) has lost all its information.
    lo, hi = torch.aminmax(t, dim=0)
    src_lo, src_hi = torch.aminmax(src, dim=0)
    cols = ((lo == hi) & (src_lo != src_hi)).nonzero().flatten().tolist()
    if cols:
        top = float(src[:, cols].abs().max())
        raise ValueError(
            f"{name} has columns {cols} that vary in {dtype_name(src.dtype)} but are constant in "
            f"{dtype_name(t.dtype)}, the dtype this estimator computes in (values up to {top:.3g} in magnitude): "
            f"their differences are below its resolution; rescale {name} (standardize its columns)"
        )


_NUMERIC = {
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
}  # fmt: skip


def check_same_length(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    """Both inputs must hold the same number of samples, on the same device."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of samples, got [{x.shape[0]}, {y.shape[0]}]"
        )
    if x.device != y.device:
        raise ValueError(f"{names[0]} and {names[1]} are on different devices: [{x.device}, {y.device}]")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """An integer hyperparameter that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value, name: str, choices) -> str:
    """A string hyperparameter restricted to ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_training(held_out, lr, patience) -> None:
    """The hyperparameters every trained estimator shares: a held-out fraction in (0, 1), a positive finite learning
    rate and an early-stopping patience >= 0."""
    if not (isinstance(held_out, float) and 0 < held_out < 1):
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"patience must be an integer >= 0 (0: no early stopping), got {patience!r}")


def image_rows(x):
    """Images ``(n, H, W)`` or ``(n, C, H, W)`` with H, W >= 4 flattened to rows ``(n, C*H*W)``, with their shape
    ``(C, H, W)``; anything else is returned as it is, with ``None`` (and validated later as samples)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) in (3, 4) and min(shape[-2:]) >= 4:
        return x.reshape(shape[0], -1), ((1, *shape[1:]) if len(shape) == 3 else shape[1:])
    return x, None
