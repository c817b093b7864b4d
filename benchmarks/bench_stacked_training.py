"""Cost of training several seeds together as one stacked MLP, against training them one after another.

Prints milliseconds per epoch of the SZT network (12-10-7-5-4-3-2, batch 512, 3277 training inputs) for
1..S stacked networks and the speed-up over sequential runs.

    python benchmarks/bench_stacked_training.py [--epochs 100] [--models 1 5 10 20 50] [--device cpu]
"""

import argparse
import platform
import time

import torch

from ibcore.data import szt_dataset, szt_split
from ibcore.nets import MLP, SZT_WIDTHS
from ibcore.training import fit


def ms_per_epoch(n_models: int, epochs: int, device: str) -> float:
    d = szt_dataset()
    train, _ = szt_split()
    x, y = d.x[train].to(device), d.y[train].to(device)
    net = MLP(SZT_WIDTHS, "tanh", seeds=range(n_models), device=device)
    fit(net, (x, y), epochs=2, batch_size=512, lr=4e-4)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit(net, (x, y), epochs=epochs, batch_size=512, lr=4e-4)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / epochs * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--models", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    one = ms_per_epoch(1, args.epochs, args.device)
    print(f"{'models':>6} {'ms/epoch':>9} {'sequential ms/epoch':>19} {'speed-up':>8}")
    for s in args.models:
        t = one if s == 1 else ms_per_epoch(s, args.epochs, args.device)
        print(f"{s:>6} {t:>9.2f} {s * one:>19.2f} {s * one / t:>8.1f}")


if __name__ == "__main__":
    main()
