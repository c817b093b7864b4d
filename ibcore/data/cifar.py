"""CIFAR-10 from the binary version of the original distribution, found locally and checked by md5; downloaded
only on request.

The binary version (``cifar-10-binary.tar.gz``, Krizhevsky 2009) holds ``data_batch_1.bin`` ... ``data_batch_5.bin``
(the 50,000 training images) and ``test_batch.bin`` (10,000), each a run of 3,073-byte records: one label byte 0-9,
then the 1,024 red, 1,024 green and 1,024 blue bytes of a 32 x 32 image in row-major order. It is read as it is,
without unpickling anything (the Python version of the data set is a pickle, which can run code).

Where the files are looked for: the folders of :mod:`ibcore.data._files` for ``cifar10`` (``root``,
``$IBCORE_DATA/cifar10``, ``$IBCORE_DATA``, ``../shared/data/cifar10``, the download folder). In each folder the
split's ``.bin`` files are taken from a ``cifar-10-batches-bin`` subfolder (as the archive unpacks), from the folder
itself, or else from the archive ``cifar-10-binary.tar.gz`` unopened (its members are read; nothing is extracted).
Every file read is checked against the md5 of the original distribution, and a mismatch is an error, never a
fall-through to another copy.

Nothing touches the network unless ``download=True``: then the archive (162 MB) is fetched into ``root`` if given,
else ``$IBCORE_DATA/cifar10`` if set, else ``~/.cache/ibcore/cifar10``, through a temporary file renamed into place
only after its md5 matched.

References:
    Krizhevsky (2009). Learning multiple layers of features from tiny images. Technical report, University of
    Toronto. https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import http.client
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ._files import check_md5, download_dir, fetch, search_dirs

__all__ = ["load_cifar10", "cifar10_tensors", "CIFAR10_SPLITS", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD"]

CIFAR10_SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Per-channel mean and standard deviation of the training pixels scaled to [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
SUBFOLDER = "cifar-10-batches-bin"
# md5 of the archive (the data set's page) and of each file it holds
_ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_PER_FILE = 10000  # records in each file
_SIDE, _CHANNELS = 32, 3
_RECORD = 1 + _CHANNELS * _SIDE * _SIDE

_PACKAGE_PARENT = Path(__file__).resolve().parents[2]
_DOWNLOAD_TIMEOUT_S = 120.0
_urlopen = urllib.request.urlopen  # looked up at call time, so that tests can serve files without a network


def _check_split(split: str) -> None:
    if split not in CIFAR10_SPLITS:
        raise ValueError(f"split must be one of {CIFAR10_SPLITS}, got split={split!r}")


def _locate(split: str, dirs: list[Path]):
    """``("files", [paths])`` or ``("archive", path)`` from the first folder that holds the split, else None."""
    for folder in dirs:
        for place in (folder / SUBFOLDER, folder):
            paths = [place / name for name in _FILES[split]]
            if all(p.is_file() for p in paths):
                return "files", paths
        if (folder / ARCHIVE).is_file():
            return "archive", folder / ARCHIVE
    return None


def _read_files(paths: list[Path]) -> list[tuple[str, bytes]]:
    out = []
    for path in paths:
        raw = path.read_bytes()
        check_md5(raw, _MD5[path.name], path, "CIFAR-10 file")
        out.append((str(path), raw))
    return out


def _read_archive(path: Path, names) -> list[tuple[str, bytes]]:
    raw = path.read_bytes()
    check_md5(raw, _ARCHIVE_MD5, path, "CIFAR-10 binary archive")
    out = []
    with tarfile.open(path, "r:gz") as tar:
        for name in names:
            member = f"{SUBFOLDER}/{name}"
            try:
                info = tar.getmember(member)
            except KeyError:
                raise ValueError(f"{path}: the archive has no member {member}") from None
            if not info.isfile():
                raise ValueError(f"{path}: {member} is not a regular file")
            data = tar.extractfile(info).read()
            check_md5(data, _MD5[name], f"{path}:{member}", "CIFAR-10 file")
            out.append((f"{path}:{member}", data))
    return out


def _parse(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: ``(images (n, 3, 32, 32) uint8, labels (n,) uint8)``; ``source`` names it in errors."""
    if len(data) != _PER_FILE * _RECORD:
        raise ValueError(f"{source}: malformed CIFAR-10 batch, {len(data)} bytes where {_PER_FILE} records of "
                         f"{_RECORD} bytes make {_PER_FILE * _RECORD}")  # fmt: skip
    rows = np.frombuffer(data, dtype=np.uint8).reshape(_PER_FILE, _RECORD)
    labels = rows[:, 0].copy()
    if labels.max() > 9:
        raise ValueError(f"{source}: labels must be 0-9, found {int(labels.max())}")
    return rows[:, 1:].reshape(_PER_FILE, _CHANNELS, _SIDE, _SIDE).copy(), labels


def load_cifar10(split: str = "train", *, root=None, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The CIFAR-10 images and labels of one split, read from the binary version of the original distribution.

    Arguments:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        root: A folder to look in first, and the download folder when ``download`` is true.
        download: Fetch the archive from the data set's page when no local copy is found.

    Returns:
        ``(images, labels)``: a ``uint8`` tensor ``(N, 3, 32, 32)`` (channels red, green, blue; values 0-255) and an
        ``int64`` tensor ``(N,)`` of classes 0-9 (:data:`CIFAR10_CLASSES`), on the CPU, in the files' order.

    Raises:
        ValueError: Unknown ``split``; a file whose md5 is not the original one; a malformed batch.
        FileNotFoundError: No folder holds the split and ``download`` is false (the message lists the folders).
        RuntimeError: ``download`` is true and the download failed or its md5 did not match.
    """
    _check_split(split)
    dirs = search_dirs(root, "cifar10", _PACKAGE_PARENT)
    found = _locate(split, dirs)
    if found is None and download:
        target = download_dir(root, "cifar10")
        target.mkdir(parents=True, exist_ok=True)
        try:
            fetch(CIFAR10_URL, target / ARCHIVE, _ARCHIVE_MD5, _urlopen, _DOWNLOAD_TIMEOUT_S)
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, HTTPError are OSErrors
            raise RuntimeError(f"could not download {CIFAR10_URL}: {err}") from err
        found = _locate(split, [target])
    if found is None:
        places = "\n  ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"CIFAR-10 {split} files ({', '.join(_FILES[split])}, in {SUBFOLDER}/ or not, or the archive {ARCHIVE}) "
            f"not found in any of:\n  {places}\nPut them in one of these folders, point the IBCORE_DATA environment "
            "variable at a folder holding them (or a 'cifar10' subfolder), or pass download=True to fetch the "
            f"archive (162 MB, into {download_dir(root, 'cifar10')})."
        )
    kind, where = found
    batches = _read_files(where) if kind == "files" else _read_archive(where, _FILES[split])
    parsed = [_parse(data, source) for source, data in batches]
    images = np.concatenate([p[0] for p in parsed])
    labels = np.concatenate([p[1] for p in parsed]).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def cifar10_tensors(
    split: str = "train",
    *,
    root=None,
    download: bool = False,
    device=None,
    dtype: torch.dtype = torch.float32,
    flatten: bool = False,
    standardize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ready for a network: pixels scaled to [0, 1] as floats, labels as ``int64``.

    Arguments:
        split, root, download: As in :func:`load_cifar10`.
        device: Where the tensors should live (``None``: the CPU).
        dtype: A floating dtype for the images.
        flatten: Images as ``(N, 3072)`` rows (true) or ``(N, 3, 32, 32)`` (false, for convolutional networks).
        standardize: Then subtract each channel's training mean and divide by its standard deviation
            (:data:`CIFAR10_MEAN`, :data:`CIFAR10_STD`).
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got dtype={dtype!r}")
    images, labels = load_cifar10(split, root=root, download=download)
    x = images.to(device=device).to(dtype) / 255.0  # scale after the move: uint8 is a quarter of the size
    if standardize:
        mean = torch.tensor(CIFAR10_MEAN, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    if flatten:
        x = x.reshape(len(x), -1)
    return x, labels.to(device=device)
