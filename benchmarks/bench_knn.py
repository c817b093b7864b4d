"""Wall time and peak memory of the k-NN estimators (KSG mutual information, Kozachenko-Leonenko entropy).

Every configuration (estimator, device, backend, N, dims) runs in a fresh Python process, so that its peak memory
can be read honestly: on the CPU as the growth of the process's peak resident set (``ru_maxrss``) over its value
after imports, data generation and a small warm-up call; on CUDA as ``torch.cuda.max_memory_allocated`` over the
memory held before the call. Times are wall-clock seconds of one ``estimate`` call on data already on the device
(the best of up to three calls when a call takes under a second). Data: ``correlated_gaussian(N, mi=1, dim)``, so
KSG sees ``dim + dim`` joint dimensions and KL entropy ``dim``.

``cpu_s`` is the CPU time of the call summed over threads (``time.process_time``): on a shared machine, where
wall time depends on what else runs, ``cpu_s / cores`` is what the call would take with the cores to itself.
Configurations predicted to exceed ``--time-cap`` seconds (extrapolated from the same configuration at smaller N)
are printed as ``skipped``.

Usage:
    python benchmarks/bench_knn.py                      # everything that applies on this machine
    python benchmarks/bench_knn.py --n 10000 --dims 5 --estimators ksg --backends kdtree torch
    python benchmarks/bench_knn.py --device cuda --n 100000 --dims 10 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

# Targets from the issue: (estimator, device, N, dim per variable, seconds, on what).
TARGETS = [("ksg", "cpu", 10_000, 5, 0.5, "2 cores"), ("ksg", "cuda", 100_000, 10, 1.0, "one H100")]
WARMUP_SAMPLES = 256
MI_NATS = 1.0


def _worker(cfg: dict) -> dict:
    """Run one configuration in this (fresh) process and return its measurements."""
    import resource

    import torch

    from ibcore.estimators import KSG, KozachenkoLeonenko
    from ibcore.tasks import correlated_gaussian

    device = torch.device(cfg["device"])
    dtype = getattr(torch, cfg["dtype"])
    x, y = correlated_gaussian(cfg["n"], MI_NATS, cfg["dim"], seed=0)
    x = torch.from_numpy(x).to(device=device, dtype=dtype)
    y = torch.from_numpy(y).to(device=device, dtype=dtype)
    if cfg["estimator"] == "ksg":
        est = KSG(k=cfg["k"], backend=cfg["backend"])

        def call(n=None):
            return est.estimate(x[:n], y[:n])
    else:
        est = KozachenkoLeonenko(k=cfg["k"], backend=cfg["backend"])

        def call(n=None):
            return est.estimate(x[:n])

    cuda = device.type == "cuda"
    call(WARMUP_SAMPLES)  # thread pools, CUDA context and kernels, lazy imports
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times, cpu_times = [], []
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        res = call()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if times[-1] > 1.0:
            break
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {
        "time_s": min(times),
        "cpu_s": cpu_times[times.index(min(times))],
        "peak_mb": peak_mb,
        "value": res.value,
        "backend_used": res.diagnostics["backend"],
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
    }


def _predict(history: list[tuple[int, float]], n: int) -> float | None:
    """Extrapolate the time at ``n`` from the same configuration at smaller N (power law in N)."""
    if not history:
        return None
    (n1, t1) = history[-1]
    if len(history) >= 2:
        (n0, t0) = history[-2]
        alpha = math.log(max(t1, 1e-4) / max(t0, 1e-4)) / math.log(n1 / n0)
        alpha = min(max(alpha, 1.0), 2.2)
    else:
        alpha = 2.0  # brute force is O(N^2); a k-d tree is no worse in high dimension
    return t1 * (n / n1) ** alpha


def _run_config(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(cfg)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"failed: {tail[:80]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


_HEADER = (
    f"{'estimator':<9} {'device':<6} {'backend':<7} {'N':>7} {'dims':>6} {'time_s':>9} {'cpu_s':>8} {'peak_MB':>9} "
    f"{'value':>8}  note"
)


def _print_row(row: dict) -> None:
    dims = f"{row['dim']}+{row['dim']}" if row["estimator"] == "ksg" else f"{row['dim']}"
    if "time_s" in row:
        nums = f"{row['time_s']:>9.3f} {row['cpu_s']:>8.3f} {row['peak_mb']:>9.1f} {row['value']:>8.4f}"
    else:
        nums = f"{'-':>9} {'-':>8} {'-':>9} {'-':>8}"
    print(f"{row['estimator']:<9} {row['device']:<6} {row['backend']:<7} {row['n']:>7} {dims:>6} {nums}  "
          f"{row['note']}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="sample sizes")
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 5, 10, 50], help="dimension of x and of y")
    parser.add_argument("--estimators", nargs="+", default=["ksg", "kl"], choices=["ksg", "kl"])
    parser.add_argument("--backends", nargs="+", default=["kdtree", "torch"], choices=["kdtree", "torch", "auto"])
    parser.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: cpu, and cuda if present)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--time-cap", type=float, default=30.0, help="skip configurations predicted to take longer (s)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker is not None:
        print(json.dumps(_worker(json.loads(args._worker))))
        return

    import torch

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"# bench_knn: torch {torch.__version__}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
          f"devices {devices}, dtype {args.dtype}, k={args.k}, time cap {args.time_cap:.0f} s, "
          f"data correlated_gaussian(mi={MI_NATS})")
    print(_HEADER)
    print("-" * len(_HEADER))
    rows, history = [], {}
    configs = [
        (estimator, device, backend, dim, n)
        for estimator in args.estimators
        for device in devices
        for backend in args.backends
        if not (backend == "kdtree" and device != "cpu")  # the k-d tree runs on the CPU only
        for dim in args.dims
        for n in sorted(args.n)
    ]
    for estimator, device, backend, dim, n in configs:
        key = (estimator, device, backend, dim)
        row = {"estimator": estimator, "device": device, "backend": backend, "n": n, "dim": dim}
        predicted = _predict(history.get(key, []), n)
        if predicted is not None and predicted > args.time_cap:
            row["note"] = f"skipped (predicted {predicted:.0f} s)"
        else:
            res = _run_config(dict(row, dtype=args.dtype, k=args.k), timeout=max(60.0, 4 * args.time_cap))
            row.update(res)
            if "error" in res:
                row["note"] = res["error"]
            else:
                history.setdefault(key, []).append((n, res["time_s"]))
                note = f"auto->{res['backend_used']}" if backend == "auto" else ""
                row["note"] = (note + " " + res["device_name"]).strip() if device == "cuda" else note
        rows.append(row)
        _print_row(row)

    print("\n# targets")
    for estimator, device, n, dim, target, where in TARGETS:
        got = [r for r in rows if (r["estimator"], r["device"], r["n"], r["dim"]) == (estimator, device, n, dim)
               and "time_s" in r]
        label = f"{estimator.upper()} N={n:,} {dim}+{dim} dims on {device} (target < {target} s on {where})"
        if not got:
            print(f"{label}: not measured")
            continue
        for r in got:
            verdict = "met" if r["time_s"] < target else "NOT met"
            print(f"{label}: {r['backend']} {r['time_s']:.3f} s wall, {r['cpu_s']:.3f} s CPU -> {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
