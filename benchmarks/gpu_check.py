"""``make gpu-check``: the device suite and the benchmarks on one GPU, in under 10 minutes, with a short report.

1. The device suite: every test that takes the ``device`` fixture (marked ``device`` by tests/conftest.py), run with
   ``pytest --device cuda``: estimators, the training loop, quantized and noisy networks, noise generators, k-NN
   chunking, critics and flows on the GPU, their tensors on it, CUDA against the CPU within the tolerances the tests
   state, and no host sync inside the loops.
2. Every benchmark that takes a device, on ``cuda``, at settings that fit the time budget.

Each step runs in its own process group under a timeout taken from what is left of ``BUDGET_S``; the outputs go to
``_build/gpu-check/`` and a short report to ``_build/gpu-check/report.md`` (GPU, torch and CUDA versions, the
pytest summary and failures, each benchmark's table or its error, the wall time of each step). The exit status is
non-zero when the device suite failed (benchmarks only report). On a machine without CUDA it prints one line and
exits 0 without running anything.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "gpu-check"
BUDGET_S = 570.0  # the whole check, under 10 minutes on one GPU
RESERVE_S = 10.0  # left for writing the report

# The files with device-aware tests; ``-m device`` keeps only the tests that take the fixture.
DEVICE_TESTS = [
    "tests/test_contract.py",  # every registered estimator on the device, against the CPU
    "tests/test_knn.py",  # k-NN chunking and its memory budget
    "tests/test_training.py",  # fit, fused optimisers, stacked MLPs
    "tests/test_quantized.py",  # quantized networks, running ranges, the exact estimator
    "tests/test_noisy.py",  # noisy MLPs and CNN, their noise generators, sample-propagation centres
    "tests/test_neural.py",  # critics
    "tests/test_flows.py",  # flows
    "tests/test_sp.py",  # sample propagation
    "tests/test_lossy.py",  # PCA, autoencoders, entropy-based estimators
    "tests/test_discrete_binning_gaussian.py",
    "tests/test_infoplane_smoothing.py",
]
PYTEST = ["-m", "pytest", "--device", "cuda", "-m", "device", "-n", "0", "-p", "no:cacheprovider",
          "-o", "addopts=--doctest-modules", "-q", "-rfE", "--durations=10", *DEVICE_TESTS]  # fmt: skip
PYTEST_TIMEOUT_S = 300.0

# (name, arguments, timeout in s): every benchmark that takes --device, at settings that fit the budget.
BENCHMARKS = [
    ("bench_knn", ["--device", "cuda", "--n", "10000", "100000", "--dims", "5", "10", "--estimators", "ksg", "kl",
                   "--backends", "torch", "--dtype", "float32", "--time-cap", "20"], 80.0),
    ("bench_stacked_training", ["--device", "cuda", "--epochs", "20", "--models", "1", "10", "50"], 30.0),
    ("bench_quantized", ["--device", "cuda", "--models", "1", "10", "--epochs", "10"], 45.0),
    ("bench_sp", ["--device", "cuda"], 30.0),
    ("bench_estimators", ["staircase", "--steps", "200", "--device", "cuda"], 60.0),
    ("bench_lossy", ["--device", "cuda", "--eval", "2000", "--repeats", "1"], 45.0),
]  # fmt: skip
TAIL_LINES = 40  # of a benchmark's output in the report


def _run(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, float, str]:
    """Run ``cmd`` in its own process group; (exit status or None on timeout, seconds, stdout + stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the benchmark's workers too (bench_knn starts one per configuration)
        out, _ = proc.communicate()
        rc = None
    seconds = time.perf_counter() - start
    log.write_text(out)
    return rc, seconds, out


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _environment() -> list[str]:
    import torch

    lines = [
        f"- GPU: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
    ]
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False).stdout.strip()  # fmt: skip
        if smi:
            lines.append(f"- driver, memory: {smi.splitlines()[0]}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    lines.append(f"- Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    return lines


def _pytest_summary(out: str) -> tuple[str, list[str]]:
    # the final "N passed, M failed ... in S s" line and the short test summary (FAILED / ERROR lines)
    counted = re.compile(r"\d+ (passed|failed|skipped|errors?|deselected)")
    summary = next((line.strip("= ") for line in reversed(out.splitlines()) if counted.search(line)), "no summary line")
    failures = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return summary, failures


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); nothing run")
        return 0
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)

    def left(cap: float) -> float:
        return min(cap, BUDGET_S - RESERVE_S - (time.perf_counter() - start))

    report = ["# gpu-check", "", *_environment(), ""]
    print(f"gpu-check: device suite on {torch.cuda.get_device_name(0)} ...", flush=True)
    rc, seconds, out = _run([sys.executable, *PYTEST], left(PYTEST_TIMEOUT_S), OUT / "pytest.log")
    summary, failures = _pytest_summary(out)
    tests_ok = rc == 0
    verdict = "passed" if tests_ok else ("timed out" if rc is None else f"failed (exit {rc})")
    report += ["## Device suite", "", f"`python {' '.join(PYTEST)}`", "",
               f"- {verdict} in {seconds:.0f} s: {summary}"]  # fmt: skip
    if failures:
        report += ["", "```", *failures, "```"]
    if not tests_ok and not failures:
        report += ["", "```", *out.splitlines()[-TAIL_LINES:], "```"]
    report += ["", f"Full output: `{_shown(OUT / 'pytest.log')}`", "", "## Benchmarks", ""]
    print(f"gpu-check: device suite {verdict} in {seconds:.0f} s: {summary}", flush=True)

    for name, args, cap in BENCHMARKS:
        timeout = left(cap)
        if timeout < 5:
            report += [f"### {name}: skipped ({max(timeout, 0):.0f} s of the {BUDGET_S:.0f} s budget left)", ""]
            continue
        print(f"gpu-check: {name} ...", flush=True)
        rc, seconds, out = _run([sys.executable, f"benchmarks/{name}.py", *args], timeout, OUT / f"{name}.log")
        state = "ok" if rc == 0 else ("timed out" if rc is None else f"error (exit {rc})")
        report += [f"### {name}: {state}, {seconds:.0f} s", "", f"`python benchmarks/{name}.py {' '.join(args)}`",
                   "", "```", *out.rstrip().splitlines()[-TAIL_LINES:], "```", ""]  # fmt: skip
        print(f"gpu-check: {name} {state} in {seconds:.0f} s", flush=True)

    total = time.perf_counter() - start
    report += [f"Total wall time: {total:.0f} s (budget {BUDGET_S:.0f} s)", ""]
    (OUT / "report.md").write_text("\n".join(report))
    print(f"gpu-check: {'device suite passed' if tests_ok else 'DEVICE SUITE FAILED'}; {total:.0f} s; "
          f"report: {_shown(OUT / 'report.md')}")  # fmt: skip
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
