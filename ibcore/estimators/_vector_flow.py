"""The vector flow of MIENF, written so that the two sides of a pair run as one computation.

One side is an element-wise monotonic rational-quadratic spline (Durkan et al. 2019) on [-bound, bound] (the
identity outside), ``couplings`` RealNVP affine coupling layers that alternately keep the first and the second half
of the coordinates and move the other half by a shift and a positive scale from an MLP of the kept half, and a
learnable orthogonal layer R = exp(A - A^T). It is the transformation zuko composes from ``MonotonicRQSTransform``,
``GeneralCouplingTransform`` (halves as masks) and ``RotationTransform``, with zuko's soft bounds on the spline's
and the couplings' parameters (``slope``: the smallest slope), tested against that composition.

Why not zuko's lazy transforms: MIENF trains two flows, f_X and f_Y, of the same shape in every step, and on a CPU
the step costs hundreds of small kernels, not arithmetic. Every parameter here carries a leading *side* axis, and
:meth:`VectorFlow.apply` takes the parameters of several flows concatenated along it with their inputs stacked
``(sides, n, dim)``: the MLPs become batched matrix products (``baddbmm``), the spline's knots one ``searchsorted``,
so a pair costs the kernels of one flow. Each flow still owns its parameters (a module of one side each), so f_X and
f_Y stay separate modules and a pair of different dimensions runs them one after the other.

References:
    Durkan, Bekasov, Murray & Papamakarios (2019). Neural spline flows. NeurIPS.
    Dinh, Sohl-Dickstein & Bengio (2017). Density estimation using Real NVP. ICLR.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Transform, constraints
from zuko.lazy import LazyTransform

__all__ = ["VectorFlow"]


class VectorFlow(LazyTransform):
    """One side's vector flow: spline, couplings on alternating halves, orthogonal layer (as a zuko lazy transform:
    ``flow()`` is the transformation data -> latent, with ``call_and_ladj`` and ``inv``).

    Arguments:
        dim: Coordinates.
        couplings: Affine coupling layers (none when ``dim`` is 1); even ones keep the first ceil(dim/2)
            coordinates, odd ones the others.
        hidden: Hidden widths of the couplings' ReLU MLPs.
        bins: Bins of the element-wise spline (0: no spline).
        orthogonal: Whether the flow ends in a learnable orthogonal layer (not when ``dim`` is 1).
        bound: The spline acts on [-bound, bound].
        slope: The smallest slope of the spline and of the couplings' scales (zuko's soft bounds).

    Parameters start at zero (the identity); :meth:`draw` initialises them from a generator.
    """

    def __init__(self, dim: int, couplings: int = 6, hidden=(64, 64), bins: int = 8, orthogonal: bool = True,
                 bound: float = 5.0, slope: float = 1e-3):  # fmt: skip
        super().__init__()
        self.dim, self.bins, self.bound, self.log_slope = int(dim), int(bins), float(bound), math.log(slope)
        self.half = (self.dim + 1) // 2
        self.spline = nn.ParameterList()
        if bins:  # unconstrained widths, heights (bins each) and inner-knot derivatives (bins - 1), per coordinate
            self.spline.extend(nn.Parameter(torch.zeros(1, dim, k)) for k in (bins, bins, bins - 1))
        # per coupling, per layer: weights (1, in, out) and biases (1, 1, out); the last layer gives the moved half's
        # shifts, then its unconstrained log-scales
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.layers = len(hidden) + 1
        self.couplings = couplings if dim > 1 else 0
        for i in range(self.couplings):
            kept = self.half if i % 2 == 0 else dim - self.half
            sizes = (kept, *hidden, 2 * (dim - kept))
            for a, b in zip(sizes[:-1], sizes[1:]):
                self.weights.append(nn.Parameter(torch.zeros(1, a, b)))
                self.biases.append(nn.Parameter(torch.zeros(1, 1, b)))
        self.rotation = nn.Parameter(torch.zeros(1, dim, dim)) if orthogonal and dim > 1 else None
        self.signature = (self.dim, self.bins, self.bound, self.log_slope, self.couplings, tuple(hidden),
                          self.rotation is not None)  # fmt: skip

    def tensors(self) -> list[torch.Tensor]:
        """Every parameter, in the order :meth:`apply` reads them (each with the leading side axis)."""
        rotation = [] if self.rotation is None else [self.rotation]
        return [*self.spline, *self.weights, *self.biases, *rotation]

    @torch.no_grad()
    def draw(self, generator: torch.Generator) -> None:
        """Each coupling's layers uniform on +-1/sqrt(fan_in) (PyTorch's default), drawn in the order of zuko's
        modules (weight (out, in), then bias, layer by layer), the last layer of each coupling zero, the spline and
        the rotation zero: the identity, with the draws of the zuko composition from the same generator."""
        for p in self.tensors():
            p.zero_()
        for j, (w, b) in enumerate(zip(self.weights, self.biases)):
            bound = 1.0 / math.sqrt(w.shape[1])
            draw = torch.empty(w.shape[2], w.shape[1], dtype=w.dtype).uniform_(-bound, bound, generator=generator)
            bias = torch.empty(b.shape[2], dtype=b.dtype).uniform_(-bound, bound, generator=generator)
            if j % self.layers != self.layers - 1:  # the last layer of a coupling stays zero
                w.copy_(draw.T[None])
                b.copy_(bias[None, None])

    def forward(self, c=None) -> Transform:
        return _VectorTransform(self, self.tensors())

    @staticmethod
    def stack(flows) -> list[torch.Tensor]:
        """The parameters of flows of one ``signature`` concatenated along the side axis, for :meth:`apply`."""
        if len({f.signature for f in flows}) != 1:
            raise ValueError(f"only flows of one shape run as one: {[f.signature for f in flows]}")
        return [torch.cat(ps) for ps in zip(*(f.tensors() for f in flows))]

    def apply(self, params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (sides, n, dim) through the flows whose parameters are ``params`` (:meth:`tensors` or :meth:`stack`):
        the latents (sides, n, dim) and the log-determinants of the Jacobians (sides, n)."""
        spline, weights, biases, rotation = self._unpack(params)
        ladj = x.new_zeros(x.shape[:2])
        if spline:
            x, ladj = _spline(x, *spline, self.bound, self.log_slope)
        for i in range(self.couplings):
            at = slice(i * self.layers, (i + 1) * self.layers)
            x, l = self._coupling(i, weights[at], biases[at], x)
            ladj = ladj + l
        if rotation is not None:
            x = torch.bmm(x, _orthogonal(rotation).mT)
        return x, ladj

    def invert(self, params, z: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`apply`: latents (sides, n, dim) back to data."""
        spline, weights, biases, rotation = self._unpack(params)
        if rotation is not None:
            z = torch.bmm(z, _orthogonal(rotation))
        for i in reversed(range(self.couplings)):
            at = slice(i * self.layers, (i + 1) * self.layers)
            z = self._coupling(i, weights[at], biases[at], z, inverse=True)
        if spline:
            z = _spline(z, *spline, self.bound, self.log_slope, inverse=True)
        return z

    def _unpack(self, params):
        k = 3 if self.bins else 0
        m = self.couplings * self.layers
        rotation = params[k + 2 * m] if self.rotation is not None else None
        return params[:k], params[k : k + m], params[k + m : k + 2 * m], rotation

    def _coupling(self, i, weights, biases, x, inverse=False):
        h = self.half
        kept, moved = (x[..., :h], x[..., h:]) if i % 2 == 0 else (x[..., h:], x[..., :h])
        out = kept
        for j, (w, b) in enumerate(zip(weights, biases)):
            out = torch.baddbmm(b, out, w)  # (sides, n, out)
            if j < len(weights) - 1:
                out = torch.relu(out)
        m = moved.shape[-1]
        shift, raw = out[..., :m], out[..., m:]
        log_scale = raw / (1 + torch.abs(raw / self.log_slope))
        if inverse:
            moved = (moved - shift) * torch.exp(-log_scale)
        else:
            moved = moved * torch.exp(log_scale) + shift
        x = torch.cat((kept, moved) if i % 2 == 0 else (moved, kept), dim=-1)
        return x if inverse else (x, log_scale.sum(-1))


def _orthogonal(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_exp(a - a.mT)


def _knots(u: torch.Tensor, bound: float, log_slope: float) -> torch.Tensor:
    # unconstrained bin sizes (sides, d, K) -> knot positions (sides, d, K + 1) from -bound to bound
    u = u / (1 + torch.abs(2 * u / log_slope))
    return bound * (2 * torch.cumsum(F.pad(torch.softmax(u, dim=-1), (1, 0)), dim=-1) - 1)


def _spline(x, widths, heights, derivatives, bound, log_slope, inverse=False):
    # x (sides, n, d); widths, heights (sides, d, K); derivatives (sides, d, K - 1). Values outside [-bound, bound]
    # pass unchanged (log-derivative 0).
    sides, n, d = x.shape
    bins = widths.shape[-1]
    horizontal, vertical = _knots(widths, bound, log_slope), _knots(heights, bound, log_slope)
    u = derivatives / (1 + torch.abs(derivatives / log_slope))
    slopes = torch.exp(F.pad(u, (1, 1)))  # (sides, d, K + 1): slope 1 at both ends
    # the bin of each value: knots below it, less one (-1 and K: outside); one sorted search per (side, coordinate)
    seq = (vertical if inverse else horizontal).detach().reshape(sides * d, bins + 1).contiguous()
    rows = x.detach().transpose(1, 2).reshape(sides * d, n).contiguous()  # (sides * d, n)
    k = torch.searchsorted(seq, rows).reshape(sides, d, n).transpose(1, 2) - 1  # (sides, n, d)
    inside = (k >= 0) & (k < bins)
    # the knot tables read by one flat index per value (gathering from tables broadcast to (sides, n, d, K + 1)
    # would cost a scatter of that size in the backward)
    at = k % bins + torch.arange(sides * d, device=x.device).reshape(sides, 1, d) * (bins + 1)
    tables = torch.stack((horizontal, vertical, slopes)).reshape(3, -1)
    (x0, x1), (y0, y1), (d0, d1) = tables[:, torch.stack((at, at + 1))]
    s = (y1 - y0) / (x1 - x0)
    if inverse:
        y = inside * (x - y0)
        a = (y1 - y0) * (s - d0) + y * (d0 + d1 - 2 * s)
        b = (y1 - y0) * d0 - y * (d0 + d1 - 2 * s)
        c = -s * y
        z = 2 * c / (-b - torch.sqrt(b**2 - 4 * a * c))
        return torch.where(inside, x0 + z * (x1 - x0), x)
    z = inside * (x - x0) / (x1 - x0)
    zz = z * (1 - z)
    denominator = s + (d0 + d1 - 2 * s) * zz
    y = y0 + (y1 - y0) * (s * z**2 + d0 * zz) / denominator
    jacobian = s**2 * (2 * s * zz + d0 * (1 - z) ** 2 + d1 * z**2) / denominator**2
    return torch.where(inside, y, x), (inside * torch.log(jacobian)).sum(-1)


class _VectorTransform(Transform):
    # one flow as a torch Transform on (..., dim)
    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, flow: VectorFlow, params):
        super().__init__()
        self.flow, self.params = flow, params

    def call_and_ladj(self, x):
        z, ladj = self.flow.apply(self.params, x.reshape(1, -1, x.shape[-1]))
        return z.reshape(x.shape), ladj.reshape(x.shape[:-1])

    def _call(self, x):
        return self.call_and_ladj(x)[0]

    def _inverse(self, y):
        return self.flow.invert(self.params, y.reshape(1, -1, y.shape[-1])).reshape(y.shape)

    def log_abs_det_jacobian(self, x, y):
        return self.call_and_ladj(x)[1]
