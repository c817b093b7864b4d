"""One execution per notebook: the book's cache (``ibcore.bookcache``) and the notebook tests that fill it
(the pytest plugin ``ibcore._nbplugin``), on a throwaway notebook in a temporary folder."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache

from ibcore import bookcache

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, value: float) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A probe"),
        nbformat.v4.new_code_cell(f"value = {value}\nprint('value is', value)"),
        nbformat.v4.new_code_cell("value * 2"),
        nbformat.v4.new_code_cell("assert 0.5 < value < 1.5, value", metadata={"tags": ["remove-cell"]}),
        nbformat.v4.new_code_cell("assert value != 7.25, ('second check', value)", metadata={"tags": ["remove-cell"]}),
    ]
    nbformat.write(nb, path)
    return path


def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return folder


def _pytest(folder: Path, build: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"IBCORE_BOOK_BUILD": str(build)}
    return subprocess.run([sys.executable, "-m", "pytest", str(folder), "-n", "0", "-p", "no:cacheprovider",
                           "-p", "ibcore._nbplugin", "--nbval-lax", "--rootdir", str(folder), "-c", os.devnull, "-q"],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # the kernel's tracebacks are coloured


def test_fingerprint_follows_content_not_file_times(tmp_path):
    (tmp_path / "ibcore").mkdir()
    (tmp_path / "book" / "records").mkdir(parents=True)
    source = tmp_path / "ibcore" / "m.py"
    source.write_text("x = 1\n")
    (tmp_path / "book" / "records" / "a.json").write_text("{}")
    first = bookcache.fingerprint(tmp_path)
    os.utime(source, (1, 1))
    assert bookcache.fingerprint(tmp_path) == first
    source.write_text("x = 2\n")
    assert bookcache.fingerprint(tmp_path) != first
    source.write_text("x = 1\n")
    (tmp_path / "book" / "records" / "a.json").write_text('{"mi": 1}')
    assert bookcache.fingerprint(tmp_path) != first


def test_prepare_empties_a_stale_cache_and_what_was_built_from_it(tmp_path):
    cache = tmp_path / "_build" / ".jupyter_cache"
    assert bookcache.prepare(cache, current="aaa")
    (cache / "entry").write_text("an execution")
    (tmp_path / "_build" / "html").mkdir()
    assert not bookcache.prepare(cache, current="aaa")
    assert (cache / "entry").is_file() and (tmp_path / "_build" / "html").is_dir()
    assert bookcache.prepare(cache, current="bbb")
    assert not (cache / "entry").exists() and not (tmp_path / "_build" / "html").exists()
    assert bookcache.cached_fingerprint(cache) == "bbb"


def test_a_filled_execution_is_what_the_book_finds_for_its_notebook(tmp_path):
    source = _notebook(tmp_path / "probe.ipynb", 1.0)
    executed = nbformat.read(source, as_version=4)
    executed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="value is 1.0\n")]
    executed.cells[1].execution_count = 1
    executed.metadata["papermill"] = {"duration": 1.0}  # per-run additions are stripped, cell metadata kept
    copy = tmp_path / "executed.ipynb"
    nbformat.write(executed, copy)
    cache = tmp_path / "_build" / ".jupyter_cache"
    bookcache.fill([(copy, source, 1.5)], cache, current="fp")
    record = get_cache(str(cache)).match_cache_notebook(nbformat.read(source, as_version=4))
    assert record.data["execution_seconds"] == 1.5
    _, merged = get_cache(str(cache)).merge_match_into_notebook(nbformat.read(source, as_version=4))
    assert merged.cells[1].outputs[0]["text"] == "value is 1.0\n"
    changed = _notebook(tmp_path / "changed.ipynb", 2.0)  # other code: a miss, the book would execute it
    with pytest.raises(KeyError):
        get_cache(str(cache)).match_cache_notebook(nbformat.read(changed, as_version=4))


def test_notebook_tests_report_each_failing_check_and_cache_only_a_passing_execution(tmp_path):
    folder = _project(tmp_path)
    build = tmp_path / "_build"
    notebook = _notebook(folder / "probe.ipynb", 7.25)
    run = _pytest(folder, build)
    assert run.returncode == 1, run.stdout + run.stderr
    # both failing checks are reported, each naming the notebook, the cell and the value
    out = _plain(run.stdout)
    assert "probe.ipynb::Cell 2" in out and "probe.ipynb::Cell 3" in out, out
    assert "AssertionError: 7.25" in out and "AssertionError: ('second check', 7.25)" in out, out
    assert "FAILED: not cached" in out, out
    assert not (build / "executed" / "probe.ipynb").exists()
    summary = json.loads((build / "executed" / "probe.json").read_text())
    assert [c["passed"] for c in summary["cells"]] == [True, True, False, False]

    _notebook(notebook, 1.0)
    run = _pytest(folder, build)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cached for the book" in run.stdout, run.stdout
    cache = build / ".jupyter_cache"
    _, merged = get_cache(str(cache)).merge_match_into_notebook(nbformat.read(notebook, as_version=4))
    code = [c for c in merged.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[0].outputs[0]["text"] == "value is 1.0\n"
    assert code[1].outputs[0]["data"]["text/plain"] == "2.0"
    times = json.loads((build / "notebook-times.json").read_text())
    assert times[str((folder / "probe.ipynb").resolve())]["passed"] is True
