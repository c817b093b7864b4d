"""Cost of the image flows' CNN couplings on the CPU: one hypernetwork (3 convolutions, 16 channels, 16x16 images,
batch 256) forward and backward in the NCHW and the channels-last (NHWC) memory format, and one N-MIENF fit on 1,000
pairs of 16x16 bump images as ibcore runs it (channels-last).

    .venv/bin/python benchmarks/bench_image_flow.py [--threads 1] [--epochs 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

from ibcore.estimators import make
from ibcore.tasks import image_pair


def hypernet_ms(memory_format, repeats: int = 10) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 2, 3, padding=1)).to(memory_format=memory_format)  # fmt: skip
    x = torch.randn(256, 1, 16, 16, generator=g).contiguous(memory_format=memory_format)
    for _ in range(3):
        net(x).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        net(x)
    forward = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        net(x).sum().backward()
    return forward * 1e3, (time.perf_counter() - start) / repeats * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    for name, fmt in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        f, fb = hypernet_ms(fmt)
        print(f"hypernetwork {name:13s}: forward {f:6.1f} ms, forward + backward {fb:6.1f} ms (batch 256)")
    x, y = image_pair(1000, 6.0, "bumps", 16, seed=0)
    flow = make("mienf", epochs=args.epochs, latent=2, patience=0, seed=0)
    flow.estimate(x[:50], y[:50])  # warm-up (imports, first allocations)
    start = time.perf_counter()
    r = flow.estimate(x, y)
    print(f"N-MIENF on 1,000 bump pairs, {args.epochs} epochs: {time.perf_counter() - start:.1f} s "
          f"(estimate {r.value:.2f} nats, true 6)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
