"""Test options: the device is an option of the test run, never a global (``pytest --device cuda``)."""

import os

import pytest
import torch

# Under pytest-xdist every worker, and every notebook kernel a worker starts (nbval, papermill), gets one thread:
# two workers with two threads each on two cores oversubscribe them, and torch's spinning threads then slow small
# workloads such as the SZT networks down tenfold. One thread costs these workloads nothing.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests (cpu or cuda)")


@pytest.fixture
def device(request):
    dev = request.config.getoption("--device")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA requested but not available")
    return torch.device(dev)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
