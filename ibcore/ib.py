"""The information bottleneck and the dual information bottleneck for a discrete joint distribution p(x, y).

Both are solved by the self-consistent iterations of Tishby, Pereira & Bialek (1999), for a trade-off ``beta``:

- IB: encoder p(t|x) ~ p(t) exp(-beta KL[p(y|x) || p(y|t)]), marginal p(t) = sum_x p(x) p(t|x), decoder
  p(y|t) = sum_x p(y|x) p(x|t) (the arithmetic mean of p(y|x) under p(x|t)).
- dualIB (Piran, Shwartz-Ziv & Tishby 2020; Shwartz-Ziv's thesis 2022): the distortion's KL order switched,
  p(t|x) ~ p(t) exp(-beta KL[p(y|t) || p(y|x)]), with the decoder the normalised geometric mean
  p(y|t) ~ prod_x p(y|x)^p(x|t).

:func:`ib_curve` sweeps beta upwards with deterministic annealing: each beta starts from the previous solution,
slightly perturbed so that clusters can split where the solution bifurcates, and reports I(X;T), I(T;Y) (nats) and
the number of distinct clusters, whose changes mark the critical betas.

References:
    Tishby, Pereira & Bialek (1999). The information bottleneck method. Allerton.
    Piran, Shwartz-Ziv & Tishby (2020). The dual information bottleneck. arXiv:2006.04641.
    Wu, Fischer, Chuang & Tegmark (2019). Learnability for the information bottleneck. UAI. (The trivial solution
    is optimal exactly for beta <= 1 / rho_m^2, rho_m the maximal correlation of X and Y.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["IBSolution", "ib_solve", "ib_curve", "critical_betas", "first_critical_beta", "distortions",
           "mutual_information", "METHODS"]

METHODS = ("ib", "dualib")
_TINY = 1e-300


@dataclass
class IBSolution:
    """One solution at one beta: ``encoder`` p(t|x) ``(n_x, n_t)``, ``decoder`` p(y|t) ``(n_t, n_y)``, marginal
    ``p_t``, the information I(X;T), I(T;Y) in nats, the number of distinct clusters, and the iterations run."""

    beta: float
    method: str
    encoder: torch.Tensor
    decoder: torch.Tensor
    p_t: torch.Tensor
    i_xt: float
    i_ty: float
    clusters: int
    iterations: int
    converged: bool
    extra: dict = field(default_factory=dict)


def _check_joint(p_xy, device) -> torch.Tensor:
    p = torch.as_tensor(p_xy, dtype=torch.float64, device=device)
    if p.ndim != 2 or min(p.shape) < 2:
        raise ValueError(f"p_xy must be a 2-D table with at least 2 rows and 2 columns, got shape {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-9:
        raise ValueError(f"p_xy must be finite, >= 0 and sum to 1, got sum {float(p.sum())!r}")
    if bool((p.sum(1) <= 0).any()):
        raise ValueError(f"p_xy has {int((p.sum(1) <= 0).sum())} rows x of probability 0: drop them")
    return p


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return method


def _mi(p_ab: torch.Tensor) -> float:
    # I(A;B) in nats of a joint table.
    pa, pb = p_ab.sum(1, keepdim=True), p_ab.sum(0, keepdim=True)
    ratio = torch.where(p_ab > 0, p_ab / (pa * pb).clamp_min(_TINY), torch.ones_like(p_ab))
    return float((p_ab * torch.log(ratio)).sum())


def _decoder(method: str, enc: torch.Tensor, p_x: torch.Tensor, p_y_x: torch.Tensor, p_t: torch.Tensor):
    p_x_t = enc * p_x[:, None] / p_t.clamp_min(_TINY)[None, :]  # (x, t): p(x|t)
    if method == "ib":
        dec = p_x_t.T @ p_y_x  # arithmetic mean
    else:
        log_dec = p_x_t.T @ torch.log(p_y_x.clamp_min(_TINY))  # geometric mean, normalised
        dec = torch.softmax(log_dec, dim=1)
    return dec


def _distortion(method: str, p_y_x: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
    # d(x, t) = KL[p(y|x) || p(y|t)] (IB) or KL[p(y|t) || p(y|x)] (dualIB): (x, t)
    log_x = torch.log(p_y_x.clamp_min(_TINY))
    log_t = torch.log(dec.clamp_min(_TINY))
    if method == "ib":
        return (p_y_x * log_x).sum(1, keepdim=True) - p_y_x @ log_t.T
    return (dec * log_t).sum(1)[None, :] - log_x @ dec.T


def _clusters(enc: torch.Tensor, dec: torch.Tensor, p_t: torch.Tensor, tol: float) -> int:
    # Distinct clusters: used ones (p(t) > tol) with different decoders (max abs difference > tol).
    used = dec[p_t > tol]
    reps: list[torch.Tensor] = []
    for row in used:
        if not any(float((row - r).abs().max()) <= tol for r in reps):
            reps.append(row)
    return len(reps)


def ib_solve(p_xy, beta: float, *, method: str = "ib", n_clusters: int | None = None, init=None, max_iter: int = 2000,
             tol: float = 1e-10, seed: int = 0, device=None) -> IBSolution:  # fmt: skip
    """Solve the IB (``method="ib"``) or the dualIB (``"dualib"``) at one ``beta`` by the self-consistent
    iterations, from ``init`` (an encoder ``(n_x, n_t)``) or from a random encoder drawn from ``seed``.

    Arguments:
        p_xy: The joint distribution, ``(n_x, n_y)``, summing to 1.
        beta: The trade-off (> 0).
        n_clusters: Size of T's alphabet (default ``n_x``).
        max_iter, tol: Stop when the encoder changes by at most ``tol`` (max abs) or after ``max_iter`` iterations.
    """
    method = _check_method(method)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    p = _check_joint(p_xy, device)
    p_x = p.sum(1)
    p_y_x = p / p_x[:, None]
    n_x = p.shape[0]
    if init is None:
        n_t = n_x if n_clusters is None else int(n_clusters)
        if n_t < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters!r}")
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        enc = torch.rand(n_x, n_t, generator=g, dtype=torch.float64).to(p.device)
        enc = enc / enc.sum(1, keepdim=True)
    else:
        enc = torch.as_tensor(init, dtype=torch.float64, device=p.device)
        if enc.ndim != 2 or enc.shape[0] != n_x or bool((enc < 0).any()):
            raise ValueError(f"init must be a non-negative encoder of shape ({n_x}, n_t), got {tuple(enc.shape)}")
        enc = enc / enc.sum(1, keepdim=True)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        p_t = p_x @ enc
        dec = _decoder(method, enc, p_x, p_y_x, p_t)
        logits = torch.log(p_t.clamp_min(_TINY))[None, :] - beta * _distortion(method, p_y_x, dec)
        new = torch.softmax(logits, dim=1)
        change = float((new - enc).abs().max())
        enc = new
        if change <= tol:
            converged = True
            break
    p_t = p_x @ enc
    dec = _decoder(method, enc, p_x, p_y_x, p_t)
    p_xt = enc * p_x[:, None]
    p_ty = p_xt.T @ p_y_x  # the joint of T and Y under the Markov chain T - X - Y (for the IB: p(t) p(y|t))
    return IBSolution(beta=float(beta), method=method, encoder=enc, decoder=dec, p_t=p_t, i_xt=_mi(p_xt),
                      i_ty=_mi(p_ty), clusters=_clusters(enc, dec, p_t, 1e-6), iterations=it, converged=converged)


def _split(enc: torch.Tensor, p_xy: torch.Tensor, method: str, g: torch.Generator, delta: float) -> torch.Tensor:
    # Deterministic annealing's restart: merge clusters with equal decoders, then split every cluster into two
    # copies in the unused columns, each x's membership divided (1/2 +- delta u_x): the copies start with nearly the
    # parent's decoder and drift apart only where beta has made the merged solution unstable.
    p_x = p_xy.sum(1)
    p_y_x = p_xy / p_x[:, None]
    p_t = p_x @ enc
    dec = _decoder(method, enc, p_x, p_y_x, p_t)
    enc = enc.clone()
    used = [int(t) for t in torch.argsort(p_t, descending=True) if float(p_t[t]) > 1e-9]
    kept: list[int] = []
    for t in used:
        twin = next((k for k in kept if float((dec[t] - dec[k]).abs().max()) <= 1e-6), None)
        if twin is None:
            kept.append(t)
        else:
            enc[:, twin] += enc[:, t]
            enc[:, t] = 0
    free = [t for t in range(enc.shape[1]) if t not in kept]
    for parent, child in zip(kept, free):
        u = torch.rand(enc.shape[0], generator=g, dtype=enc.dtype).to(enc.device) * 2 - 1
        share = enc[:, parent]
        enc[:, child] = share * (0.5 + delta * u)
        enc[:, parent] = share * (0.5 - delta * u)
    return enc


def ib_curve(p_xy, betas: Sequence[float], *, method: str = "ib", n_clusters: int | None = None,
             perturbation: float = 1e-2, max_iter: int = 2000, tol: float = 1e-10, seed: int = 0,
             device=None) -> list[IBSolution]:  # fmt: skip
    """The IB or dualIB curve over increasing ``betas`` by deterministic annealing: the first beta starts from a
    random encoder; every later one from the previous solution with equal clusters merged and every cluster split
    into two copies whose memberships differ by ``perturbation`` (a local generator), so that a cluster divides
    when beta crosses a critical value and the copies merge back when it has not."""
    method = _check_method(method)
    betas = [float(b) for b in betas]
    if not betas or any(b2 < b1 for b1, b2 in zip(betas, betas[1:])):
        raise ValueError(f"betas must be a non-empty increasing sequence, got {betas}")
    p = _check_joint(p_xy, device)
    g = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    out: list[IBSolution] = []
    init = None
    for b in betas:
        if init is not None:
            init = _split(init, p, method, g, perturbation)
        sol = ib_solve(p, b, method=method, n_clusters=n_clusters, init=init, max_iter=max_iter, tol=tol,
                       seed=seed, device=device)  # fmt: skip
        out.append(sol)
        init = sol.encoder
    return out


def critical_betas(curve: Sequence[IBSolution]) -> list[tuple[float, int, int]]:
    """Where the number of distinct clusters changes along a curve: ``(beta, clusters before, clusters after)``,
    with ``beta`` the first beta of the sweep at the new number."""
    return [(b.beta, a.clusters, b.clusters) for a, b in zip(curve, curve[1:]) if a.clusters != b.clusters]


def first_critical_beta(p_xy) -> float:
    """1 / rho_m^2, with rho_m the maximal (Hirschfeld-Gebelein-Renyi) correlation of X and Y: the second largest
    singular value of Q(x, y) = p(x, y) / sqrt(p(x) p(y)). Below it the only IB solution is the trivial one
    (I(X;T) = 0); above it, it is not (Wu, Fischer, Chuang & Tegmark 2019, Theorem 3 for discrete variables)."""
    p = _check_joint(p_xy, None)
    px, py = p.sum(1), p.sum(0)
    q = p / torch.sqrt(px[:, None] * py[None, :]).clamp_min(_TINY)
    s = torch.linalg.svdvals(q)
    if len(s) < 2 or float(s[1]) <= 0:
        return math.inf
    return 1.0 / float(s[1]) ** 2


def mutual_information(p_xy) -> float:
    """I(X;Y) in nats of a joint table ``(n_x, n_y)``."""
    return _mi(_check_joint(p_xy, None))


def distortions(p_xy, encoder) -> dict[str, float]:
    """The two distortions of an encoder p(t|x), each with its best decoder: ``"log_loss"`` = E KL[p(y|x) || q(y|t)]
    with q the arithmetic mean of p(y|x) under p(x|t) (the IB's), and ``"error_exponent"`` = E KL[q(y|t) || p(y|x)]
    with q the normalised geometric mean (the dualIB's); expectations over p(x) p(t|x), in nats."""
    p = _check_joint(p_xy, None)
    enc = torch.as_tensor(encoder, dtype=torch.float64)
    if enc.ndim != 2 or enc.shape[0] != p.shape[0] or bool((enc < 0).any()):
        raise ValueError(f"encoder must be a non-negative ({p.shape[0]}, n_t) table, got shape {tuple(enc.shape)}")
    enc = enc / enc.sum(1, keepdim=True)
    p_x = p.sum(1)
    p_y_x = p / p_x[:, None]
    p_t = p_x @ enc
    weight = enc * p_x[:, None]  # p(x, t)
    out = {}
    for key, method in (("log_loss", "ib"), ("error_exponent", "dualib")):
        dec = _decoder(method, enc, p_x, p_y_x, p_t)
        out[key] = float((weight * _distortion(method, p_y_x, dec)).sum())
    return out
