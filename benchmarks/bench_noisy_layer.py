"""Cost of the noisy-layer lens (ibcore.estimators.NoisyLayerMI) on an SZT-sized layer: one layer's I(X;T) and
I(T;Y) in one call (``estimate_batch`` with input ids and labels), as the information plane asks for them.

4096 inputs, layers of 2, 4 and 10 units (compressed to 4), tanh of Gaussian pre-activations; the k-NN form at its
defaults (8 noisy draws per input, k = 1) and the flow form (one draw per input, ``FlowEntropy`` at its defaults:
three flow fits per call). Prints seconds per call and the values (nats; ln 4096 = 8.318).

    python benchmarks/bench_noisy_layer.py [--repeats 3] [--device cpu]
"""

import argparse
import math
import platform
import time

import torch

from ibcore.estimators import NoisyLayerMI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(4096, device=args.device)
    for width in (2, 4, 10):
        t = torch.tanh(2 * torch.randn(4096, width, generator=g, dtype=torch.float64)).to(args.device)
        labels = (t[:, 0] > 0).long()
        for form, est in (("k-NN", NoisyLayerMI(device=args.device)),
                          ("flow", NoisyLayerMI(replicas=1, entropy="flow-entropy",
                                                entropy_params={"device": args.device}, device=args.device))):
            times = []
            for _ in range(args.repeats if form == "k-NN" else 1):
                start = time.perf_counter()
                i_xt, i_ty = est.estimate_batch(t, [ids, labels])
                times.append(time.perf_counter() - start)
            print(f"width {width:2d}  {form:5s}  {min(times):6.2f} s per call  I(X;T) {i_xt.value:6.3f}  "
                  f"I(T;Y) {i_ty.value:6.3f}  (ln 4096 = {math.log(4096):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
