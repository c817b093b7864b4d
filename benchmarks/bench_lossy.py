"""Cost of one epoch's information-plane measurement through lossy compression (Butakov et al. 2024, MNIST).

The paper's CNN (untrained: the cost does not depend on the weights) on ``--eval`` MNIST test images: the layers,
then for each of the 5 layers PCA to 4 dimensions, I(X;L) by entropy-mi against a 4-dimensional input code and
I(L;Y) by class-mi, KL entropies with k = 5, exactly as ``InformationPlane`` measures each epoch in
``notebooks/lossy_mnist.ipynb``. The input code is a random projection of the images squashed by tanh (the
autoencoder's training is not part of the per-epoch cost). Prints seconds per layer and per epoch, and the
projection for the paper's 300 epochs. Target: under 30 s per epoch on one H100.

    python benchmarks/bench_lossy.py [--eval 10000] [--device cpu] [--entropy kl] [--repeats 2]
"""

import argparse
import platform
import time

import torch

from ibcore.data import mnist_tensors
from ibcore.estimators import PCA, LossyMI, make
from ibcore.nets import NoisyCNN


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", type=int, default=10000, help="test images measured")
    p.add_argument("--device", default="cpu")
    p.add_argument("--entropy", default="kl", choices=["kl", "wkl"])
    p.add_argument("--repeats", type=int, default=2, help="timed epochs (after one warm-up)")
    args = p.parse_args()
    x, y = mnist_tensors("test", flatten=False, standardize=True, device=args.device)
    x, y = x[: args.eval], y[: args.eval]
    net = NoisyCNN((1, 28, 28), channels=(8, 16, 32), dense=(32,), activation="leaky_relu", padding=0, dropout=0.1,
                   noise_std=1e-3, relative_noise=True, input_noise=True, output="log_softmax", seeds=[0],
                   device=args.device)
    net.eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    codes = torch.tanh(x.flatten(1) @ torch.randn(784, 4, generator=g).to(args.device) / 28.0).double()
    xl = LossyMI("entropy-mi", {"entropy": args.entropy, "k": 5}, x_compressor=PCA(4))
    ly = LossyMI("class-mi", {"entropy": args.entropy, "k": 5}, x_compressor=PCA(4))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {args.device}; {len(x)} test images, {args.entropy} entropies")
    make("kl").estimate(torch.randn(100, 2, device=args.device))  # warm-up
    totals = []
    for rep in range(args.repeats + 1):
        _sync(args.device)
        start = time.perf_counter()
        with torch.no_grad():
            layers = net.layers(x)
        _sync(args.device)
        forward = time.perf_counter() - start
        parts = []
        for l, t in enumerate(layers, start=1):
            t0 = time.perf_counter()
            a = xl.estimate(t[0], codes).value
            b = ly.estimate(t[0], y).value
            _sync(args.device)
            parts.append((l, t.shape[-1], time.perf_counter() - t0, a, b))
        total = time.perf_counter() - start
        if rep == 0:
            continue  # warm-up
        totals.append(total)
        print(f"epoch {rep}: forward {forward:.2f} s; " + "; ".join(
            f"L{l} ({w} units) {s:.2f} s [I(X;L) {a:.2f}, I(L;Y) {b:.2f}]" for l, w, s, a, b in parts))
    best = min(totals)
    print(f"one epoch's measurement: {best:.1f} s (best of {len(totals)}); 300 epochs: {300 * best / 60:.0f} min")


if __name__ == "__main__":
    main()
