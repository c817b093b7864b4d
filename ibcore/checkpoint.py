"""Checkpoints of training runs: everything :func:`ibcore.training.fit` needs to continue a run as if it had never
stopped.

A checkpoint holds the model's parameters and buffers, the optimiser's state, the minibatch generators (one per
stacked network), every network's own noise generator, the epoch, the losses so far, the training time so far, and
each callback's :meth:`~ibcore.training.Callback.state_dict` (the records measured so far). It is written
atomically (a temporary file, then a rename), gzip-compressed, so a run killed at any moment leaves the previous
checkpoint whole; it is read with ``torch.load(weights_only=True)``, so loading one runs no code from the file.

A *fingerprint* of the run (model class and parameter shapes, data sizes, epochs, batch size, learning rate,
optimiser, seed, callback classes) is stored with it: resuming with other settings is refused with the settings that
differ, instead of silently mixing two runs.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import torch

from ._io import write_atomic

__all__ = ["save", "load", "fingerprint", "check_fingerprint", "noise_generators", "restore_noise_generators"]

VERSION = 1


def save(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically, gzip-compressed."""
    buf = io.BytesIO()
    torch.save({"version": VERSION, **payload}, buf)
    write_atomic(path, gzip.compress(buf.getvalue(), compresslevel=3))


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save` (on the CPU; ``fit`` moves what it restores to the model's device)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes())
        out = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"checkpoint={str(path)!r} is not a readable ibcore checkpoint: {exc}") from None
    version = out.get("version") if isinstance(out, dict) else None
    if version != VERSION:
        raise ValueError(f"checkpoint={str(path)!r} has version {version!r}, expected {VERSION}")
    return out


def fingerprint(model: torch.nn.Module, tensors, callbacks, **settings) -> dict:
    """What identifies a run: resuming one checkpoint into a different run is an error (:func:`check_fingerprint`)."""
    return {
        "model": type(model).__name__,
        "parameters": {k: list(v.shape) for k, v in model.state_dict().items()},
        "seeds": [int(s) for s in getattr(model, "seeds", [0])],
        "tensors": [list(t.shape) for t in tensors],
        "callbacks": [type(cb).__name__ for cb in callbacks],
        **settings,
    }


def check_fingerprint(saved: dict, now: dict, path) -> None:
    """Raise ``ValueError`` naming every setting in which the checkpoint at ``path`` differs from this run."""
    diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
    if diff:
        shown = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"checkpoint={str(path)!r} belongs to a different run ({shown}); delete it to start afresh")


def noise_generators(model: torch.nn.Module) -> dict:
    """The states of the networks' own noise and dropout generators (:mod:`ibcore.nets.common`), by module name."""
    out = {}
    for name, m in model.named_modules():
        g = getattr(m, "_noise_generator", None)
        if isinstance(g, torch.Generator):
            out[name] = {"device": str(g.device), "state": g.get_state()}
    return out


def restore_noise_generators(model: torch.nn.Module, saved: dict) -> None:
    """Put back the generators :func:`noise_generators` saved (created on their device as on first use)."""
    modules = dict(model.named_modules())
    for name, g in saved.items():
        if name not in modules:
            raise ValueError(f"checkpoint has a noise generator for module {name!r}, which the model lacks")
        gen = torch.Generator(device=g["device"])
        gen.set_state(g["state"])
        modules[name]._noise_generator = gen
