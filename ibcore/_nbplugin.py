"""The notebook tests: every notebook executed once, under nbval, and that execution is the one the book shows.

A pytest plugin (``-p ibcore._nbplugin`` in the project's pytest options, pyproject.toml): a module rather than
``notebooks/conftest.py``, since ``--doctest-modules`` imports every conftest.py as the module ``conftest`` and two of
them collide.

nbval runs each notebook top to bottom in a fresh kernel (in its own folder, as the book build does); every code
cell is a test item, so a failing range check is its own failure naming the notebook, the cell and, through the
check's assertion message, the value. Cells tagged ``remove-cell`` hold the checks and are hidden in the book.

Beyond nbval, these hooks keep what nbval executed: each cell's outputs are written back into the notebook, and a
notebook whose cells all passed is saved to ``_build/executed/`` with the time it took. At the end of the session
those executions go into the book's jupyter-cache (``ibcore.bookcache.fill``), so ``make book`` renders exactly the
outputs whose numbers were checked and executes nothing. A notebook with a failing cell is not cached: the book
build executes it again and fails on it. ``_build/notebook-times.json`` lists each notebook's time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ibcore import bookcache
from ibcore._io import write_atomic

# Two xdist workers, each with a notebook kernel of two threads, oversubscribe two cores tenfold on the small SZT
# networks (tests/conftest.py says the same for the unit tests); the kernels inherit this before nbval starts them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

EXECUTED = bookcache.BUILD / "executed"
TIMES = bookcache.BUILD / "notebook-times.json"
# The order in which the two xdist workers take the files (`--dist loadfile --no-loadscope-reorder` hands out whole
# files in collection order): the notebooks longest first, then the slowest unit-test files, then the rest, so that
# neither worker is left with a long file while the other idles. Seconds under make test in a clean `.ci/run` of stop
# 35 (a fresh clone, both cores free; the whole run 2,116 s): resnet_plane 512, compression_debate 351, noisy_szt
# 324, mienf 318, mienf_studies 307, szt_binning 299, quantized 298, szt_phases 274, which_estimator 204, lossy_mnist
# 125, quantized_archs 122, dualib 80, lossy_synthetic 62, noisy_neuron 21, infinite_ensembles 20, scorecard 7.
# compression_debate_mnist (new in stop 36): 166 s of CPU, 283 s of wall time beside two other runs.
# tests/test_nbplugin.py fails when a notebook or a named test file is missing from these lists.
LONGEST_FIRST = ("resnet_plane", "compression_debate", "noisy_szt", "mienf", "mienf_studies", "szt_binning", "quantized",
                 "szt_phases", "compression_debate_mnist", "which_estimator", "lossy_mnist", "quantized_archs", "dualib",
                 "lossy_synthetic", "noisy_neuron", "infinite_ensembles", "scorecard")
SLOWEST_TESTS = ("test_batch", "test_checkpoint", "test_api_page", "test_bookcache", "test_notebook_params",
                 "test_browser_check", "test_lossy", "test_scorecard", "test_flows", "test_contract")


def _is_nbval_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


class _Execution:
    """What nbval ran of one notebook: outputs written into its cells, per-cell times and outcomes."""

    def __init__(self, parent, fingerprint: str):
        self.parent = parent
        self.fingerprint = fingerprint
        self.n_cells = sum(1 for c in parent.nb.cells if c.cell_type == "code")
        self.started = time.time()
        self.seconds = 0.0
        self.cells: list[dict] = []

    def record(self, item, seconds: float, passed: bool) -> None:
        cell = item.cell
        # nbval keeps the outputs it read from the kernel on the item; the execution count is the kernel's, which in a
        # fresh kernel running the cells in order is their position.
        cell.outputs = list(item.test_outputs or [])
        cell.execution_count = item.cell_num + 1
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = cell.execution_count
        self.seconds += seconds
        self.cells.append({"cell": item.cell_num, "seconds": round(seconds, 3), "passed": passed})

    @property
    def done(self) -> bool:
        return len(self.cells) == self.n_cells

    def save(self) -> None:
        import nbformat

        source = Path(str(self.parent.fspath)).resolve()
        name = source.stem
        passed = all(c["passed"] for c in self.cells)
        nb_path = EXECUTED / f"{name}.ipynb"
        if passed:
            write_atomic(nb_path, nbformat.writes(self.parent.nb))
        else:
            nb_path.unlink(missing_ok=True)
        shown = source.relative_to(bookcache.ROOT) if source.is_relative_to(bookcache.ROOT) else source
        summary = {"notebook": shown.as_posix(), "source": str(source), "passed": passed, "seconds": round(self.seconds, 1),
                   "wall_seconds": round(time.time() - self.started, 1), "fingerprint": self.fingerprint,
                   "finished": time.time(), "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                   "cells": self.cells}  # fmt: skip
        write_atomic(EXECUTED / f"{name}.json", json.dumps(summary, indent=1) + "\n")


_executions: dict[str, _Execution] = {}
_session_start = time.time()


def pytest_collection_modifyitems(session, config, items):
    # Notebooks first, longest first, then the slowest test files: a long file left for the end keeps a core idle.
    orders = ({name: i for i, name in enumerate(LONGEST_FIRST)}, {name: i for i, name in enumerate(SLOWEST_TESTS)})

    def key(pair):
        index, item = pair
        kind = 0 if _is_nbval_cell(item) else 1
        return (kind, orders[kind].get(Path(str(item.fspath)).stem, len(orders[kind])), index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    outcome = yield
    if not _is_nbval_cell(item):
        return
    key = str(item.parent.fspath)
    if key not in _executions:
        _executions[key] = _Execution(item.parent, bookcache.fingerprint())
    execution = _executions[key]
    execution.record(item, time.perf_counter() - start, passed=outcome.excinfo is None)
    if execution.done:
        execution.save()


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller collects what the workers saved
        return
    summaries = []
    for path in sorted(EXECUTED.glob("*.json")) if EXECUTED.is_dir() else []:
        summary = json.loads(path.read_text())
        if summary["finished"] >= _session_start:
            summaries.append(summary)
    if not summaries:
        return
    current = bookcache.fingerprint()
    fresh = [(EXECUTED / f"{Path(s['notebook']).stem}.ipynb", s["source"], s["seconds"])
             for s in summaries if s["passed"] and s["fingerprint"] == current]  # fmt: skip
    bookcache.fill(fresh)
    previous = json.loads(TIMES.read_text()) if TIMES.is_file() else {}
    previous.update({s["notebook"]: {k: s[k] for k in ("seconds", "wall_seconds", "passed", "worker")}
                     for s in summaries})  # fmt: skip
    write_atomic(TIMES, json.dumps(previous, indent=1, sort_keys=True) + "\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter.write_sep("-", "notebooks: each executed once (nbval), for the range checks and for the book")
    for s in sorted(summaries, key=lambda s: -s["seconds"]):
        if not s["passed"]:
            state = "FAILED: not cached, the book will re-execute it"
        elif s["fingerprint"] != current:
            state = "NOT cached: ibcore changed during the run"
        else:
            state = "cached for the book"
        reporter.write_line(f"{s['seconds']:8.1f} s  {s['notebook']:<36} [{s['worker']}] {state}")
    reporter.write_line(f"{sum(s['seconds'] for s in summaries):8.1f} s  in all ({len(fresh)} of {len(summaries)} "
                        f"cached in {bookcache.CACHE})")  # fmt: skip
