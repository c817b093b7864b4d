"""MI estimation via normalizing flows: N-MIENF and tridiag-N-MIENF (Butakov et al., NeurIPS 2024).

Mutual information is invariant under invertible maps of X alone and of Y alone. MIENF trains two normalizing flows
f_X and f_Y so that the pair (xi, eta) = (f_X(X), f_Y(Y)) is as close to jointly Gaussian as maximum likelihood can
make it, and reads the MI off the Gaussian in closed form:

    N-MIENF          base N(mu, Sigma) fitted by maximum likelihood;
                     I = 1/2 [ln det Sigma_xixi + ln det Sigma_etaeta - ln det Sigma]   (canonical correlations)
    tridiag-N-MIENF  base N(0, [[I, diag rho], [diag rho, I]]) with rho_j = sqrt(1 - exp(-2 exp(w_j)));
                     I = -1/2 sum_j ln(1 - rho_j^2) = sum_j exp(w_j)

The error is at most the KL divergence between the pushed-forward joint law and the fitted Gaussian (the paper's
bound), so the estimate is exact once the flows Gaussianise the pair, however large the MI; unlike the critic bounds
it has no ln(batch) ceiling and its variance does not grow exponentially with the MI.

For vectors each side is an element-wise rational-quadratic spline (which alone can Gaussianise the marginals, so
1-D tasks work), ``couplings`` RealNVP affine coupling layers on alternating halves, and a learnable orthogonal layer
R = exp(A - A^T) that lines the dependent directions up with the base's coordinates: zuko's transforms, rewritten in
:mod:`ibcore.estimators._vector_flow` so that f_X and f_Y of one dimension train as one batched computation.
For images (``x`` of shape ``(n, H, W)`` or ``(n, C, H, W)``, H, W >= 4) each side is
``image_couplings`` affine couplings on checkerboard masks conditioned by a small CNN (RealNVP's convolutional
coupling), a whitening onto the principal axes of the training images (fitted before training, as Glow's ActNorm is),
and the vector flow on the ``head`` leading coordinates; as in Glow's multiscale factoring-out, the other coordinates
are modelled as independent standard normals, and only the first ``latent`` outputs of each side enter the dependent
Gaussian, which also keeps the covariance estimate from paying the d^2/n bias of a 2 x H x W dimensional Gaussian.

Training uses the project's loop (:func:`ibcore.training.fit`) on a training part of the rows; after every epoch the
held-out negative log-likelihood decides early stopping and the held-out MI is recorded. The reported value is the
estimate at the end of training: for N-MIENF the Gaussian MI of the held-out latents, for tridiag-N-MIENF
sum exp(w_j), each rho_j started at the correlation of its latent pair; the standard error is the delta-method one of
Gaussian MI, sqrt(sum rho_j^2 / n).

References:
    Butakov, Tolmachev, Malanchuk, Neopryatnaya, Frolov (2024). Mutual information estimation via normalizing flows.
    NeurIPS.
    Dinh, Sohl-Dickstein & Bengio (2017). Density estimation using Real NVP. ICLR.
    Kingma & Dhariwal (2018). Glow: generative flow with invertible 1x1 convolutions. NeurIPS.
    Rozet et al. zuko: normalizing flows in PyTorch. https://github.com/probabilists/zuko
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.distributions import Transform, constraints
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import LazyComposedTransform, LazyTransform
from zuko.nn import Linear as ZukoLinear
from zuko.transforms import CouplingTransform

from ._init import init_uniform
from ._trained import HeldOut, TrainedEstimator, Training, convergence_flags, standardise
from ._validation import as_samples, check_positive_int, check_same_length, image_rows, resolve_device
from ._vector_flow import VectorFlow
from .gaussian import GaussianMI
from .interface import EntropyEstimate, EntropyEstimator, MIEstimate, register

__all__ = ["side_flow", "image_flow", "PairFlow", "MIENF", "TridiagMIENF", "FlowEntropy"]

LOG_2PI = math.log(2 * math.pi)
# The tridiag base's w is stored as w / W_RATE, so that Adam moves it W_RATE times faster than the flows' weights:
# from its data-dependent start (PairFlow.start_base) w may still have units to travel, which the flows' learning
# rate alone would take thousands of steps to do (the paper's 2,000 epochs; CPU-scale runs have a few hundred).
W_RATE = 20.0


class _ConvHyper(nn.Module):
    # The coupling's hypernetwork on images: the kept pixels, scattered back onto the image, through a small CNN,
    # give (shift, scale) for every transformed pixel. Input (..., n_kept), output (..., n_changed * 2).
    def __init__(self, shape, mask, hidden: int):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.register_buffer("keep", mask.clone())
        # the kept and the changed pixels as indices, found once: indexing with the boolean mask finds them in every
        # forward pass, a host sync on CUDA (not saved: they follow from ``keep``)
        self.register_buffer("kept_at", mask.nonzero().squeeze(-1), persistent=False)
        self.register_buffer("changed_at", (~mask).nonzero().squeeze(-1), persistent=False)
        self.net = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * c, 3, padding=1),
        ).to(memory_format=torch.channels_last)  # fmt: skip

    def forward(self, kept: torch.Tensor) -> torch.Tensor:
        lead = kept.shape[:-1]
        img = kept.new_zeros(*lead, self.keep.numel())
        img[..., self.kept_at] = kept
        # channels-last (NHWC) weights and input: oneDNN's convolutions on CPU are about 3x faster that way on these
        # small images (forward and backward, one thread), the sums the same up to rounding
        out = self.net(img.reshape(-1, *self.shape).contiguous(memory_format=torch.channels_last))  # (B, 2c, h, w)
        out = out.reshape(-1, 2, self.keep.numel())[..., self.changed_at]  # (B, 2, n_changed)
        return out.transpose(1, 2).reshape(*lead, -1)


class _Whitening(Transform):
    # x -> ((x - mean) Q) * scale: a fixed invertible affine map with a constant log-determinant
    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, mean, q, scale):
        super().__init__()
        self.mean, self.q, self.scale = mean, q, scale

    def _call(self, x):
        return ((x - self.mean) @ self.q) * self.scale

    def _inverse(self, y):
        return (y / self.scale) @ self.q.T + self.mean

    def log_abs_det_jacobian(self, x, y):
        return torch.log(self.scale).sum().expand(x.shape[:-1])


class PrincipalAxes(LazyTransform):
    """A fixed whitening onto the principal axes of the data it is fitted to (:meth:`fit`), largest variance first.

    An invertible affine map with a constant log-determinant: it puts the directions along which the images vary in
    the leading coordinates, at unit variance (variances below ``floor`` times the largest are scaled as if they were
    that, so that the degenerate directions of images rendered from a few latents stay finite). Fitted to the training
    rows before training, like Glow's data-dependent ActNorm initialisation.
    """

    def __init__(self, dim: int, floor: float = 1e-6):
        super().__init__()
        self.floor = floor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("q", torch.eye(dim))
        self.register_buffer("scale", torch.ones(dim))

    def fit(self, u: torch.Tensor) -> None:
        mean = u.double().mean(0)
        _, sv, vh = torch.linalg.svd(u.double() - mean, full_matrices=True)
        var = torch.zeros(u.shape[1], dtype=torch.float64, device=u.device)
        var[: len(sv)] = sv**2 / max(1, u.shape[0] - 1)
        var = var.clamp_min(self.floor * float(var[0]))
        self.mean.copy_(mean)
        self.q.copy_(vh.T)
        self.scale.copy_(var.rsqrt())

    def forward(self, c=None) -> Transform:
        return _Whitening(self.mean, self.q, self.scale)


class _HeadTransform(Transform):
    # the head transformation on the first m coordinates, the identity on the rest
    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, head: Transform, m: int):
        super().__init__()
        self.head, self.m = head, m

    def _call(self, x):
        return torch.cat([self.head(x[..., : self.m]), x[..., self.m :]], dim=-1)

    def _inverse(self, y):
        return torch.cat([self.head.inv(y[..., : self.m]), y[..., self.m :]], dim=-1)

    def call_and_ladj(self, x):
        z, ladj = self.head.call_and_ladj(x[..., : self.m])
        return torch.cat([z, x[..., self.m :]], dim=-1), ladj

    def log_abs_det_jacobian(self, x, y):
        return self.call_and_ladj(x)[1]


class Head(LazyTransform):
    """A vector flow on the first ``m`` coordinates, the identity on the others (which the base then models as
    independent standard normals: Glow's factoring-out of the coordinates that carry little)."""

    def __init__(self, m: int, flow: LazyTransform):
        super().__init__()
        self.m, self.flow = m, flow

    def forward(self, c=None) -> Transform:
        return _HeadTransform(self.flow(c), self.m)


class _IndexedCoupling(CouplingTransform):
    # zuko's coupling transform with its split handed in: zuko's constructor finds the indices by mask.nonzero()
    # each time the lazy transform is called, i.e. in every forward pass, a host sync per coupling per step on CUDA
    def __init__(self, meta, idx_a: torch.Tensor, idx_b: torch.Tensor):
        Transform.__init__(self)
        self.meta, self.idx_a, self.idx_b = meta, idx_a, idx_b


class _Coupling(GeneralCouplingTransform):
    # zuko's GeneralCouplingTransform with the split indices of its mask found once, kept as buffers (they follow
    # .to(device); not saved, they follow from the mask): the same transformation without a host sync per call
    def __init__(self, features: int, mask: torch.Tensor, **kwargs):
        super().__init__(features, mask=mask, **kwargs)
        self.register_buffer("idx_a", self.mask.nonzero().squeeze(-1), persistent=False)
        self.register_buffer("idx_b", (~self.mask).nonzero().squeeze(-1), persistent=False)

    def forward(self, c=None) -> Transform:
        return _IndexedCoupling(partial(self.meta, c), self.idx_a, self.idx_b)


def side_flow(dim: int, *, couplings: int = 6, hidden=(64, 64), bins: int = 8, orthogonal: bool = True):
    """The flow of one side for vectors: element-wise spline, RealNVP couplings on alternating halves, learnable
    orthogonal layer (:class:`~ibcore.estimators._vector_flow.VectorFlow`, a zuko lazy transform: ``flow()`` is the
    transformation data -> latent). Parameters are not yet initialised deterministically: :class:`PairFlow` does
    that from its seed.
    """
    return VectorFlow(dim, couplings=couplings, hidden=hidden, bins=bins, orthogonal=orthogonal)


def image_flow(shape, *, couplings: int = 2, channels: int = 16, head: int = 16, head_couplings: int = 6,
               hidden=(64, 64), bins: int = 8, orthogonal: bool = True):  # fmt: skip
    """The flow of one side for images ``shape = (C, H, W)``.

    ``couplings`` affine coupling layers on alternating checkerboard masks, each conditioned by a small CNN on the
    kept pixels (RealNVP's convolutional coupling); a whitening onto the principal axes of the training images
    (:class:`PrincipalAxes`); then the vector flow of :func:`side_flow` (spline, ``head_couplings`` couplings,
    learnable orthogonal layer) on the ``head`` leading coordinates, the others passed on as they are.
    """
    c, h, w = shape
    dim = c * h * w
    board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).expand(c, h, w).reshape(-1)
    parts = []
    for i in range(couplings):
        mask = board if i % 2 == 0 else ~board
        t = _Coupling(dim, mask, hidden_features=(8,))
        t.hyper = _ConvHyper(shape, mask, channels)
        parts.append(t)
    parts.append(PrincipalAxes(dim))
    m = min(head, dim)
    parts.append(Head(m, side_flow(m, couplings=head_couplings, hidden=hidden, bins=bins, orthogonal=orthogonal)))
    return LazyComposedTransform(*parts)


_LAYERS = (nn.Linear, nn.Conv2d, ZukoLinear)


def _initialise(flow: nn.Module, generator: torch.Generator) -> None:
    # Every parameter from a local generator: linear and conv layers uniform on +-1/sqrt(fan_in) (PyTorch's
    # default), the last layer of each hypernetwork zero and spline/rotation parameters zero, so that every flow
    # starts as (nearly) the identity. Nothing is drawn from the global generator.
    init_uniform(flow, generator, _LAYERS, drawn=(VectorFlow,))
    with torch.no_grad():
        for m in flow.modules():
            if isinstance(m, GeneralCouplingTransform):
                last = [x for x in m.hyper.modules() if isinstance(x, _LAYERS)][-1]
                last.weight.zero_()
                last.bias.zero_()


class PairFlow(nn.Module):
    """f_X x f_Y with a Gaussian base: ``forward(x, y)`` returns the negative log-likelihood per sample.

    Arguments:
        fx, fy: zuko lazy transforms of each side (:func:`side_flow`, :func:`image_flow`); two vector flows of one
            shape run as one batched computation.
        latent: How many leading latent components of each side enter the dependent Gaussian; the rest are
            independent standard normals.
        base: ``"ml"`` (Gaussian fitted by maximum likelihood on each minibatch) or ``"tridiag"`` (unit variances
            and one learnable correlation per component pair).
        seed: Seed of the initialisation (a local generator).
    """

    def __init__(self, fx, fy, latent: int, base: str, seed: int):
        super().__init__()
        self.fx, self.fy, self.latent, self.base = fx, fy, int(latent), base
        if base == "tridiag":
            # I_j = exp(w_j), w = W_RATE * v: every pair starts at 0.01 nats (until start_base); sign of rho_j
            self.v = nn.Parameter(torch.full((self.latent,), math.log(0.01) / W_RATE))
            self.register_buffer("sign", torch.ones(self.latent))
        _initialise(self, torch.Generator().manual_seed(int(seed)))
        if base == "tridiag":
            with torch.no_grad():
                self.v.fill_(math.log(0.01) / W_RATE)

    @property
    def w(self) -> torch.Tensor:
        """tridiag base: w_j = ln I_j, the per-pair MI in log scale."""
        return W_RATE * self.v

    def latents(self, x, y):
        """The latents (xi, eta) and the log-determinant of the Jacobian of f_X x f_Y per sample."""
        fx, fy = self.fx, self.fy
        if isinstance(fx, VectorFlow) and isinstance(fy, VectorFlow) and fx.signature == fy.signature:
            # two vector flows of one shape: one computation, the sides stacked (half the kernels of two)
            z, ladj = fx.apply(VectorFlow.stack((fx, fy)), torch.stack((x, y)))
            return z[0], z[1], ladj[0] + ladj[1]
        xi, lx = self.fx().call_and_ladj(x)
        eta, ly = self.fy().call_and_ladj(y)
        return xi, eta, lx + ly

    def rho(self) -> torch.Tensor:
        """tridiag base: the correlations rho_j = +-sqrt(1 - exp(-2 exp(w_j))) (the sign is fixed at the start)."""
        return self.sign * torch.sqrt(-torch.expm1(-2 * torch.exp(self.w)))

    @torch.no_grad()
    def start_base(self, x, y) -> None:
        """Data-dependent start of the tridiag base (as Glow's ActNorm): each rho_j set to the correlation of the
        pair (xi_j, eta_j) of the untrained flows' latents of ``x``, ``y``, its MI floored at 0.001 nats."""
        if self.base != "tridiag":
            return
        xi, eta, _ = self.latents(x, y)
        a, b = xi[:, : self.latent].double(), eta[:, : self.latent].double()
        a, b = a - a.mean(0), b - b.mean(0)
        r = (a * b).mean(0) / (a.std(0, correction=0) * b.std(0, correction=0)).clamp_min(1e-300)
        r = r.clamp(-1 + 1e-12, 1 - 1e-12)
        info = (-0.5 * torch.log1p(-(r**2))).clamp_min(1e-3)
        self.sign.copy_(torch.where(r < 0, -1.0, 1.0).to(self.sign.dtype))
        self.v.copy_((torch.log(info) / W_RATE).to(self.v.dtype))

    def nll(self, xi, eta, ladj) -> torch.Tensor:
        k = self.latent
        a, b = xi[:, :k], eta[:, :k]
        rest = torch.cat([xi[:, k:], eta[:, k:]], dim=1)
        # the independent standard-normal part
        out = 0.5 * (rest**2).sum(1) + 0.5 * rest.shape[1] * LOG_2PI - ladj
        if self.base == "tridiag":
            r = self.rho()
            log_one = -2 * torch.exp(self.w)  # ln(1 - rho^2), without cancellation
            q = (a**2 - 2 * r * a * b + b**2) / (2 * torch.exp(log_one))
            return out + (q + LOG_2PI + 0.5 * log_one).sum(1)
        z = torch.cat([a, b], dim=1)
        z = z - z.mean(0)
        cov = z.T @ z / z.shape[0]
        # the maximum-likelihood Gaussian of this minibatch: -mean log N = 1/2 ln det(2 pi e cov), per sample
        return out + 0.5 * (torch.logdet(cov) + z.shape[1] * (LOG_2PI + 1.0))

    def forward(self, x, y) -> torch.Tensor:
        return self.nll(*self.latents(x, y))


def _gaussian_mi(a: torch.Tensor, b: torch.Tensor, bias_correction: bool) -> tuple[float, float, list[float]]:
    # MI of the Gaussian with the sample covariance of (a, b) (less its finite-sample bias), its delta-method
    # standard error and the correlations
    r = GaussianMI(bias_correction=bias_correction).estimate(a.double(), b.double())
    rho = r.diagnostics["canonical_correlations"]
    return r.value, math.sqrt(sum(p * p for p in rho) / a.shape[0]), rho


class _FlowEstimator(TrainedEstimator):
    base = ""
    images = True

    def __init__(self, couplings: int = 6, hidden=(64, 64), bins: int = 8, image_couplings: int = 2,
                 channels: int = 16, head=None, latent=None, orthogonal: bool = True, epochs: int = 200,
                 batch_size: int = 512, lr: float = 5e-4, lr_final=None, held_out: float = 0.2, patience: int = 10,
                 bias_correction: bool = True, seed: int = 0, device=None):  # fmt: skip
        self.lr_final, self.bias_correction = lr_final, bias_correction
        self.couplings, self.hidden, self.bins, self.channels = couplings, hidden, bins, channels
        self.image_couplings, self.head = image_couplings, head
        self.latent, self.orthogonal, self.epochs, self.batch_size = latent, orthogonal, epochs, batch_size
        self.lr, self.held_out, self.patience, self.seed, self.device = lr, held_out, patience, seed, device

    def _value(self, model, xi, eta) -> tuple[float, float]:
        k = model.latent
        if self.base == "tridiag":
            rho = model.rho().detach()
            return float(torch.exp(model.w).sum()), float(torch.sqrt((rho**2).sum() / xi.shape[0]))
        value, std, _ = _gaussian_mi(xi[:, :k], eta[:, :k], self.bias_correction)
        return value, std

    def _prepare(self, x, name, dev):
        # vectors (n, d) or (n,); images (n, H, W) or (n, C, H, W) with H, W >= 4 are flattened, their shape kept
        x, shape = image_rows(x)
        image = shape is not None
        t = as_samples(x, name, min_samples=10, device=dev, float_dtype=torch.float32)
        if not image:
            const = (t.std(0) == 0).nonzero().flatten().tolist()
            if const:
                raise ValueError(f"{name} has constant columns {const}: a flow needs a density in every coordinate "
                                 "(drop them; they carry no information)")  # fmt: skip
            return t, None
        return t, shape

    def _check(self):
        for name in ("couplings", "channels", "epochs"):
            check_positive_int(getattr(self, name), name)
        if self.head is not None:
            check_positive_int(self.head, "head")
        check_positive_int(self.image_couplings, "image_couplings", 0)
        check_positive_int(self.batch_size, "batch_size", 2)
        _check_bins(self.bins)
        self._check_training()
        if not isinstance(self.bias_correction, bool):
            raise ValueError(f"bias_correction must be True or False, got {self.bias_correction!r}")
        if self.latent is not None:
            check_positive_int(self.latent, "latent")

    def _estimate(self, x, y, p) -> MIEstimate:
        self._check()
        dev = resolve_device(self.device)
        tx, shape_x = self._prepare(x, "x", dev)
        ty, shape_y = self._prepare(y, "y", tx.device)
        check_same_length(tx, ty)
        n, dx, dy = tx.shape[0], tx.shape[1], ty.shape[1]
        for side, d, shape in (("x", dx, shape_x), ("y", dy, shape_y)):
            _check_transform(self.bins, d, side, shape)
        # images: only the flow's head (its leading coordinates) can carry the dependence
        head = self.head or self.latent or 16
        cap = min(d if shape is None else min(d, head) for d, shape in ((dx, shape_x), (dy, shape_y)))
        latent = cap if self.latent is None else self.latent
        if latent > cap:
            raise ValueError(f"latent must be at most {cap} (min(d_x, d_y), and head for images), got {latent}")
        test, train = self._split(n, tx.device)
        n_test = len(test)
        if self.base == "ml" and min(n_test, self.batch_size, len(train)) <= 2 * latent:
            raise ValueError(f"{self.name} fits a {2 * latent}-dimensional Gaussian per minibatch and on the "
                             f"held-out rows: batch_size={self.batch_size}, held-out rows {n_test} and training rows "
                             f"{len(train)} must all exceed {2 * latent} (more samples, or a smaller latent)")
        tx, ty = standardise(tx, train, shape_x is not None), standardise(ty, train, shape_y is not None)

        def build(dim, shape):
            if shape is None:
                return side_flow(dim, couplings=self.couplings, hidden=self.hidden, bins=self.bins,
                                 orthogonal=self.orthogonal)  # fmt: skip
            return image_flow(shape, couplings=self.image_couplings, channels=self.channels, head=head,
                              head_couplings=self.couplings, hidden=self.hidden, bins=self.bins,
                              orthogonal=self.orthogonal)  # fmt: skip

        with torch.random.fork_rng(devices=[]):  # the image layers' constructors draw; _initialise redraws
            model = PairFlow(build(dx, shape_x), build(dy, shape_y), latent, self.base, self.seed)
        model = model.to(tx.device)
        with torch.no_grad():  # the flows start at the identity: fit the principal axes to the training images
            for flow, t in ((model.fx, tx), (model.fy, ty)):
                for part in getattr(flow, "transforms", ()):  # image flows (LazyComposedTransform)
                    if isinstance(part, PrincipalAxes):
                        part.fit(t[train])
            start = train[: min(len(train), 8192)]
            model.start_base(tx[start], ty[start])
        xt, yt = tx[test], ty[test]
        nll_curve, last = [], {}

        def latents(model, xt, yt):
            b = max(self.batch_size, 2 * model.latent + 2)
            parts = [model.latents(xt[lo : lo + b], yt[lo : lo + b]) for lo in range(0, len(xt), b)]
            return (torch.cat(p) for p in zip(*parts))

        def evaluate(model):  # held-out negative log-likelihood (the criterion, minimised) and held-out MI
            xi, eta, ladj = latents(model, xt, yt)
            if not bool(torch.isfinite(xi).all() and torch.isfinite(eta).all()):
                raise FloatingPointError(f"{self.name}: the flow's latents are not finite (training diverged); "
                                         "try a smaller lr")  # fmt: skip
            nll = float(model.nll(xi, eta, ladj).mean())
            nll_curve.append(nll)
            last["latents"] = (xi, eta)
            value, std = self._value(model, xi, eta)
            return -nll, value, std

        held = HeldOut(self.name, evaluate, self.patience)
        state = self._train(model, (tx[train], ty[train]), lambda m, a, b: m(a, b).mean(), held, self.epochs,
                            self.batch_size)  # fmt: skip
        with torch.no_grad():
            xi, eta = last["latents"]
            value, std = self._value(model, xi, eta)
            k = model.latent
            gauss, _, rho = _gaussian_mi(xi[:, :k], eta[:, :k], self.bias_correction)
            rows = train[: max(n_test, 2 * k + 2)]  # the value on (as many of) the rows trained on
            trained_on = self._value(model, *list(latents(model, tx[rows], ty[rows]))[:2])[0]
        diagnostics = self._diagnostics(held, state, self.epochs, len(train), n_test, std)
        diagnostics["training_value"] = trained_on
        diagnostics.update(held_out_nll=nll_curve[1:], latent=k, held_out_gaussian_mi=gauss,
                           canonical_correlations=rho)  # fmt: skip
        return MIEstimate(value, n, self.name, self.get_params(), std=std, diagnostics=diagnostics)


@register("mienf")
class MIENF(_FlowEstimator):
    """N-MIENF (Butakov et al. 2024): flows f_X x f_Y trained by maximum likelihood under a Gaussian base whose mean
    and covariance are the minibatch's maximum-likelihood fit; I = the Gaussian MI of the held-out latents.

    Arguments:
        couplings: RealNVP coupling layers of each vector flow (paper: 6 for vectors, a 4-layer RealNVP head for
            images).
        hidden: Hidden widths of the coupling MLPs.
        bins: Bins of the element-wise rational-quadratic spline that starts each vector flow (0: none).
        image_couplings, channels: CNN-conditioned coupling layers on images and their channels (paper's Glow: 16).
        head: Images: the leading principal coordinates that the vector flow transforms (:func:`image_flow`);
            default ``latent``, else 16. Images rendered from a few latents lie on a manifold of that dimension: a
            head wider than it hands the flow degenerate directions that maximum likelihood expands at the expense
            of the dependence (measured: the bumps task at 2 nats fell from 1.7 to 0.5 nats in training with
            head 16), a head equal to it makes the likelihood proper.
        latent: Leading latent components per side that enter the dependent Gaussian (default min(d_x, d_y), for
            images ``head``); at least the dimension of the dependence (for images: of the rendering's latents).
        orthogonal: Whether each flow ends in a learnable orthogonal layer.
        epochs, batch_size, lr: Adam on the training rows; ``patience`` epochs without held-out likelihood
            improvement stop it early (0: never; 10 by default: replayed on the benchmark suite, 40 tasks x 3 seeds,
            patience 15 trains 15% more epochs for one more of the 240 runs solved, patience 5 loses 5 of
            tridiag-N-MIENF's 80; ``benchmarks/bench_flow_stopping.py``).
        lr_final: ``None``: a constant rate; else it decays geometrically from ``lr`` to ``lr_final`` over the
            epochs (the paper: 5e-4 to 1e-5).
        held_out: Fraction of the rows kept out of training for the reported estimate and early stopping.
        bias_correction: Subtract the finite-sample bias of the held-out Gaussian MI (exact for Gaussian latents,
            :func:`ibcore.estimators.gaussian.gaussian_mi_bias`; about latent^2 / (2 n_held_out) nats: 1.3 nats at
            50 + 50 dimensions and 1,000 held-out rows, 0.0005 at 2 + 2 and 2,000). ``False``: the paper's plug-in.
        seed: Seed of the split, the initialisation and the minibatch order.
        device: Where to train (``None``: where the data are).

    ``diagnostics``: the held-out MI ``curve`` and ``held_out_nll`` per epoch, ``train_loss``, ``epochs_run``,
    ``canonical_correlations`` of the held-out latents and the convergence flags of the critic estimators.

    Example:
        >>> from ibcore.tasks import transformed_gaussian
        >>> x, y = transformed_gaussian(2000, mi=1.0, dim=1, seed=0)  # uniform marginals
        >>> r = MIENF(epochs=30, batch_size=256).estimate(x, y)
        >>> abs(r.value - 1.0) < 0.2
        True
    """

    base = "ml"


@register("tridiag-mienf")
class TridiagMIENF(_FlowEstimator):
    """tridiag-N-MIENF (Butakov et al. 2024): the base pairs latent component j of X with component j of Y at a
    learnable correlation rho_j and nothing else; I = sum_j -1/2 ln(1 - rho_j^2) = sum_j exp(w_j).

    Arguments as :class:`MIENF` (``bias_correction`` acts on the diagnostic ``held_out_gaussian_mi`` only: the value is
    sum exp(w_j)). The standard error is the delta-method one, sqrt(sum rho_j^2 / n_held_out).
    """

    base = "tridiag"


def _check_bins(bins) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins == 1 or bins < 0:
        raise ValueError(f"bins must be 0 (no spline) or an integer >= 2, got {bins!r}")


def _check_transform(bins: int, dim: int, side: str, shape) -> None:
    # a vector side of one dimension has no coupling (it needs two): without the spline its flow is empty
    if shape is None and dim == 1 and bins == 0:
        raise ValueError(f"bins=0 leaves the 1-dimensional {side} without a transform to train (couplings need at "
                         "least 2 dimensions): use bins >= 2 for it")  # fmt: skip


class _Density(nn.Module):
    # one vector flow with a standard normal base: forward(x) is the negative log-likelihood per sample
    def __init__(self, flow, seed: int):
        super().__init__()
        self.flow = flow
        _initialise(self, torch.Generator().manual_seed(int(seed)))

    def forward(self, x) -> torch.Tensor:
        z, ladj = self.flow().call_and_ladj(x)
        return 0.5 * (z**2).sum(1) + 0.5 * z.shape[1] * LOG_2PI - ladj


@register("flow-entropy")
class FlowEntropy(Training, EntropyEstimator):
    """Differential entropy h(X) as the held-out negative log-likelihood of a normalizing flow fitted by maximum
    likelihood (the vector flow of :func:`side_flow`: element-wise spline, RealNVP couplings, orthogonal layer; a
    standard normal base). A cross-entropy: in expectation at least h(X), equal when the flow fits the density, so
    the estimate errs upwards where the density has structure the flow cannot follow (many narrow modes).

    Arguments:
        couplings, hidden, bins, orthogonal: The flow (:func:`side_flow`).
        epochs, batch_size, lr: Adam on the training rows; ``patience`` epochs without held-out improvement stop it
            early (0: never).
        held_out: Fraction of the rows kept out of training; the estimate is their mean negative log-likelihood.
        seed: Seed of the split, the initialisation and the minibatch order.
        device: Where to train (``None``: where the data are).

    ``std`` is the standard error of the held-out mean. ``diagnostics``: the held-out ``curve`` (the estimate
    after every epoch, also ``held_out_nll``), ``train_loss``, ``epochs_run``, ``best`` (the lowest held-out value),
    ``training_value`` (on the rows trained on: below the held-out one when the flow overfits) and the flags.

    Example:
        >>> x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
        >>> r = FlowEntropy(epochs=20).estimate(x)  # a Gaussian: ln(2 pi e) + 2 ln 3 = 5.035 nats
        >>> abs(r.value - (math.log(2 * math.pi * math.e) + 2 * math.log(3.0))) < 0.1
        True
    """

    def __init__(self, couplings: int = 4, hidden=(32, 32), bins: int = 8, orthogonal: bool = True,
                 epochs: int = 100, batch_size: int = 4096, lr: float = 5e-3, held_out: float = 0.2,
                 patience: int = 10, seed: int = 0, device=None):  # fmt: skip
        self.couplings, self.hidden, self.bins, self.orthogonal = couplings, hidden, bins, orthogonal
        self.epochs, self.batch_size, self.lr, self.held_out = epochs, batch_size, lr, held_out
        self.patience, self.seed, self.device = patience, seed, device

    def _estimate(self, x, p) -> EntropyEstimate:
        for name in ("couplings", "epochs"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.batch_size, "batch_size", 2)
        _check_bins(self.bins)
        self._check_training()
        t = as_samples(x, "x", min_samples=10, device=resolve_device(self.device), float_dtype=torch.float32)
        const = (t.std(0) == 0).nonzero().flatten().tolist()
        if const:
            raise ValueError(f"x has constant columns {const}: its differential entropy is -inf (drop them)")
        n, d = t.shape
        _check_transform(self.bins, d, "x", None)
        test, train = self._split(n, t.device)
        # h(x) = h(z) + sum ln sd for z the standardised rows (in float64: the shift is exact)
        shift = float(torch.log(t[train].double().std(0)).sum())
        z = standardise(t, train)
        model = _Density(side_flow(d, couplings=self.couplings, hidden=self.hidden, bins=self.bins,
                                   orthogonal=self.orthogonal), self.seed).to(t.device)  # fmt: skip
        zt = z[test]

        def evaluate(model):  # minus the held-out NLL is the criterion (higher is better); the value is the NLL
            with torch.no_grad():
                nll = model(zt).double()
            if not bool(torch.isfinite(nll).all()):
                raise FloatingPointError(f"{self.name}: the held-out log-likelihood is not finite (training "
                                         "diverged); try a smaller lr")  # fmt: skip
            value = float(nll.mean()) + shift
            return -value, value, float(nll.std() / math.sqrt(len(nll)))

        held = HeldOut(self.name, evaluate, self.patience)
        state = self._train(model, (z[train],), lambda m, a: m(a).mean(), held, self.epochs, self.batch_size)
        value, std = held.values[-1], held.stds[-1]
        with torch.no_grad():
            rows = train[: len(test)]
            trained_on = float(model(z[rows]).double().mean()) + shift
        curve = held.values[1:]  # the first value is the untrained flow (epoch 0)
        diagnostics = {
            "curve": curve, "held_out_nll": curve, "train_loss": list(state.losses), "epochs_run": state.epoch,
            "n_train": len(train), "n_held_out": len(test), "best": min(curve, default=value),
            "stopped_early": state.epoch < self.epochs, "training_value": trained_on,
            "not_converged": convergence_flags(curve, std, state.epoch, self.epochs, held.since_best)["not_converged"],
        }  # fmt: skip
        return EntropyEstimate(value, n, self.name, self.get_params(), std=std, diagnostics=diagnostics)
