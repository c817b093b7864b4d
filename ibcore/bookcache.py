"""The book's execution cache, filled by the notebook tests so that each notebook runs once per build.

Jupyter Book (1.x, ``execute_notebooks: cache``) looks a notebook up in a jupyter-cache folder by the md5 of its code
cells and kernelspec, and executes it only on a miss. The notebook tests (``ibcore/_nbplugin.py``) execute every
notebook once, check its numbers, and hand each execution that passed to :func:`fill`, which stores it in that
folder; the book build then renders exactly the outputs that were checked and executes nothing.

The cache key covers only the notebooks' own code, not what they import or read. :func:`fingerprint` hashes the rest
(``ibcore``'s sources, the recorded numbers and claims the scorecard reads, the versions of the numerical packages);
the cache folder carries the fingerprint of the code it was filled with, and :func:`prepare` empties a folder whose
fingerprint is not the current one, so a stale execution is never shown.

Command line (the Makefile's ``book`` target runs the first before building)::

    python -m ibcore.bookcache prepare    # empty the cache if ibcore or the records changed since it was filled
    python -m ibcore.bookcache status     # the fingerprint and what the cache holds
    python -m ibcore.bookcache check-built  # after test + book: every notebook came from the tests' execution
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

from ibcore._io import write_atomic

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("IBCORE_BOOK_BUILD", ROOT / "_build"))  # another folder only for the tests of this module
CACHE = BUILD / ".jupyter_cache"  # Jupyter Book's default: <build dir>/.jupyter_cache
STAMP_NAME = "ibcore-fingerprint"
# Everything a notebook reads besides its own cells: the library, and the files the scorecard notebook reads.
SOURCES = ("ibcore/**/*.py", "book/scorecard.yaml", "book/records/**/*.json")
PACKAGES = ("torch", "numpy", "scipy", "matplotlib", "zuko", "myst-nb", "ipykernel")
# Derived from the executed notebooks: removed whenever the cache changes, so that Sphinx reads every page again.
DERIVED = (".doctrees", "jupyter_execute", "html")


def fingerprint(root: str | Path = ROOT) -> str:
    """The sha256 of everything an executed notebook depends on outside its code cells.

    Files are hashed by content and path (not by modification time, which a fresh clone sets arbitrarily), sorted;
    package versions are part of it because a new torch or numpy can move the numbers.
    """
    root = Path(root)
    h = hashlib.sha256()
    files = sorted({p for pattern in SOURCES for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts})
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    for name in PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{name}=={version}\0".encode())
    h.update(f"python {sys.version_info[:2]}".encode())
    return h.hexdigest()


def cached_fingerprint(cache: str | Path = CACHE) -> str | None:
    """The fingerprint the cache folder was filled under, or None if it has none (new, or filled by an old build)."""
    stamp = Path(cache) / STAMP_NAME
    return stamp.read_text().strip() if stamp.is_file() else None


def _drop_derived(build: Path) -> None:
    for name in DERIVED:
        shutil.rmtree(build / name, ignore_errors=True)


def prepare(cache: str | Path = CACHE, current: str | None = None) -> bool:
    """Make the cache folder safe to build from: if its fingerprint is not ``current`` (default: :func:`fingerprint`),
    remove it and everything built from it, and stamp a new empty one. Returns True if it was emptied."""
    cache = Path(cache)
    current = current or fingerprint()
    if cached_fingerprint(cache) == current:
        return False
    shutil.rmtree(cache, ignore_errors=True)
    _drop_derived(cache.parent)
    write_atomic(cache / STAMP_NAME, current + "\n")
    return True


def strip_for_cache(nb):
    """The notebook as the cache stores it: as executed, with cell metadata left exactly as in the source (the cache
    key hashes it), without papermill's or nbclient's per-run additions."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb


def fill(executed: list[tuple[str | Path, str | Path, float]], cache: str | Path = CACHE,
         current: str | None = None) -> list[str]:
    """Store executed notebooks in the book's cache.

    Arguments:
        executed: (executed copy, the notebook it was executed from, seconds its execution took) triples. Each copy
            must have the same code cells and metadata as its notebook, or the book will not find it.
        cache: the jupyter-cache folder the book build reads.
        current: the fingerprint the executions ran under; the cache is emptied first if it holds another one.

    Returns:
        The notebooks stored (absolute paths). Everything built from the cache before (doctrees, html) is removed, so
        that the next build renders these outputs and not older ones.
    """
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = Path(cache)
    current = current or fingerprint()
    prepare(cache, current)
    jc = get_cache(str(cache))
    executed_by_book = {r.uri for r in jc.list_project_records()}
    stored = []
    for path, source, seconds in executed:
        nb = strip_for_cache(nbformat.read(str(path), as_version=4))
        uri = str(Path(source).resolve())
        jc.cache_notebook_bundle(CacheBundleIn(nb, uri, data={"execution_seconds": float(seconds)}),
                                 check_validity=False, overwrite=True)  # fmt: skip
        if uri in executed_by_book:  # the book executed it itself once; from now on it reads this execution
            jc.remove_nb_from_project(uri)
        stored.append(uri)
    if stored:
        _drop_derived(cache.parent)
    return stored


def executed_by_book(cache: str | Path = CACHE) -> list[str]:
    """The notebooks the book build executed itself because the cache lacked them (jupyter-cache's project records:
    myst-nb adds one only when it executes)."""
    from jupyter_cache import get_cache

    if not Path(cache).is_dir():
        return []
    return sorted(r.uri for r in get_cache(str(cache)).list_project_records())


def is_cached(notebook: str | Path, cache: str | Path = CACHE, current: str | None = None) -> bool:
    """Whether the book build would take ``notebook`` from the cache rather than execute it (and the cache is not
    stale: its fingerprint is ``current``, default :func:`fingerprint`)."""
    import nbformat
    from jupyter_cache import get_cache

    cache = Path(cache)
    if not cache.is_dir() or cached_fingerprint(cache) != (current or fingerprint()):
        return False
    try:
        get_cache(str(cache)).match_cache_notebook(nbformat.read(str(notebook), as_version=4))
    except KeyError:
        return False
    return True


def book_notebooks(root: str | Path = ROOT) -> list[Path]:
    """The notebooks of ``_toc.yml``, in its order."""
    import yaml

    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []) + entry.get("chapters", []))

    walk(toc.get("parts", []))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def check_built(cache: str | Path = CACHE) -> list[str]:
    """Problems with a book built after the notebook tests: a notebook of the book not in the current cache, or one
    that the build executed a second time."""
    current = fingerprint()
    problems = [f"{nb.relative_to(ROOT)}: not in the book's cache (or the cache is stale)"
                for nb in book_notebooks() if not is_cached(nb, cache, current)]  # fmt: skip
    problems += [f"{uri}: executed by the book build as well as by the tests (the cache missed it)"
                 for uri in executed_by_book(cache)]  # fmt: skip
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ibcore.bookcache", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "status", "check-built"])
    parser.add_argument("--cache", default=str(CACHE), help="the jupyter-cache folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        emptied = prepare(args.cache)
        print(f"bookcache: {'emptied (ibcore, records or packages changed)' if emptied else 'up to date'}: "
              f"{args.cache}")  # fmt: skip
        return 0
    if args.command == "check-built":
        problems = check_built(args.cache)
        for p in problems:
            print(f"bookcache: {p}")
        n = len(book_notebooks())
        print(f"bookcache: {n - len(problems)} of {n} notebooks rendered from the tests' single execution")
        return 1 if problems else 0
    current = fingerprint()
    print(f"fingerprint now:   {current}\nfingerprint cache: {cached_fingerprint(args.cache)}")
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        print(f"{'cached  ' if is_cached(nb, args.cache, current) else 'missing '} {nb.relative_to(ROOT)}")
    for uri in executed_by_book(args.cache):
        print(f"executed by the book build itself: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
