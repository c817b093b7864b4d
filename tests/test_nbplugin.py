"""The order in which `make test` hands files to its two workers (ibcore._nbplugin): a notebook or a slow test file
missing from the lists would run after everything else and leave one core idle while it finishes."""

from pathlib import Path

from ibcore import _nbplugin

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_is_ordered_and_every_ordered_name_exists():
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert set(_nbplugin.LONGEST_FIRST) == notebooks, set(_nbplugin.LONGEST_FIRST) ^ notebooks
    assert len(set(_nbplugin.LONGEST_FIRST)) == len(_nbplugin.LONGEST_FIRST)
    test_files = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    assert set(_nbplugin.SLOWEST_TESTS) <= test_files, set(_nbplugin.SLOWEST_TESTS) - test_files


class _Item:
    def __init__(self, path, nbval):
        self.fspath = path
        if nbval:
            self.cell_num = 0


def test_notebooks_go_first_longest_first_then_the_slow_test_files(monkeypatch):
    monkeypatch.setattr(_nbplugin, "_is_nbval_cell", lambda item: hasattr(item, "cell_num"))
    items = [_Item("tests/test_knn.py", False), _Item("notebooks/noisy_neuron.ipynb", True),
             _Item("tests/test_batch.py", False), _Item("notebooks/mienf.ipynb", True),
             _Item("ibcore/scorecard.py", False), _Item("notebooks/mienf.ipynb", True)]
    _nbplugin.pytest_collection_modifyitems(None, None, items)
    assert [str(i.fspath) for i in items] == [
        "notebooks/mienf.ipynb", "notebooks/mienf.ipynb", "notebooks/noisy_neuron.ipynb", "tests/test_batch.py",
        "tests/test_knn.py", "ibcore/scorecard.py"]
