"""Weighted Kozachenko-Leonenko, MI through entropies, the continuous-discrete estimator and lossy compression
(Butakov et al., ICLR 2024), against closed forms."""

import math

import numpy as np
import pytest
import torch

import ibcore.estimators as est
from ibcore.estimators import PCA
from ibcore.estimators.knn import wkl_weights
from ibcore.tasks import correlated_gaussian, uniform_quantization


def _gaussian_entropy(d):
    return 0.5 * d * math.log(2 * math.pi * math.e)


@pytest.mark.parametrize("d", [1, 4, 8])
def test_wkl_matches_the_gaussian_entropy(d):
    # closed form d/2 ln(2 pi e); tolerance 0.1 + 0.02 d at N = 5000 (mutinfo's WKL tests: atol 0.1, rtol 0.05)
    x = np.random.default_rng(d).standard_normal((5000, d))
    h = est.make("wkl").estimate(x).value
    assert abs(h - _gaussian_entropy(d)) < 0.1 + 0.02 * d, h


def test_wkl_weights_satisfy_their_constraints_and_refuse_too_small_k():
    for k, d in [(5, 4), (5, 8), (8, 12)]:
        w = wkl_weights(k, d)
        j = np.arange(1, k + 1)
        assert w.sum() == pytest.approx(1.0)
        for ell in range(1, d // 4 + 1):
            g = np.exp([math.lgamma(v + 2 * ell / d) - math.lgamma(v) for v in j])
            assert abs(np.dot(w, g)) < 1e-8
    with pytest.raises(ValueError, match=r"needs k > floor\(d/4\) = 3, got k=3"):
        wkl_weights(3, 12)


def test_wkl_backends_agree(device):
    # the k-d tree on the CPU, brute force on the device of the run; the same neighbour distances to rounding
    x = np.random.default_rng(0).standard_normal((500, 3))
    a = est.make("wkl", backend="kdtree").estimate(x).value
    b = est.make("wkl", backend="torch").estimate(torch.from_numpy(x).to(device))
    assert torch.device(b.device).type == device.type
    assert a == pytest.approx(b.value, abs=1e-9)


@pytest.mark.parametrize("entropy", ["wkl", "kl"])
def test_entropy_mi_on_a_correlated_gaussian(entropy, device):
    x, y = correlated_gaussian(5000, mi=1.0, dim=2, seed=0)
    r = est.make("entropy-mi", entropy=entropy, device=device).estimate(x, y)
    assert abs(r.value - 1.0) < 0.1, r
    assert r.value == pytest.approx(r.diagnostics["h_x"] + r.diagnostics["h_y"] - r.diagnostics["h_xy"])


@pytest.mark.parametrize("levels", [2, 8, 32])
def test_class_mi_gives_ln_n_for_uniform_quantization(levels, device):
    # X ~ U[0,1]^2, Y = floor(N X_0): I = ln N exactly (Butakov et al. 2024, "no compression" test). Tolerance:
    # mutinfo's WKL tests, atol 0.1 + rtol 0.05 (papers.md section 4); the k-NN entropies of the thin strips X | y
    # are biased by the strips' edges, which grows with N.
    x, y = uniform_quantization(8000, levels, dim=2, seed=levels)
    r = est.make("class-mi", device=device).estimate(x, y)
    assert abs(r.value - math.log(levels)) < 0.1 + 0.05 * math.log(levels), r
    assert r.diagnostics["classes"] == levels


def test_class_mi_is_about_zero_for_independent_labels_and_refuses_continuous_ones():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3000, 3)), rng.integers(0, 4, 3000)
    assert abs(est.make("class-mi").estimate(x, y).value) < 0.05
    with pytest.raises(ValueError, match=r"classes with at most k=5 samples .* are the labels continuous"):
        est.make("class-mi").estimate(x, rng.standard_normal(3000))


def test_lossy_pca_recovers_mi_hidden_in_high_dimensions(device):
    # 2 informative dimensions embedded by a random rotation in 40: compression to 2 keeps the MI. The data on the
    # device of the run: PCA fits and projects there, and KSG follows its data.
    x, y = correlated_gaussian(4000, mi=1.5, dim=2, seed=1)
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))

    def pad(a):
        return torch.from_numpy(np.hstack([3 * a, 0.01 * rng.standard_normal((4000, 38))]) @ q).to(device)

    r = est.make("lossy", estimator="ksg", x_compressor=PCA(2), y_compressor=PCA(2)).estimate(pad(x), pad(y))
    assert torch.device(r.device).type == device.type
    assert abs(r.value - 1.5) < 0.15 and r.diagnostics["compressed_dims"] == [2, 2], r


def test_lossy_flattens_images_and_rejects_bad_compressors():
    x = np.random.default_rng(0).random((300, 8, 8))
    r = est.make("lossy", estimator="ksg", x_compressor=PCA(3), y_compressor=PCA(3)).estimate(x, x + 0.1)
    assert r.diagnostics["compressed_dims"] == [3, 3]
    with pytest.raises(ValueError, match="x_compressor must have fit"):
        est.make("lossy", x_compressor="pca").estimate(x, x)
    with pytest.raises(ValueError, match="name the estimator"):
        est.make("lossy", estimator="lossy").estimate(x, x)


def test_pca_errors_name_their_argument():
    with pytest.raises(ValueError, match="n_components must be at most the data's dimension 3, got 4"):
        PCA(4).fit(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="before fit"):
        PCA(2).transform(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="x has 2 columns; this PCA was fitted on 3"):
        PCA(2).fit(np.random.default_rng(0).random((10, 3))).transform(np.zeros((10, 2)))


def test_autoencoder_compresses_a_low_dimensional_manifold_and_keeps_the_mi():
    # 2-D latent rendered into 16x16 images; a 2-unit bottleneck then WKL on the codes: within the paper's synthetic
    # tolerance 0.3 + 0.1 I (papers.md section 1) at I = 2.
    from ibcore.estimators.lossy import Autoencoder
    from ibcore.tasks import image_pair

    x, y = image_pair(2000, 2.0, "bumps", 16, seed=0)
    r = est.make("lossy", x_compressor=Autoencoder(2, epochs=50), y_compressor=Autoencoder(2, epochs=50)).estimate(
        x, y
    )
    assert abs(r.value - 2.0) <= 0.3 + 0.1 * 2.0, r


def test_autoencoder_shapes_determinism_and_errors(device, on_device):
    from ibcore.estimators.lossy import Autoencoder

    rng = np.random.default_rng(0)
    for shape in [(60, 28, 28), (60, 1, 9, 7), (60, 5)]:
        x = rng.random(shape)
        before = torch.get_rng_state()
        a = Autoencoder(3, epochs=2, batch_size=16, device=device).fit(x)
        assert torch.equal(before, torch.get_rng_state())  # nothing drawn from the global generator
        codes = a.transform(x)
        on_device(a.model, codes)
        assert codes.shape == (60, 3) and bool((codes.abs() <= 1).all())  # tanh bottleneck
        # the same seed gives the same codes: bit for bit on the CPU; on CUDA to 1e-5, since the backward passes of
        # upsampling and some convolution algorithms add with atomics, in no fixed order (8 Adam steps at lr 1e-3)
        again = Autoencoder(3, epochs=2, batch_size=16, device=device).fit(x).transform(x)
        torch.testing.assert_close(codes, again, atol=0 if device.type == "cpu" else 1e-5, rtol=0)
    with pytest.raises(ValueError, match="before fit"):
        Autoencoder(2).transform(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="latent must be an integer >= 1, got 0"):
        Autoencoder(0).fit(np.zeros((10, 3)))


@pytest.mark.parametrize("name", ["entropy-mi", "class-mi"])
def test_entropy_based_estimators_validate_k_and_entropy(name):
    x, y = np.random.default_rng(0).standard_normal((50, 2)), np.repeat([0, 1], 25)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 'a'"):
        est.make(name, k="a").estimate(x, y)
    with pytest.raises(ValueError, match=r"entropy must be one of \['wkl', 'kl'\], got 'knn'"):
        est.make(name, entropy="knn").estimate(x, y)


@pytest.mark.parametrize("name", ["kl", "wkl"])
def test_whitening_makes_the_entropy_estimate_affine_invariant(name):
    # h(A x + b) = h(x) + ln |det A| (closed form); with whiten=True the estimate obeys it to rounding, and on a
    # badly scaled Gaussian it is the closed form within the tolerance of test_wkl_matches_the_gaussian_entropy.
    x = np.random.default_rng(0).standard_normal((3000, 3))
    a = np.array([[100.0, 0, 0], [3.0, 0.01, 0], [1.0, 2.0, 1.0]])
    h = est.make(name, whiten=True).estimate(x).value
    ha = est.make(name, whiten=True).estimate(x @ a.T + 5.0).value
    assert ha == pytest.approx(h + math.log(abs(np.linalg.det(a))), abs=1e-6)
    assert abs(ha - _gaussian_entropy(3) - math.log(abs(np.linalg.det(a)))) < 0.1 + 0.02 * 3
    with pytest.raises(ValueError, match="singular sample covariance"):
        est.make(name, whiten=True).estimate(np.hstack([x, x[:, :1]]))


def test_entropy_mi_is_scale_invariant_where_the_raw_estimate_is_not():
    # I(X; 1000 Y) = I(X; Y) = 1 (closed form): the whitened (or standardized) joint sees both parts, the raw one
    # only Y's scale
    x, y = correlated_gaussian(3000, mi=1.0, dim=2, seed=3)
    white = est.make("entropy-mi", entropy="kl").estimate(x, 1000 * y).value
    standardized = est.make("entropy-mi", entropy="kl", whiten=False).estimate(x, 1000 * y).value
    kl = est.make("kl", standardize=False)
    raw = kl.estimate(x).value + kl.estimate(1000 * y).value - kl.estimate(np.hstack([x, 1000 * y])).value
    assert abs(white - 1.0) < 0.1 and abs(standardized - 1.0) < 0.1 and abs(raw - 1.0) > 0.3, (white, standardized, raw)
    with pytest.raises(ValueError, match="whiten must be True or False, got 1"):
        est.make("entropy-mi", whiten=1).estimate(x, y)


def test_randomized_pca_finds_the_leading_axes_of_wide_data(device, on_device):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((700, 700)))
    x = (rng.standard_normal((800, 700)) / np.arange(1, 701)) @ q.T  # spectrum 1/i, random axes
    assert min(x.shape) > PCA.EXACT_MAX  # the randomized branch
    # on the device of the run: the random test matrix is drawn on the CPU, then moved (the same on every device)
    fitted = PCA(4).fit(torch.from_numpy(x).to(device))
    on_device(fitted.axes, fitted.mean, fitted.transform(torch.from_numpy(x[:5]).to(device)))
    axes = fitted.axes.cpu().numpy()
    exact = np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:4].T
    assert np.abs(axes.T @ exact).diagonal() == pytest.approx(np.ones(4), abs=1e-8)
    before = torch.get_rng_state()
    assert np.array_equal(PCA(4).fit(torch.from_numpy(x).to(device)).axes.cpu().numpy(), axes)  # seeded: reproducible
    assert torch.equal(before, torch.get_rng_state())


def test_lossy_hands_images_to_a_convolutional_autoencoder():
    from ibcore.estimators.lossy import Autoencoder
    from ibcore.tasks import image_pair

    x, y = image_pair(300, 1.0, "bumps", 16, seed=0)
    ae = Autoencoder(2, epochs=1, batch_size=64).fit(x)
    assert hasattr(ae.model, "shape")  # the convolutional autoencoder, fitted on images
    r = est.make("lossy", x_compressor=ae, y_compressor=ae).estimate(x, y)
    assert r.diagnostics["compressed_dims"] == [2, 2]
    assert r.diagnostics["compressors_fitted"] == ["given", "given"]


def test_lossy_never_refits_a_fitted_compressor_and_never_changes_an_unfitted_one():
    from ibcore.tasks import correlated_gaussian

    x, y = correlated_gaussian(600, mi=1.0, dim=3, seed=0)
    fitted = PCA(2).fit(x[:300])
    axes = fitted.axes.clone()
    fresh = PCA(2)
    r = est.make("lossy", estimator="ksg", x_compressor=fitted, y_compressor=fresh).estimate(x, y)
    assert r.diagnostics["compressors_fitted"] == ["given", "fitted"]
    assert torch.equal(fitted.axes, axes)  # used as given: not refitted on the data being estimated
    assert not fresh.is_fitted  # a copy was fitted; the caller's object is untouched
    want = est.make("ksg").estimate(fitted.transform(x), PCA(2).fit(y).transform(y)).value
    assert r.value == want


def test_sklearn_style_compressors_count_as_fitted_by_their_trailing_underscore():
    class Foreign:
        def fit(self, x):
            self.mean_ = np.asarray(x).mean(0)
            return self

        def transform(self, x):
            return np.asarray(x) - self.mean_

    assert not est.is_fitted(Foreign()) and est.is_fitted(Foreign().fit([[1.0], [2.0]]))


def test_autoencoder_training_checkpoints_and_reads_back_a_finished_run(tmp_path):
    # a paper-scale autoencoder trains for hours before the network it compresses for: a run stopped after it must
    # not train it again
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = est.Autoencoder(2, epochs=3, batch_size=16, seed=1).fit(x)
    ckpt = tmp_path / "ae" / "autoencoder.ckpt"
    saved = est.Autoencoder(2, epochs=3, batch_size=16, seed=1).fit(x, checkpoint=ckpt)
    assert ckpt.is_file() and torch.equal(plain.transform(x), saved.transform(x))
    again = est.Autoencoder(2, epochs=3, batch_size=16, seed=1)
    torch.manual_seed(123)  # the global generator is not what trains it
    again.fit(x, checkpoint=ckpt)
    assert torch.equal(again.transform(x), plain.transform(x)) and again.train_losses == plain.train_losses
    with pytest.raises(ValueError, match="checkpoint"):
        est.Autoencoder(3, epochs=3, batch_size=16, seed=1).fit(x, checkpoint=ckpt)


def test_noisy_codes_add_seeded_noise_of_the_stated_variance_after_the_compressor():
    from ibcore.estimators import NoisyCodes

    x = torch.randn(4000, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, 3:] = 0.0  # rank 3: PCA(4)'s fourth axis is constant, the noise is all it holds
    codes = NoisyCodes(PCA(4), 0.25, seed=3)
    assert not codes.is_fitted and codes.fit(x).is_fitted
    c = codes.transform(x)
    assert c[:, 3].var().item() == pytest.approx(0.25, rel=0.1)
    assert torch.equal(c, codes.transform(x))  # the same rows get the same noise
    clean = codes.compressor.transform(x)
    assert (c - clean)[:, :3].var().item() == pytest.approx(0.25, rel=0.1)
    with pytest.raises(ValueError, match="noise_variance must be a positive finite number, got 0"):
        NoisyCodes(PCA(2), 0).fit(x)


def test_lossy_mi_of_a_degenerate_layer_is_finite_only_with_noisy_codes():
    from ibcore.estimators import LossyMI, NoisyCodes

    g = torch.Generator().manual_seed(1)
    x = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    layer = torch.cat([x, torch.zeros(1000, 3, dtype=torch.float64)], dim=1)  # a layer with three dead units
    with pytest.raises(ValueError, match="constant columns"):
        LossyMI("ksg", x_compressor=PCA(4)).estimate(layer, x)
    r = LossyMI("ksg", x_compressor=NoisyCodes(PCA(4), 1e-3)).estimate(layer, x)
    assert math.isfinite(r.value) and r.value > 2.0  # x determines the layer up to the small noise: large MI
