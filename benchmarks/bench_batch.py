"""Batch runner: a sweep of 8 short CPU-bound runs, serially (1 local Dask worker) and on 2 local workers, and the
scheduling overhead per run (wall time per run minus the run's own compute time, as the notebook measures it).

Prints one table. The runs are tests/fixtures/sweep_probe.ipynb with a busy loop of `spin` iterations.
"""

import tempfile
import time
from pathlib import Path

import yaml

from ibcore.batch import load_sweep, run_sweep

PROBE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sweep_probe.ipynb"
N_RUNS, SPIN = 8, 80_000_000


def sweep(workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump({"notebook": str(PROBE), "output": f"{tmp}/out",
                                        "parameters": {"spin": SPIN}, "grid": {"x": list(range(N_RUNS))}}))
        runs, _ = load_sweep(path)
        started = time.perf_counter()
        results = run_sweep(runs, workers=workers, threads=1, progress=False)
        wall = time.perf_counter() - started
    assert all(r["status"] == "ok" for r in results), [r["error"] for r in results if r["status"] != "ok"]
    return wall, sum(r["numbers"]["compute_seconds"] for r in results)


if __name__ == "__main__":
    print(f"{N_RUNS} runs of the probe notebook, {SPIN:,} loop iterations each")
    print(f"{'workers':>8} {'wall s':>8} {'compute s':>10} {'overhead s/run':>15} {'speed-up':>9}")
    base = None
    for workers in (1, 2):
        wall, compute = sweep(workers)
        base = base or wall
        # with w workers the runs' compute overlaps w-fold: overhead = (wall - compute / w) per run, per worker
        overhead = (wall * workers - compute) / N_RUNS
        print(f"{workers:>8d} {wall:>8.1f} {compute:>10.1f} {overhead:>15.2f} {base / wall:>9.2f}")
