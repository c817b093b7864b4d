"""Host memory and time of probing a ResNet-18-sized network on 10,000 MNIST images (issue 20's target: under 2 GB).

torchvision's ResNet-18 layout (11.7 M parameters, built by ``ibcore.nets.resnet18`` for one input channel and ten
classes, untrained: the cost does not depend on the weights) takes the 10,000 MNIST test images. Each setting runs
in its own process, whose peak resident memory (``ru_maxrss``) is printed with the wall time:

- ``every-leaf-mean``: every default leaf layer (55 of them), each batch mean-pooled over space on the device;
- ``stages-ipca``: the four stage outputs and the stem at full width (up to 64 x 7 x 7 = 3,136 units), compressed
  by an ``IncrementalPCA(10)`` fitted batch by batch, then measured: nothing is ever held at full width.

Each measures I(X;T) with 30-bin binning against input ids and I(T;Y) with the continuous-discrete k-NN estimator
after the same per-layer compression to at most 10 dimensions. Target: peak under 2 GB of host memory.

    python benchmarks/bench_probe.py [--n 10000] [--batch 500] [--device cpu]
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

SETTINGS = ("every-leaf-mean", "stages-ipca")


def run_one(setting: str, n: int, batch: int, device: str) -> dict:
    import torch

    from ibcore.data import mnist_tensors
    from ibcore.estimators import PCA, Binning, ClassMI, IncrementalPCA
    from ibcore.nets import resnet18
    from ibcore.probe import Probe

    x, y = mnist_tensors("test", flatten=False, standardize=True, device=device)
    x, y = x[:n], y[:n]
    net = resnet18(in_channels=1, n_classes=10, seed=0, device=device)
    pair = {"bins": (Binning(n_bins=30), ClassMI(k=5))}
    if setting == "every-leaf-mean":
        probe = Probe(x, y, pair, pool="mean", compressor=lambda: PCA(10), batch_size=batch)
    else:
        probe = Probe(x, y, pair, layers=["relu", "layer1.1.relu", "layer2.1.relu", "layer3.1.relu", "layer4.1.relu"],
                      pool="flatten", compressor=lambda: IncrementalPCA(10, batch_size=batch),
                      batch_size=batch)  # fmt: skip
    t0 = time.perf_counter()
    rows = probe.measure(net, 0)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"setting": setting, "layers": len({r["module"] for r in rows}), "widest": max(r["width"] for r in rows),
            "seconds": seconds, "peak_gib": peak_kib / 2**20}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="probe images")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.n, args.batch, args.device)))
        return
    print(f"# probe memory: ResNet-18 layout, {args.n} MNIST images, batch {args.batch}, {args.device}, "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print(f"{'setting':<18} {'layers':>6} {'widest':>7} {'seconds':>8} {'peak GiB':>9}  target < 2 GB")
    for s in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--one", s, "--n", str(args.n), "--batch", str(args.batch),
                              "--device", args.device], capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ok = "ok" if r["peak_gib"] * 2**30 < 2e9 else "OVER"
        print(f"{r['setting']:<18} {r['layers']:>6} {r['widest']:>7} {r['seconds']:>8.1f} {r['peak_gib']:>9.2f}  {ok}")


if __name__ == "__main__":
    main()
