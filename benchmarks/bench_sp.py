"""Cost of the sample-propagation estimator (Goldfeld et al. 2019) on one SZT layer.

One layer of a noisy SZT network (noise_std 0.005): centres for ``--inputs`` inputs with ``--replicas`` noisy
propagations each, then I(X;T) and I(T;Y) with ``--mc`` Monte Carlo points. Prints seconds and peak memory per
layer, and the projection for a whole information plane (5 hidden layers x 84 epochs, the authors' saved run).

Paper scale is 4096 inputs x 100 replicas = 409,600 centres. The authors draw 1000 Monte Carlo points per centre
(4e8 points, each against every centre: ~1.6e14 kernel evaluations per layer); the paired estimator here reaches a
standard error of a few thousandths of a nat with ~1e5 points in all, which is what makes the target reachable.

    python benchmarks/bench_sp.py [--inputs 4096] [--replicas 10] [--mc 20000] [--layer 5] [--device cpu]
"""

import argparse
import platform
import resource
import time

import torch

from ibcore.data import szt_dataset
from ibcore.estimators import SamplePropagation
from ibcore.nets import MLP, SZT_WIDTHS


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=4096)
    p.add_argument("--replicas", type=int, default=10)
    p.add_argument("--mc", type=int, default=20000)
    p.add_argument("--layer", type=int, default=5, help="hidden layer 1..5")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    d = szt_dataset()
    x, y = d.x[: args.inputs].to(args.device), d.y[: args.inputs].to(args.device)
    net = MLP(SZT_WIDTHS, "tanh", seeds=[0], noise_std=0.005, device=args.device)
    est = SamplePropagation(noise_std=0.005, n_mc=args.mc)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {args.device}; {args.inputs} inputs x {args.replicas} replicas, {args.mc} MC points")
    with torch.no_grad():
        c = net.centres(x, args.replicas)[args.layer - 1][0]
    r = c.shape[0] // args.inputs
    ids = torch.arange(args.inputs, device=c.device).repeat_interleave(r)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    a, b = est.estimate_batch(c, [ids, y.repeat_interleave(r)])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        mem = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
    else:
        mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB peak RSS"
    seconds = time.perf_counter() - start
    print(f"layer {args.layer}: {c.shape[0]} centres of dim {c.shape[1]}; I(X;T) = {a.value:.4f} +- {a.std:.4f}, "
          f"I(T;Y) = {b.value:.4f} +- {b.std:.4f} nats")
    print(f"{seconds:.2f} s for both, {mem}; a whole plane (5 layers x 84 epochs) ~ {seconds * 5 * 84 / 60:.1f} min")


if __name__ == "__main__":
    main()
