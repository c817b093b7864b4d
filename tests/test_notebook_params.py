"""Parameter files and papermill reruns: every file under ``params/`` fits its notebook, and the non-default
parameter sets execute with their range checks.

A parameter file belongs to the notebook whose name is the longest prefix of the file's name
(``params/quantized_mnist.yaml`` -> ``notebooks/quantized.ipynb``).
"""

from pathlib import Path

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
