"""The CIFAR-10 loader on small files in the format of the original binary version, made here.

The real files hold 10,000 records each; these hold a few, so the tests shrink the record count and put the fake
files' md5s in the table the loader checks against. Everything else -- where the files are looked for, the archive
read unopened, the md5 checks, the record layout, the download -- is the loader's own code.
"""
import hashlib
import io
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from ibcore.data import cifar as cifar_module
from ibcore.data import cifar10_tensors, load_cifar10

PER_FILE = 3
NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def _batch(index: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A batch of PER_FILE records: labels and pixels that say which file and record they come from."""
    rng = np.random.default_rng(index)
    images = rng.integers(0, 256, size=(PER_FILE, 3, 32, 32), dtype=np.uint8)
    labels = np.array([(index + r) % 10 for r in range(PER_FILE)], dtype=np.uint8)
    rows = np.concatenate([labels[:, None], images.reshape(PER_FILE, -1)], axis=1)
    return rows.tobytes(), images, labels


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """No default place holds CIFAR-10, no network, and the md5 table knows the fake files made here."""
    monkeypatch.delenv("IBCORE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "repo").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setattr(cifar_module, "_PACKAGE_PARENT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "cwd")

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"network access attempted: {url}")

    monkeypatch.setattr(cifar_module, "_urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(cifar_module, "_PER_FILE", PER_FILE)
    files = {name: _batch(i) for i, name in enumerate(NAMES)}
    monkeypatch.setattr(cifar_module, "_MD5", {n: hashlib.md5(b[0]).hexdigest() for n, b in files.items()})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (data, _, _) in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    monkeypatch.setattr(cifar_module, "_ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    return tmp_path, files, archive


def _write(folder, files, names=NAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(files[name][0])


def _expected(files, split):
    names = NAMES[:5] if split == "train" else NAMES[5:]
    return np.concatenate([files[n][1] for n in names]), np.concatenate([files[n][2] for n in names])


@pytest.mark.parametrize("split", ["train", "test"])
def test_reads_the_unpacked_folder_record_by_record(fake, split):
    tmp, files, _ = fake
    _write(tmp / "data" / "cifar-10-batches-bin", files)
    images, labels = load_cifar10(split, root=tmp / "data")
    want_images, want_labels = _expected(files, split)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (len(want_labels), 3, 32, 32)
    assert np.array_equal(images.numpy(), want_images) and np.array_equal(labels.numpy(), want_labels)


def test_channel_layout_is_red_green_blue_planes(fake):
    tmp, files, _ = fake
    record = np.zeros(3073, dtype=np.uint8)
    record[0] = 7
    record[1 + 0 * 1024 + 2 * 32 + 5] = 11  # red, row 2, column 5
    record[1 + 2 * 1024 + 31 * 32 + 0] = 22  # blue, row 31, column 0
    data = np.tile(record, PER_FILE).tobytes()
    cifar_module._MD5["test_batch.bin"] = hashlib.md5(data).hexdigest()
    (tmp / "d").mkdir()
    (tmp / "d" / "test_batch.bin").write_bytes(data)
    images, labels = load_cifar10("test", root=tmp / "d")
    assert labels.tolist() == [7] * PER_FILE
    assert int(images[0, 0, 2, 5]) == 11 and int(images[0, 2, 31, 0]) == 22 and int(images.sum()) == 33 * PER_FILE


def test_reads_the_archive_without_unpacking_it(fake):
    tmp, files, archive = fake
    folder = tmp / "shared" / "data" / "cifar10"
    folder.mkdir(parents=True)
    (folder / "cifar-10-binary.tar.gz").write_bytes(archive)
    images, labels = load_cifar10("train", root=folder)
    assert np.array_equal(labels.numpy(), _expected(files, "train")[1])
    assert [p.name for p in folder.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_ibcore_data_and_the_shared_copy_are_searched(fake, monkeypatch):
    tmp, files, _ = fake
    _write(tmp / "env" / "cifar10", files)
    monkeypatch.setenv("IBCORE_DATA", str(tmp / "env"))
    assert len(load_cifar10("test")[1]) == PER_FILE
    monkeypatch.delenv("IBCORE_DATA")
    _write(tmp / "shared" / "data" / "cifar10", files)  # ../shared/data/cifar10 beside the repository
    assert len(load_cifar10("train")[1]) == 5 * PER_FILE


def test_a_corrupt_copy_is_an_error_not_a_fall_through(fake, monkeypatch):
    tmp, files, archive = fake
    _write(tmp / "first", files)
    (tmp / "first" / "data_batch_3.bin").write_bytes(b"\x01" + files["data_batch_3.bin"][0][1:])
    _write(tmp / "env" / "cifar10", files)  # a good copy further down the search
    monkeypatch.setenv("IBCORE_DATA", str(tmp / "env"))
    with pytest.raises(ValueError, match=r"data_batch_3\.bin: md5 .* does not match"):
        load_cifar10("train", root=tmp / "first")
    (tmp / "arch").mkdir()
    middle = len(archive) // 2
    flipped = archive[:middle] + bytes([archive[middle] ^ 1]) + archive[middle + 1 :]
    (tmp / "arch" / "cifar-10-binary.tar.gz").write_bytes(flipped)
    with pytest.raises(ValueError, match="archive"):
        load_cifar10("test", root=tmp / "arch")


@pytest.mark.parametrize("problem, match", [("short", "malformed CIFAR-10 batch"), ("label", "labels must be 0-9")])
def test_malformed_batches_are_rejected(fake, problem, match):
    tmp, files, _ = fake
    data = files["test_batch.bin"][0]
    data = data[:-1] if problem == "short" else b"\x0a" + data[1:]
    cifar_module._MD5["test_batch.bin"] = hashlib.md5(data).hexdigest()
    (tmp / "d").mkdir()
    (tmp / "d" / "test_batch.bin").write_bytes(data)
    with pytest.raises(ValueError, match=match):
        load_cifar10("test", root=tmp / "d")


def test_missing_files_list_the_places_and_touch_no_network(fake):
    tmp, _, _ = fake
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        load_cifar10("train", root=tmp / "nowhere")
    assert str(tmp / "nowhere") in str(err.value) and str(tmp / "cache" / "ibcore" / "cifar10") in str(err.value)


class _Server:
    def __init__(self, body):
        self.body, self.requests = body, []

    def __call__(self, url, timeout=None):
        self.requests.append(url)
        if self.body is None:
            raise urllib.error.URLError("unreachable (fake)")
        return io.BytesIO(self.body)


def test_download_lands_the_archive_after_its_md5(fake, monkeypatch):
    tmp, files, archive = fake
    server = _Server(archive)
    monkeypatch.setattr(cifar_module, "_urlopen", server)
    images, labels = load_cifar10("test", download=True)  # into the user cache
    cache = tmp / "cache" / "ibcore" / "cifar10"
    assert [p.name for p in cache.iterdir()] == ["cifar-10-binary.tar.gz"]
    assert server.requests == [cifar_module.CIFAR10_URL]
    assert np.array_equal(labels.numpy(), _expected(files, "test")[1])
    load_cifar10("train", download=True)  # found in the cache: nothing fetched
    assert len(server.requests) == 1

    (cache / "cifar-10-binary.tar.gz").unlink()
    monkeypatch.setattr(cifar_module, "_urlopen", _Server(archive[:100]))
    with pytest.raises(RuntimeError, match="md5"):
        load_cifar10("test", root=tmp / "other", download=True)
    assert list((tmp / "other").iterdir()) == []  # no partial file left


def test_tensors_scale_standardise_and_flatten(fake):
    tmp, files, _ = fake
    _write(tmp / "d", files)
    x, y = cifar10_tensors("test", root=tmp / "d")
    images, _ = _expected(files, "test")
    assert x.shape == (PER_FILE, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.from_numpy(images).float() / 255)
    z, _ = cifar10_tensors("test", root=tmp / "d", standardize=True, flatten=True, dtype=torch.float64)
    mean, std = np.array(cifar_module.CIFAR10_MEAN), np.array(cifar_module.CIFAR10_STD)
    want = (images / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    assert z.shape == (PER_FILE, 3072) and np.allclose(z.numpy(), want.reshape(PER_FILE, -1))


@pytest.mark.parametrize("kwargs, name", [({"split": "valid"}, "split"), ({"dtype": torch.int64}, "dtype")])
def test_bad_arguments_are_named(fake, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cifar10_tensors(**kwargs)
