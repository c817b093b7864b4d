"""Cost of a paper-scale parameter file on this machine, by timing a prefix of the run and extrapolating.

The notebook runs with the paper file's parameters and a checkpoint folder for ``--seconds`` of wall time and is then
stopped; every training run that reached a checkpoint gives ``seconds so far x epochs / epochs done``. Training runs of
one notebook run one after another, so the estimate for the notebook is the sum over its training runs (those not
reached are assumed to cost what the first one does, and counted). Measurements are log-spaced in most notebooks,
densest early, so the extrapolation from an early prefix is an upper estimate.

    .venv/bin/python benchmarks/cost_paper.py params/noisy_szt_paper.yaml --seconds 300 [--runs 2]

Prints the notebook, the training runs seen, and the estimate in hours on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ibcore import checkpoint
from ibcore.scorecard import paper_notebook

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", type=Path)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--runs", type=int, default=1, help="training runs the notebook makes one after another")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args(argv)
    notebook = paper_notebook(args.params.stem.removesuffix("_paper"), ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, "-m", "papermill", str(notebook), str(Path(tmp) / "out.ipynb"), "--cwd",
               str(ROOT / "notebooks"), "-f", str(args.params.resolve()), "-p", "checkpoint_dir", str(ck)]
        started = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=args.seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        wall = time.time() - started
        done = proc.returncode == 0
        seen = []
        for f in sorted(ck.glob("*.ckpt")) if ck.is_dir() else []:
            state = checkpoint.load(f)
            epochs = state["fingerprint"]["epochs"]
            seen.append((f.stem, state["epoch"], epochs, state["seconds"], state["finished"]))
    print(f"{args.params} -> notebooks/{notebook.name}; {args.threads} thread(s) on {platform.node()} "
          f"({os.cpu_count()} cores); prefix of {wall:.0f} s{' (the run finished)' if done else ''}")
    if not seen:
        print("no training run reached a checkpoint within the prefix: its setup alone takes longer")
        return 1
    total = 0.0
    for run, epoch, epochs, seconds, finished in seen:
        estimate = seconds if finished else seconds * epochs / max(epoch, 1)
        total += estimate
        print(f"  {run}: epoch {epoch} of {epochs} after {seconds:.0f} s -> {estimate / 3600:.2f} h")
    missing = max(args.runs - len(seen), 0)
    total += missing * (total / len(seen))
    print(f"estimate: {total / 3600:.1f} h for {args.runs} training run(s) ({missing} not reached, counted as the "
          "mean of those seen); an upper estimate where measurements are log-spaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
