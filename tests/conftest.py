"""Test options: the device is an option of the test run, never a global (``pytest --device cuda``).

Device-aware tests take the ``device`` fixture (``torch.device``, from ``--device``; default ``cpu``, which is what
CI runs) and put their data, networks and estimators there. Two more fixtures check what a device run must keep:

* ``on_device(*things)`` asserts that tensors, modules (their parameters and buffers), generators and optimisers
  (their state) live on the device asked for, by device type and, where both name one, index (``cuda`` asked for
  matches ``cuda:0``).
* ``host_syncs(fn)`` counts the host synchronisations of ``fn()`` on CUDA (``None`` on any other device, where the
  tests skip that assertion): tests compare the count for a loop of length N and 2N, so that nothing moves to the
  host inside the loop.

Every test that takes ``device`` is marked ``device``: ``pytest --device cuda -m device`` runs the device suite
(what ``make gpu-check`` does, see benchmarks/gpu_check.py).
"""

import os
import warnings

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


def pytest_configure(config):
    # every test that takes the device fixture is marked "device": `pytest --device cuda -m device` is the device suite
    config.addinivalue_line("markers", "device: takes the device fixture (marked automatically)")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    # by type, and by index only where both name one (torch.device("cuda") is whichever GPU is current: cuda:0)
    actual, wanted = torch.device(actual), torch.device(wanted)
    return actual.type == wanted.type and (actual.index is None or wanted.index is None or actual.index == wanted.index)


def _tensors(thing):
    # (label, tensor) for a tensor, every parameter and buffer of a module, every tensor of an optimiser's state
    if isinstance(thing, torch.Tensor):
        yield "tensor", thing
    elif isinstance(thing, torch.nn.Module):
        yield from thing.named_parameters()
        yield from thing.named_buffers()
    elif isinstance(thing, torch.optim.Optimizer):
        for i, state in enumerate(thing.state.values()):
            yield from ((f"state[{i}].{k}", v) for k, v in state.items() if isinstance(v, torch.Tensor))
    elif isinstance(thing, (list, tuple)):
        for t in thing:
            yield from _tensors(t)
    else:
        raise TypeError(f"on_device checks tensors, modules, optimisers and lists of them, got {type(thing).__name__}")


@pytest.fixture
def on_device(device):
    """``on_device(*things)``: every tensor, module (parameters and buffers), optimiser state or ``torch.Generator``
    in ``things`` lives on ``device``."""

    def check(*things):
        for thing in things:
            if isinstance(thing, torch.Generator):
                assert _same_device(thing.device, device), f"generator on {thing.device}, asked for {device}"
                continue
            for label, t in _tensors(thing):
                assert _same_device(t.device, device), f"{label} on {t.device}, asked for {device}"

    return check


SYNC_WARNING = "called a synchronizing CUDA operation"


class HostSyncs:
    """Counts the host synchronisations of a call on CUDA.

    ``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronising CUDA operation that torch knows of
    (``.item()``, ``float(t)``, ``nonzero``, boolean indexing, blocking copies between host and device in either
    direction, ``torch.cuda.synchronize``...) issue a ``UserWarning``; the mode is global, so it is set only for the
    call and then restored. The count is the number of those warnings (recorded with the "always" filter, so that
    repeats from one line are all counted). A warm-up call first keeps one-off work (lazy initialisation, cuBLAS
    handles, caches) out of the count. On any device but CUDA there is nothing to count: calls return ``None``.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.enabled = device.type == "cuda"

    def __call__(self, fn, *, warmup: bool = True) -> int | None:
        if not self.enabled:
            return None
        if warmup:
            fn()
        torch.cuda.synchronize(self.device)
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        return sum(SYNC_WARNING in str(w.message) for w in caught)

    def require(self) -> None:
        """Skip a test that checks nothing but host syncs where they cannot be counted (before it does any work)."""
        if not self.enabled:
            pytest.skip(f"host syncs are counted on CUDA only (device {self.device})")


@pytest.fixture
def host_syncs(device):
    """``host_syncs(fn)``: the number of host syncs of ``fn()`` on CUDA, ``None`` elsewhere (see :class:`HostSyncs`)."""
    return HostSyncs(device)
