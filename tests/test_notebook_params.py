"""Parameter files and papermill reruns: every file under ``params/`` fits its notebook, and the non-default
parameter sets execute with their range checks.

A parameter file belongs to the notebook whose name is the longest prefix of the file's name
(``params/quantized_mnist.yaml`` -> ``notebooks/quantized.ipynb``).
"""

import json
import re
from pathlib import Path

import nbformat

import papermill as pm
import pytest
import yaml

from ibcore.batch import check_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAM_FILES = sorted((ROOT / "params").glob("*.yaml"))
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"



def _notebook_for(param_file: Path) -> Path:
    owners = [nb for nb in NOTEBOOKS if param_file.stem.startswith(nb.stem)]
    assert owners, f"{param_file.name} matches no notebook in notebooks/ by name prefix"
    return max(owners, key=lambda nb: len(nb.stem))


def test_there_are_parameter_files():
    assert PARAM_FILES


@pytest.mark.parametrize("param_file", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_names_only_parameters_of_its_notebook_with_their_types(param_file):
    values = yaml.safe_load(param_file.read_text())
    assert isinstance(values, dict) and values, f"{param_file.name} holds no parameters"
    check_parameters(_notebook_for(param_file), values)  # the check the batch runner applies: ValueError on a mismatch


@pytest.mark.parametrize("param_file", [p for p in PARAM_FILES if p.stem.endswith("_paper")], ids=lambda p: p.name)
def test_every_paper_file_states_its_cost_on_this_machine(param_file):
    # issue 19: each paper-scale file says in its header what it costs on 2 CPU cores (measured, or estimated and
    # said so), so that nobody starts a week-long run by accident
    header = [line for line in param_file.read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# Cost") and "2 CPU cores" in line for line in header), \
        f"{param_file.name}: no '# Cost ... 2 CPU cores ...' line in its header"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_line_of_the_parameters_cell(notebook):
    # papermill skips a line it cannot parse ('=' in the comment, a "float | None" annotation): the parameter then
    # disappears from --help-notebook and the batch runner rejects it as unknown
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    names = re.findall(r"^(\w+)\s*:", source, re.M)
    assert names, f"{notebook.name}: no parameters found"
    missing = [n for n in names if n not in pm.inspect_notebook(str(notebook))]
    assert not missing, f"{notebook.name}: papermill cannot read the parameter lines of {missing}"


def test_optional_parameters_are_type_checked(tmp_path):
    kernel = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": kernel})
    cell = nbformat.v4.new_code_cell('min_drop: "Optional[float]" = None  # nats', metadata={"tags": ["parameters"]})
    nb.cells = [cell]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    check_parameters(path, {"min_drop": 0.5})
    check_parameters(path, {"min_drop": None})
    with pytest.raises(ValueError, match="min_drop"):
        check_parameters(path, {"min_drop": "big"})


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"the offline MNIST copy is not at {SHARED_MNIST}")
def test_quantized_notebook_runs_the_mnist_parameter_set(tmp_path):
    # params/quantized_mnist.yaml, shrunk to seconds: the MNIST path and its range checks execute end to end.
    values = yaml.safe_load((ROOT / "params" / "quantized_mnist.yaml").read_text())
    values |= {"epochs": 4, "measure_every": 2, "n_repeats": 2, "mnist_train": 1000, "mnist_test": 500}
    out = tmp_path / "quantized_mnist.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "quantized.ipynb"), str(out), parameters=values,
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")  # fmt: skip
    text = out.read_text()
    assert "mnist: 1500 inputs measured" in text


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"the offline MNIST copy is not at {SHARED_MNIST}")
def test_lossy_mnist_notebook_runs_the_paper_parameter_set_shrunk(tmp_path):
    # params/lossy_mnist_paper.yaml (the paper's smoothing, KL entropies, learning rate), shrunk to seconds on the CPU:
    # the paper-scale path and its range checks execute end to end.
    values = yaml.safe_load((ROOT / "params" / "lossy_mnist_paper.yaml").read_text())
    values |= {"epochs": 4, "n_train": 3000, "n_eval": 500, "ae_epochs": 1, "lr": 2e-3, "batch_size": 50}
    out = tmp_path / "lossy_mnist.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "lossy_mnist.ipynb"), str(out), parameters=values,
                        cwd=str(ROOT / "notebooks"), progress_bar=False, kernel_name="python3")  # fmt: skip
    assert "3000 training images, 500 test images" in out.read_text()


def test_the_cifar10_file_says_where_it_looked_when_the_data_are_not_there(tmp_path, monkeypatch):
    # issue 22 item 4: params/lossy_mnist_cifar10.yaml runs where CIFAR-10 is, and says so where it is not: the data
    # cell stops with the loader's error, which lists the folders searched (IBCORE_DATA first)
    from ibcore.data import load_cifar10

    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("IBCORE_DATA", str(empty))
    try:
        load_cifar10("test")
    except FileNotFoundError:
        pass
    else:
        pytest.skip("a CIFAR-10 copy is in one of the loader's folders: the notebook would run it")
    values = yaml.safe_load((ROOT / "params" / "lossy_mnist_cifar10.yaml").read_text())
    assert values["dataset"] == "cifar10"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(ROOT / "notebooks" / "lossy_mnist.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=values | {"epochs": 1, "ae_epochs": 1}, cwd=str(ROOT / "notebooks"),
                            progress_bar=False, kernel_name="python3")  # fmt: skip
    message = str(err.value)
    assert "FileNotFoundError" in message and "CIFAR-10 train files" in message and str(empty) in message, message
