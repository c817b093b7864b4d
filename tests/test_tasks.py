"""Known-MI samplers: each sampler's MI agrees with its closed form, checked by an independent computation."""

import math

import numpy as np
import pytest
from scipy import stats

from ibcore import tasks
from ibcore.estimators import KSG


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.75])
def test_smoothed_uniform_agrees_with_ksg(eps):
    x, y = tasks.smoothed_uniform(4000, eps, seed=1)
    assert x.shape == y.shape == (4000, 1)
    assert np.all(np.abs(y - x) <= eps)
    truth = tasks.smoothed_uniform_mi(eps)
    assert KSG(k=5).estimate(x, y).value == pytest.approx(truth, abs=0.06)


def test_smoothed_uniform_formula_is_continuous_at_one_half_and_rejects_bad_eps():
    assert tasks.smoothed_uniform_mi(0.5 - 1e-12) == pytest.approx(tasks.smoothed_uniform_mi(0.5), abs=1e-9)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps must be"):
            tasks.smoothed_uniform_mi(bad)


@pytest.mark.parametrize("gaussian_mi, dof", [(0.0, 3), (1.0, 3), (0.5, 10)])
def test_student_t_mi_matches_a_monte_carlo_of_the_exact_densities(gaussian_mi, dof):
    # I = E[log p(x, y) - log p(x) - log p(y)] with scipy's multivariate t densities, one dimension each.
    x, y = tasks.student_t(200_000, gaussian_mi, 1, dof, seed=3)
    rho = tasks.gaussian_rho(gaussian_mi)
    joint = stats.multivariate_t(loc=[0, 0], shape=[[1, rho], [rho, 1]], df=dof)
    terms = joint.logpdf(np.hstack([x, y])) - stats.t.logpdf(x[:, 0], dof) - stats.t.logpdf(y[:, 0], dof)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - tasks.student_t_mi(gaussian_mi, dof, 1, 1)) < 4 * se + 1e-3
    assert tasks.student_t_mi(gaussian_mi, dof, 1, 1) > gaussian_mi  # the shared scale adds information


def _bump_centres(images):
    # log image = log gy(i) + log gx(j), quadratic in the grid: a degree-2 fit of one row gives the x centre.
    g = np.linspace(0, 1, images.shape[-1])
    out = []
    for im in images:
        cx = np.polyfit(g, np.log(im[im.shape[0] // 2]), 2)
        cy = np.polyfit(g, np.log(im[:, im.shape[1] // 2]), 2)
        out.append([-cx[1] / (2 * cx[0]), -cy[1] / (2 * cy[0])])
    return (np.array(out) - 0.2) / 0.6


def _rectangle_edges(images):
    size = images.shape[-1]
    out = []
    for im in images:
        row = im[np.argmax(im.sum(1))]  # a fully covered row is the x coverage itself
        col = im[:, np.argmax(im.sum(0))]
        edges = []
        for cov in (row, col):
            nz = np.flatnonzero(cov > 0)
            lo = (nz[0] + 1 - cov[nz[0]]) / size
            hi = (nz[-1] + cov[nz[-1]]) / size
            edges += [(lo - 0.05) / 0.4, (hi - 0.55) / 0.4]
        out.append([edges[0], edges[1], edges[2], edges[3]])
    return np.array(out)


@pytest.mark.parametrize("size", [16, 32])
def test_image_renderings_are_injective_the_latents_come_back(size):
    rng = np.random.default_rng(0)
    z2 = rng.uniform(0.02, 0.98, (20, 2))
    assert np.allclose(_bump_centres(tasks.render_bumps(z2, size)), z2, atol=1e-6)
    z4 = rng.uniform(0.02, 0.98, (20, 4))
    assert np.allclose(_rectangle_edges(tasks.render_rectangles(z4, size)), z4, atol=1e-9)


def test_image_pair_renders_the_transformed_gaussian_latents():
    x, y = tasks.image_pair(50, 2.0, "rectangles", 16, seed=4)
    zx, zy = tasks.transformed_gaussian(50, 2.0, 4, seed=4)
    assert x.shape == y.shape == (50, 16, 16)
    assert np.allclose(_rectangle_edges(x), zx, atol=1e-9) and np.allclose(_rectangle_edges(y), zy, atol=1e-9)
    with pytest.raises(ValueError, match="kind must be one of"):
        tasks.image_pair(5, 1.0, "circles", seed=0)
    with pytest.raises(ValueError, match=r"latent must be an \(n, 2\) array"):
        tasks.render_bumps(np.full((3, 2), 1.5))
    with pytest.raises(ValueError, match="size must be an integer >= 4"):
        tasks.render_rectangles(np.zeros((1, 4)), size=2)


@pytest.mark.parametrize("mi", [0.01, 0.3, 0.5, 0.51, 2.0, 10.0, 40.0])
def test_smoothed_uniform_eps_inverts_the_closed_form(mi):
    from ibcore.tasks import smoothed_uniform_eps, smoothed_uniform_mi

    assert smoothed_uniform_mi(smoothed_uniform_eps(mi)) == pytest.approx(mi, rel=1e-12)
    with pytest.raises(ValueError, match="mi must be a finite number > 0"):
        smoothed_uniform_eps(0.0)


def test_the_vector_tasks_of_the_mienf_paper():
    from ibcore.tasks import sample_task, smoothed_uniform_eps

    x, y, truth = sample_task("smoothed_uniform", 2000, 3.0, dim=3, seed=1)
    eps = smoothed_uniform_eps(1.0)  # 3 nats shared by 3 independent pairs
    assert truth == 3.0 and x.shape == y.shape == (2000, 3)
    assert np.all((x >= 0) & (x <= 1)) and np.abs(y - x).max() <= eps
    x0, y0, t0 = sample_task("smoothed_uniform", 100, 0.0, dim=2, seed=1)
    assert t0 == 0.0 and np.all((y0 >= 0) & (y0 <= 1))
    xs, ys, ts = sample_task("student", 500, 1.0, dim=2, seed=4)
    xa, ya, ta = sample_task("asinh_student", 500, 1.0, dim=2, seed=4)
    assert ta == ts and np.allclose(xa, np.arcsinh(xs)) and np.allclose(ya, np.arcsinh(ys))


# ---- the benchmark suite -------------------------------------------------------------------------------------


def test_the_suite_has_forty_tasks_in_thirteen_families_each_drawn_reproducibly():
    assert len(tasks.SUITE) == 40 and len({t.family for t in tasks.SUITE.values()}) == 13
    for name, t in tasks.SUITE.items():
        x, y, truth = tasks.suite_task(name, 50, seed=3)
        assert x.shape == (50, t.dim_x) and y.shape == (50, t.dim_y) and truth == t.mi >= 0, name
        assert np.isfinite(x).all() and np.isfinite(y).all(), name
        x2, y2, _ = tasks.suite_task(name, 50, seed=3)
        x3, _, _ = tasks.suite_task(name, 50, seed=4)
        assert np.array_equal(x, x2) and np.array_equal(y, y2) and not np.array_equal(x, x3), name


def test_gaussian_pair_mi_dimensions_and_active_components():
    from ibcore.estimators import GaussianMI

    for dx, dy, active, mix in ((3, 5, 2, False), (4, 2, None, True)):
        x, y = tasks.gaussian_pair(200_000, 1.5, dx, dy, active=active, mix=mix, seed=0)
        assert x.shape == (200_000, dx) and y.shape == (200_000, dy)
        assert GaussianMI().estimate(x, y).value == pytest.approx(1.5, abs=0.01)
    x, y = tasks.gaussian_pair(10_000, 1.0, 4, 4, active=1, seed=0)
    cc = np.corrcoef(x.T, y.T)[:4, 4:]
    assert abs(cc[0, 0]) > 0.8 and np.abs(cc[1:, 1:]).max() < 0.05  # only the first pair depends
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="active"):
            tasks.gaussian_pair(10, 1.0, 4, 4, active=bad, seed=0)
    with pytest.raises(ValueError, match="name"):
        tasks.suite_task("no-such-task", 10, seed=0)


def test_every_map_of_the_suite_is_invertible_so_the_truth_is_the_gaussians_mi():
    # An independent computation of each nonlinear task's truth: undo its map and measure the Gaussian underneath.
    from scipy import optimize, special

    from ibcore.estimators import GaussianMI

    v = np.linspace(-8, 8, 200_001)
    for f in (tasks._half_cube, tasks._bimodal, tasks._wiggly):
        assert (np.diff(f(v)) > 0).all()  # strictly increasing on the whole range the samples reach
    x0, y = tasks.gaussian_pair(100_000, 1.5, 3, 3, mix=True, seed=1)
    spun = tasks._spiral(x0)
    angle = 0.5 * (spun**2).sum(1)  # |x| is kept, so the angle is known from the image: rotate back
    back = spun.copy()
    back[:, 0] = np.cos(angle) * spun[:, 0] + np.sin(angle) * spun[:, 1]
    back[:, 1] = -np.sin(angle) * spun[:, 0] + np.cos(angle) * spun[:, 1]
    assert np.allclose(back, x0, atol=1e-9)
    x, y, truth = tasks.suite_task("swiss-roll-2x1", 100_000, seed=2)
    t = 10.0 * np.hypot(x[:, 0], x[:, 1])  # the radius is t / 10
    assert np.allclose(np.arctan2(x[:, 1], x[:, 0]) % (2 * np.pi), t % (2 * np.pi), atol=1e-6)
    v = special.ndtri((t / (1.5 * np.pi) - 1.0) / 2.0)
    assert GaussianMI().estimate(v, y).value == pytest.approx(truth, abs=0.02)
    x, y, truth = tasks.suite_task("bimodal-1x1", 100_000, seed=2)
    inv = np.array([optimize.brentq(lambda s, a=a: tasks._bimodal(s) - a, -20, 20) for a in x[:2000, 0]])
    assert np.allclose(tasks._bimodal(inv), x[:2000, 0], atol=1e-9)
    assert np.histogram(x[:, 0], bins=[-6, -2, -0.5, 0.5, 2, 6])[0][2] < 0.1 * len(x)  # two modes, a trough at 0
