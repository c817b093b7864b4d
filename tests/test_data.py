"""Tests of ibcore.data: the regenerated SZT data set and its splits, and the MNIST loader.

The MNIST tests read the project's offline copy in ``../shared/data/mnist`` and are skipped when it is absent.
No test touches the network: the download test serves the local files through a fake URL opener.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from ibcore.data import mnist as mnist_module
from ibcore.data import szt as szt_module
from ibcore.data import (
    SZT_H_X_NATS,
    SZT_MI_BITS,
    SZT_MI_NATS,
    SZT_N_INPUTS,
    load_mnist,
    mnist_tensors,
    szt_dataset,
    szt_labels,
    szt_score,
    szt_split,
)

# --------------------------------------------------------------------------------------------------------------------
# SZT


def test_szt_shapes_and_dtypes():
    data = szt_dataset()
    assert data.x.shape == (4096, 12) and data.x.dtype == torch.float32
    assert data.y.shape == (4096,) and data.y.dtype == torch.int64
    assert data.n_inputs == SZT_N_INPUTS == 4096 and data.n_bits == 12
    assert set(data.x.unique().tolist()) == {0.0, 1.0} and set(data.y.unique().tolist()) == {0, 1}


def test_szt_rows_are_binary_msb_first():
    x = szt_dataset().x.to(torch.int64)
    powers = 2 ** torch.arange(11, -1, -1)
    assert torch.equal(x @ powers, torch.arange(4096))
    assert x[1].tolist() == [0] * 11 + [1]
    assert x[2048].tolist() == [1] + [0] * 11


def test_szt_checksums():
    y = szt_dataset().y.numpy()
    assert hashlib.md5(np.packbits(y.astype(np.uint8)).tobytes()).hexdigest() == "4f5dc3cd96328e812f4dc21ea159eaaf"
    assert int(y.sum()) == 2118
    assert int(np.flatnonzero(y).sum()) == 5_241_600


def test_szt_positives_per_bit_count():
    data = szt_dataset()
    w = data.x.sum(dim=1).to(torch.int64)
    expected = {5: (60, 792), 6: (532, 924), 7: (732, 792)}
    for k in range(13):
        in_k = w == k
        n_pos, n_all = int(data.y[in_k].sum()), int(in_k.sum())
        assert n_all == math.comb(12, k)
        if k <= 4:
            assert n_pos == 0, k
        elif k >= 8:
            assert n_pos == n_all, k
        else:
            assert (n_pos, n_all) == expected[k]


def test_szt_information_values():
    data = szt_dataset()
    assert data.h_y / math.log(2) == pytest.approx(0.99916, abs=5e-6)
    assert data.mi_xy == pytest.approx(0.69256, abs=5e-6)
    assert data.mi_xy == pytest.approx(SZT_MI_NATS, abs=1e-12)
    assert SZT_MI_BITS == pytest.approx(0.99916, abs=5e-6)
    assert data.h_x == pytest.approx(math.log(4096), abs=1e-12)
    assert SZT_H_X_NATS == pytest.approx(math.log(4096), abs=1e-15)


def test_szt_bit_count_baseline_is_87_5_percent():
    data = szt_dataset()
    guess = (data.x.sum(dim=1) >= 6).to(torch.int64)
    assert float((guess == data.y).double().mean()) == pytest.approx(0.875, abs=5e-4)


def test_szt_score_and_labels_agree_with_data():
    data = szt_dataset()
    assert torch.equal(szt_labels(data.x), data.y)
    assert torch.equal((szt_score(data.x) > 0).to(torch.int64), data.y)
    with pytest.raises(ValueError, match="shape"):
        szt_labels(torch.zeros(3, 11))
    with pytest.raises(ValueError, match="0 and 1"):
        szt_labels(torch.full((2, 12), 0.5))


def test_szt_dataset_returns_fresh_tensors():
    a = szt_dataset()
    a.x.zero_()
    assert szt_dataset().x.sum() > 0


def test_szt_regeneration_failure_raises(monkeypatch):
    monkeypatch.setattr(szt_module, "_LABELS_MD5", "0" * 32)
    szt_module._szt_arrays.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="md5"):
            szt_dataset()
    finally:
        monkeypatch.undo()
        szt_module._szt_arrays.cache_clear()
    assert szt_dataset().n_positives == 2118


def test_szt_to_device_and_dtype():
    data = szt_dataset().to("cpu", torch.float64)
    assert data.x.dtype == torch.float64 and data.y.dtype == torch.int64


@pytest.mark.parametrize("kind", ["stratified", "idnns"])
def test_szt_split_disjoint_and_covering(kind):
    train, test = szt_split(kind)
    assert train.dtype == test.dtype == torch.int64
    both = torch.cat([train, test])
    assert len(both) == 4096 and torch.equal(both.sort().values, torch.arange(4096))


def test_szt_split_stratified_proportions():
    y = szt_dataset().y
    for fraction in (0.2, 0.1, 0.37):
        train, test = szt_split("stratified", test_fraction=fraction)
        assert len(test) == math.ceil(fraction * 4096)
        for c in (0, 1):
            n_c = int((y == c).sum())
            assert abs(int((y[test] == c).sum()) - fraction * n_c) <= 1.0, (fraction, c)


def test_szt_split_seeds():
    a_train, a_test = szt_split(seed=1000)
    b_train, b_test = szt_split(seed=1000)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    c_train, c_test = szt_split(seed=1001)
    assert not torch.equal(a_test, c_test)


def test_szt_split_idnns_pitfall():
    y = szt_dataset().y.double()
    train, test = szt_split("idnns")
    assert (len(train), len(test)) == (3277, 819)
    assert torch.equal(train, torch.arange(3277))
    assert round(float(y[train].mean()), 3) == 0.437
    assert round(float(y[test].mean()), 3) == 0.836


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kind": "random"}, "kind"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.2}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"test_fraction": "0.2"}, "test_fraction"),
        ({"kind": "idnns", "test_fraction": 2.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_szt_split_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        szt_split(**kwargs)
    assert f"{name}={kwargs[name]!r}" in str(info.value)


# --------------------------------------------------------------------------------------------------------------------
# MNIST

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
GZ_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
TEST_NAMES = GZ_NAMES[2:]

needs_mnist = pytest.mark.skipif(
    not all((SHARED_MNIST / n).is_file() for n in GZ_NAMES),
    reason=f"the offline MNIST copy is not at {SHARED_MNIST} (see shared/data/mnist/README.md)",
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_PIXEL_SUM = 1_567_298_545
TEST_PIXEL_SUM = 264_923_200


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test, unless the test installs its own fake opener."""

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"network access attempted: {url}")

    monkeypatch.setattr(mnist_module, "_urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No default place holds MNIST: no IBCORE_DATA, an empty cache, a cwd and repository root without shared/."""
    monkeypatch.delenv("IBCORE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "a" / "repo").mkdir(parents=True)
    (tmp_path / "b" / "cwd").mkdir(parents=True)
    monkeypatch.setattr(mnist_module, "_PACKAGE_PARENT", tmp_path / "a" / "repo")
    monkeypatch.chdir(tmp_path / "b" / "cwd")
    return tmp_path


@needs_mnist
def test_mnist_train_default_search(monkeypatch):
    monkeypatch.delenv("IBCORE_DATA", raising=False)
    images, labels = load_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert int(images.sum()) == TRAIN_PIXEL_SUM


@needs_mnist
def test_mnist_test_default_search(monkeypatch):
    monkeypatch.delenv("IBCORE_DATA", raising=False)
    images, labels = load_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert torch.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert int(images.sum()) == TEST_PIXEL_SUM


@needs_mnist
@pytest.mark.parametrize("subfolder", [True, False])
def test_mnist_ibcore_data_override(isolated, monkeypatch, subfolder):
    base = isolated / "data"
    folder = base / "mnist" if subfolder else base
    folder.mkdir(parents=True)
    for name in TEST_NAMES:
        (folder / name).symlink_to(SHARED_MNIST / name)
    monkeypatch.setenv("IBCORE_DATA", str(base))
    images, labels = load_mnist("test")
    assert torch.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    with pytest.raises(FileNotFoundError):  # only the test split was provided
        load_mnist("train")


@needs_mnist
def test_mnist_uncompressed_files(isolated):
    folder = isolated / "raw"
    folder.mkdir()
    for name in TEST_NAMES:
        (folder / name[: -len(".gz")]).write_bytes(gzip.decompress((SHARED_MNIST / name).read_bytes()))
    images, labels = load_mnist("test", root=folder)
    assert int(images.sum()) == TEST_PIXEL_SUM and len(labels) == 10000


@needs_mnist
def test_mnist_root_comes_first(isolated, monkeypatch):
    # A corrupt copy in root must be reported even though a good one exists in IBCORE_DATA.
    good = isolated / "good"
    good.mkdir()
    for name in TEST_NAMES:
        (good / name).symlink_to(SHARED_MNIST / name)
    monkeypatch.setenv("IBCORE_DATA", str(good))
    bad = isolated / "bad"
    bad.mkdir()
    shutil.copy(SHARED_MNIST / TEST_NAMES[0], bad / TEST_NAMES[0])
    (bad / TEST_NAMES[1]).write_bytes(b"not mnist")
    with pytest.raises(ValueError, match="md5"):
        load_mnist("test", root=bad)


@needs_mnist
@pytest.mark.parametrize("compressed", [True, False])
def test_mnist_corrupted_copy(isolated, compressed):
    folder = isolated / "corrupt"
    folder.mkdir()
    for name in TEST_NAMES:
        data = (SHARED_MNIST / name).read_bytes()
        if not compressed:
            data = gzip.decompress(data)
            name = name[: -len(".gz")]
        if "images" in name:
            data = bytearray(data)
            data[-1] ^= 0xFF
            data = bytes(data)
        (folder / name).write_bytes(data)
    with pytest.raises(ValueError, match="md5") as info:
        load_mnist("test", root=folder)
    assert "t10k-images-idx3-ubyte" in str(info.value)
    assert ("9fb629c4189551a2d022fa330f9573f3" if compressed else "2646ac647ad5339dbf082846283269ea") in str(info.value)


def test_mnist_missing_files_lists_places(isolated, monkeypatch):
    root = isolated / "empty"
    root.mkdir()
    env = isolated / "env"
    monkeypatch.setenv("IBCORE_DATA", str(env))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("test", root=root)
    message = str(info.value)
    places = [
        root,
        env / "mnist",
        env,
        isolated / "a" / "shared" / "data" / "mnist",
        isolated / "b" / "shared" / "data" / "mnist",
    ]
    for place in places:
        assert str(place) in message
    assert "IBCORE_DATA" in message and "download=True" in message


def test_mnist_cache_dir_is_searched_without_ibcore_data(isolated):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("train")
    assert str(isolated / "cache" / "ibcore" / "mnist") in str(info.value)


def test_mnist_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")
    with pytest.raises(ValueError, match="split"):
        mnist_tensors("t10k")


def test_idx_parser_rejects_malformed_files():
    parse = mnist_module._parse_idx
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    assert parse(good, 1, "f").tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="magic"):
        parse(bytes([0, 0, 9, 1]) + good[4:], 1, "f")
    with pytest.raises(ValueError, match="malformed"):
        parse(good, 3, "f")  # claims 1 dimension, read as 3: shorter than a 3-D header
    with pytest.raises(ValueError, match="malformed"):
        parse(good[:-1], 1, "f")
    with pytest.raises(ValueError, match="malformed"):
        parse(good[:5], 1, "f")


class _FakeMirrors:
    """Serves the local MNIST files for URLs on the good mirror; the other mirrors fail or send garbage."""

    def __init__(self, good: str, garbage: str | None = None):
        self.good, self.garbage, self.requests = good, garbage, []

    def __call__(self, url, timeout=None):
        self.requests.append(url)
        name = url.rsplit("/", 1)[-1]
        if self.garbage and url.startswith(self.garbage):
            return io.BytesIO(b"<html>not found</html>")
        if url.startswith(self.good):
            return io.BytesIO((SHARED_MNIST / name).read_bytes())
        raise urllib.error.URLError("unreachable (fake)")


@needs_mnist
def test_mnist_download_with_fake_opener(isolated, monkeypatch):
    first, second = mnist_module.MNIST_MIRRORS[:2]
    fake = _FakeMirrors(good=second)
    monkeypatch.setattr(mnist_module, "_urlopen", fake)
    root = isolated / "downloads"
    with pytest.raises(FileNotFoundError):
        load_mnist("test", root=root)
    assert fake.requests == []  # no network without download=True

    images, labels = load_mnist("test", root=root, download=True)
    assert torch.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert int(images.sum()) == TEST_PIXEL_SUM
    assert sorted(p.name for p in root.iterdir()) == sorted(TEST_NAMES)  # no temporary files left
    assert fake.requests == [m + n for n in TEST_NAMES for m in (first, second)]

    fake.requests.clear()
    load_mnist("test", root=root, download=True)  # already there: nothing fetched
    assert fake.requests == []


@needs_mnist
def test_mnist_download_rejects_bad_md5(isolated, monkeypatch):
    first, second = mnist_module.MNIST_MIRRORS[:2]
    monkeypatch.setattr(mnist_module, "_urlopen", _FakeMirrors(good=second, garbage=first))
    root = isolated / "downloads"
    load_mnist("test", root=root, download=True)  # the garbage from the first mirror is dropped
    assert sorted(p.name for p in root.iterdir()) == sorted(TEST_NAMES)

    monkeypatch.setattr(mnist_module, "_urlopen", _FakeMirrors(good="nowhere", garbage=first))
    with pytest.raises(RuntimeError, match="md5"):
        load_mnist("train", root=isolated / "other", download=True)
    assert list((isolated / "other").iterdir()) == []


@needs_mnist
def test_mnist_download_goes_to_user_cache(isolated, monkeypatch):
    monkeypatch.setattr(mnist_module, "_urlopen", _FakeMirrors(good=mnist_module.MNIST_MIRRORS[0]))
    load_mnist("test", download=True)
    cache = isolated / "cache" / "ibcore" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(TEST_NAMES)
    monkeypatch.setattr(mnist_module, "_urlopen", _FakeMirrors(good="nowhere"))
    load_mnist("test")  # found in the cache without downloading


@needs_mnist
@pytest.mark.parametrize("flatten, shape", [(True, (10000, 784)), (False, (10000, 1, 28, 28))])
def test_mnist_tensors(flatten, shape):
    x, y = mnist_tensors("test", flatten=flatten, dtype=torch.float64)
    assert x.shape == shape and x.dtype == torch.float64 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert float(x.sum()) * 255 == pytest.approx(TEST_PIXEL_SUM, rel=1e-12)


def test_mnist_tensors_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        mnist_tensors("test", dtype=torch.int64)

