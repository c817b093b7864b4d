"""MNIST from the four original IDX files, found locally and checked by md5; downloaded only on request.

Where the files are looked for, in this order (the first folder holding both files of the split wins):

1. ``root``, when given;
2. ``$IBCORE_DATA/mnist`` and then ``$IBCORE_DATA`` itself, when the ``IBCORE_DATA`` environment variable is set;
3. ``../shared/data/mnist`` relative to the repository root (the folder holding the ``ibcore`` package), then
   relative to the current working directory (the project's offline copy);
4. the download folder (below).

Each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``); the uncompressed one
is read when both are there. Every file read is checked against the md5 of the original distribution, and a mismatch
is an error, never a fall-through to another copy.

Nothing touches the network unless ``download=True``. Then the missing ``.gz`` files of the split are fetched into
``root`` if given, else ``$IBCORE_DATA/mnist`` if set, else the user cache ``$XDG_CACHE_HOME/ibcore/mnist``
(``~/.cache/ibcore/mnist`` by default), which the search above then finds without ``download``. Each download
goes to a temporary file in that folder, is md5-checked, and only then renamed into place (``os.replace``), so an
interrupted or corrupted download never leaves a file behind.

References:
    LeCun, Cortes & Burges, "The MNIST database of handwritten digits". http://yann.lecun.com/exdb/mnist/
"""

from __future__ import annotations

import gzip
import http.client
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ._files import check_md5, download_dir, fetch, search_dirs

__all__ = ["load_mnist", "mnist_tensors", "MNIST_SPLITS", "MNIST_MIRRORS", "default_download_dir", "MNIST_MEAN", "MNIST_STD"]

MNIST_SPLITS = ("train", "test")

#: Mean and standard deviation of the training pixels scaled to [0, 1] (the torchvision convention).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# torchvision's mirror first: the original site has been intermittently unreachable or refusing scripted requests.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_DOWNLOAD_TIMEOUT_S = 60.0

# name (without .gz) -> (md5 of the .gz file, md5 of the uncompressed file); see shared/data/mnist/README.md.
_MD5 = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_N_EXAMPLES = {"train": 60000, "test": 10000}
_SIDE = 28

# IDX header: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08
_IMAGES_NDIM = 3
_LABELS_NDIM = 1

# The repository root: the folder holding the ``ibcore`` package (ibcore/data/mnist.py -> parents[2]).
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]

# Looked up at call time so tests can serve files without a network.
_urlopen = urllib.request.urlopen


def _check_split(split: str) -> None:
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be one of {MNIST_SPLITS}, got split={split!r}")


def default_download_dir(root=None) -> Path:
    """Where ``download=True`` puts the files: ``root``, else ``$IBCORE_DATA/mnist``, else the user cache folder."""
    return download_dir(root, "mnist")


def _search_dirs(root) -> list[Path]:
    return search_dirs(root, "mnist", _PACKAGE_PARENT)


def _find_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(split: str, dirs: list[Path]) -> tuple[Path, Path] | None:
    for folder in dirs:
        found = [_find_in(folder, name) for name in _FILES[split]]
        if all(found):
            return found[0], found[1]
    return None


def _read_checked(path: Path) -> bytes:
    """The uncompressed bytes of ``path`` after checking the md5 of the file as stored."""
    raw = path.read_bytes()
    gzipped = path.name.endswith(".gz")
    name = path.name[: -len(".gz")] if gzipped else path.name
    check_md5(raw, _MD5[name][0 if gzipped else 1], path, "MNIST file")
    return gzip.decompress(raw) if gzipped else raw


def _parse_idx(data: bytes, ndim: int, source: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions; ``source`` names it in errors."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: malformed IDX file, {len(data)} bytes is shorter than its {header}-byte header")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or data[3] != ndim:
        raise ValueError(
            f"{source}: malformed IDX file, magic number {data[:4].hex()} "
            f"(expected 0000{_IDX_UBYTE:02x}{ndim:02x}: unsigned bytes, {ndim} dimension(s))"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_len:
        raise ValueError(
            f"{source}: malformed IDX file, dimensions {dims} need {expected_len} bytes but the file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _download(split: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in _FILES[split]:
        if _find_in(folder, name) is not None:
            continue  # checked by md5 when it is read
        filename = f"{name}.gz"
        expected = _MD5[name][0]
        failures = []
        for mirror in MNIST_MIRRORS:
            url = mirror + filename
            try:
                fetch(url, folder / filename, expected, _urlopen, _DOWNLOAD_TIMEOUT_S)
                break
            except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, HTTPError are OSErrors
                failures.append(f"{url}: {err}")
        else:
            raise RuntimeError(f"could not download {filename} from any mirror:\n  " + "\n  ".join(failures))


def load_mnist(split: str = "train", *, root=None, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST images and labels of one split, read from the original IDX files.

    Arguments:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000).
        root: A folder to look in first, and the download folder when ``download`` is true.
        download: Fetch the split's files from the public mirrors when no local copy is found.

    Returns:
        ``(images, labels)``: a ``uint8`` tensor ``(N, 28, 28)`` with pixel values 0-255 and an ``int64`` tensor
        ``(N,)`` of digits 0-9, on the CPU.

    Raises:
        ValueError: Unknown ``split``; a file whose md5 is not the original one; a malformed IDX file.
        FileNotFoundError: No folder holds the split's files and ``download`` is false.
        RuntimeError: ``download`` is true and no mirror served a file with the right md5.

    Example:
        >>> images, labels = load_mnist("test")
        >>> tuple(images.shape), images.dtype, int(labels[0])
        ((10000, 28, 28), torch.uint8, 7)
    """
    _check_split(split)
    dirs = _search_dirs(root)
    found = _locate(split, dirs)
    if found is None and download:
        target = default_download_dir(root)
        _download(split, target)
        found = _locate(split, [target])
    if found is None:
        names = " and ".join(f"{n}[.gz]" for n in _FILES[split])
        places = "\n  ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"MNIST {split} files ({names}) not found in any of:\n  {places}\n"
            "Put the IDX files in one of these folders, point the IBCORE_DATA environment variable at a folder "
            "holding them (or a 'mnist' subfolder), or pass download=True to fetch them "
            f"(into {default_download_dir(root)})."
        )

    images_path, labels_path = found
    images = _parse_idx(_read_checked(images_path), _IMAGES_NDIM, str(images_path))
    labels = _parse_idx(_read_checked(labels_path), _LABELS_NDIM, str(labels_path))
    n = _N_EXAMPLES[split]
    if images.shape != (n, _SIDE, _SIDE) or labels.shape != (n,):
        raise ValueError(
            f"MNIST {split}: expected images (N, 28, 28) and labels (N,) with N={n}, got {images.shape} "
            f"from {images_path} and {labels.shape} from {labels_path}"
        )
    if labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be digits 0-9, found {int(labels.max())}")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def mnist_tensors(
    split: str = "train",
    *,
    root=None,
    download: bool = False,
    device=None,
    dtype: torch.dtype = torch.float32,
    flatten: bool = True,
    standardize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ready for a network: pixels scaled to [0, 1] as floats, labels as ``int64``.

    Arguments:
        split, root, download: As in :func:`load_mnist`.
        device: Where the tensors should live (``None``: the CPU).
        dtype: A floating dtype for the images.
        flatten: Images as ``(N, 784)`` rows (true, for fully connected networks) or ``(N, 1, 28, 28)`` (false, for
            convolutional ones).
        standardize: Then subtract the training pixels' mean 0.1307 and divide by their standard deviation 0.3081
            (the usual convention, which Butakov et al. 2024 use).

    Returns:
        ``(x, y)``: images ``(N, 784)`` or ``(N, 1, 28, 28)`` with values ``pixel / 255``, and labels ``(N,)``.

    Example:
        >>> x, y = mnist_tensors("test")
        >>> tuple(x.shape), float(x.min()), float(x.max()), y.dtype
        ((10000, 784), 0.0, 1.0, torch.int64)
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype, got dtype={dtype!r}")
    images, labels = load_mnist(split, root=root, download=download)
    x = images.reshape(len(images), -1) if flatten else images.unsqueeze(1)  # (N, 784) or (N, 1, 28, 28)
    # Scale after the move: the uint8 tensor is a quarter of the float one's size to transfer.
    x = x.to(device=device).to(dtype) / 255.0
    if standardize:
        x = (x - MNIST_MEAN) / MNIST_STD
    return x, labels.to(device=device)
