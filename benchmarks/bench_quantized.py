"""Cost of the exact information plane of quantized SZT networks (Lorenzen, Igel & Nielsen, ICLR 2022).

Prints, for 1..S stacked 8-bit networks (12-10-7-5-4-3-2, Adam, batch 256, 3277 training inputs): milliseconds per
training epoch, milliseconds per exact measurement of every layer on all 4096 inputs, the speed-up of stacking over
running the repeats one after another, and the projected time of the paper-scale run (8000 epochs, MI every 5
epochs) and of the book's default run.

    python benchmarks/bench_quantized.py [--models 1 5 10 50] [--activation tanh] [--device cpu]
"""

import argparse
import platform
import time

import torch

from ibcore.data import szt_dataset, szt_split
from ibcore.estimators import ExactMI
from ibcore.infoplane import InformationPlane
from ibcore.nets import MLP, SZT_WIDTHS
from ibcore.training import fit


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timings(n_models: int, activation: str, bits: int, epochs: int, device: str) -> tuple[float, float]:
    """(ms per training epoch, ms per exact information-plane measurement) for ``n_models`` stacked networks."""
    d = szt_dataset()
    train, _ = szt_split()
    x, y = d.x[train].to(device), d.y[train].to(device)
    net = MLP(SZT_WIDTHS, activation, seeds=range(n_models), init="glorot_uniform", bits=bits, device=device)
    fit(net, (x, y), epochs=2, batch_size=256, lr=1e-4)  # warm-up
    _sync(device)
    start = time.perf_counter()
    fit(net, (x, y), epochs=epochs, batch_size=256, lr=1e-4)
    _sync(device)
    train_ms = (time.perf_counter() - start) / epochs * 1e3

    plane = InformationPlane(d.x.to(device), d.y.to(device), {"exact": ExactMI()})
    state = type("State", (), {"epoch": 0, "model": net.eval()})()
    reps = max(3, epochs // 10)
    with torch.no_grad():
        plane.on_epoch_end(state)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            plane.on_epoch_end(state)
        _sync(device)
    return train_ms, (time.perf_counter() - start) / reps * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, nargs="+", default=[1, 5, 10, 50])
    p.add_argument("--activation", default="tanh")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--book", type=int, nargs=3, default=[5, 1000, 10], metavar=("REPEATS", "EPOCHS", "EVERY"),
                   help="the default notebook's repeats, epochs and measurement interval, per activation")
    args = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, {args.activation}, {args.bits} bits")
    print(f"{'models':>6} {'train ms/epoch':>14} {'measure ms':>10} {'sequential/stacked':>18} "
          f"{'paper-scale projection':>22}")
    one = None
    for s in args.models:
        train_ms, meas_ms = timings(s, args.activation, args.bits, args.epochs, args.device)
        per_epoch = train_ms + meas_ms / 5  # MI every 5 epochs
        one = one if one is not None else per_epoch
        paper_min = (8000 * train_ms + 1601 * meas_ms) / 1e3 / 60 * (50 / s)
        print(f"{s:>6} {train_ms:>14.2f} {meas_ms:>10.2f} {s * one / per_epoch:>18.1f} "
              f"{paper_min:>18.1f} min  (50 repeats x 8000 epochs, in stacks of {s})")
    repeats, epochs, every = args.book
    train_ms, meas_ms = timings(repeats, args.activation, args.bits, args.epochs, args.device)
    book_s = (epochs * train_ms + (epochs // every + 1) * meas_ms) / 1e3
    print(f"book default: {repeats} repeats x {epochs} epochs, MI every {every}: {book_s:.0f} s per activation")


if __name__ == "__main__":
    main()
