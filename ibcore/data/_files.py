"""Where the data loaders look for files, where they download to, and how a download lands (md5-checked, atomic).

Shared by :mod:`.mnist` and :mod:`.cifar`: for a data set ``name`` the folders are searched in the order

1. ``root``, when given;
2. ``$IBCORE_DATA/<name>`` and then ``$IBCORE_DATA`` itself, when the ``IBCORE_DATA`` environment variable is set;
3. ``../shared/data/<name>`` relative to the repository root (the folder holding ``ibcore``), then relative to the
   current working directory (the project's offline copy);
4. the download folder: ``root`` if given, else ``$IBCORE_DATA/<name>`` if set, else the user cache
   ``$XDG_CACHE_HOME/ibcore/<name>`` (``~/.cache/ibcore/<name>`` by default).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

_CHUNK_BYTES = 1 << 20


def download_dir(root, name: str) -> Path:
    """Where ``download=True`` puts the files of data set ``name``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("IBCORE_DATA", "").strip()
    if env:
        return Path(env).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "ibcore" / name


def search_dirs(root, name: str, package_parent: Path) -> list[Path]:
    """The folders to look in, in order, without repeats (compared lexically: ``repo/../shared`` is ``shared``)."""
    dirs = [Path(root).expanduser()] if root is not None else []
    env = os.environ.get("IBCORE_DATA", "").strip()
    if env:
        dirs += [Path(env).expanduser() / name, Path(env).expanduser()]
    shared = Path("..") / "shared" / "data" / name
    dirs += [package_parent / shared, Path.cwd() / shared, download_dir(None, name)]
    unique, seen = [], set()
    for d in dirs:
        d = Path(os.path.normpath(os.path.abspath(d)))
        if os.path.normcase(d) not in seen:
            seen.add(os.path.normcase(d))
            unique.append(d)
    return unique


def check_md5(raw: bytes, expected: str, path, what: str) -> None:
    """A ``ValueError`` naming ``path`` when the md5 of ``raw`` is not ``expected`` (the original ``what`` file)."""
    actual = hashlib.md5(raw).hexdigest()
    if actual != expected:
        raise ValueError(f"{path}: md5 {actual} does not match the expected md5 {expected} of the original {what}; "
                         "it is corrupt or not the original distribution (delete it and load again)")  # fmt: skip


def fetch(url: str, target: Path, expected_md5: str, urlopen, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file in the same folder, renamed into place only after
    its md5 matched: an interrupted or corrupted download leaves nothing behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        md5 = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK_BYTES):
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != expected_md5:
            raise ValueError(f"downloaded md5 {md5.hexdigest()} does not match the expected md5 {expected_md5}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
