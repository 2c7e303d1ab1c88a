"""LGS speed: patchbench's pooled implementation vs the unfold/fold formulation, and the λ sweep
with maps computed once vs recomputed per λ. Ratios are measured in one run on one device.

    python benchmarks/bench_lgs.py [--n 64] [--size 400] [--device cpu|cuda] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
import torch.nn.functional as F

from patchbench.defenses.lgs import LGS, gradient_map, minmax_per_image, sobel_magnitude, window_padding


def gradient_map_unfold(x, window=15, overlap=5, threshold=0.2):
    """The unfold/fold formulation (one copy of every window, window² memory per pixel)."""
    n, c, h, w = x.shape
    stride = window - overlap
    gx = minmax_per_image(sobel_magnitude(x))
    (pt, pb), (pl, pr) = window_padding(h, window, overlap), window_padding(w, window, overlap)
    t = F.pad(gx, (pl, pr, pt, pb))
    hp, wp = t.shape[-2:]
    cols = F.unfold(t, window, stride=stride)  # N × (C·w·w) × L
    keep = (cols.mean(1, keepdim=True) >= threshold).to(x.dtype)
    kept = F.fold(cols * keep, (hp, wp), window, stride=stride)
    total = F.fold(torch.ones_like(cols), (hp, wp), window, stride=stride)
    return (kept / total)[:, :, pt:pt + h, pl:pl + w]


def timeit(fn, device, repeat=3):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.n, 3, args.size, args.size, device=device)
    x[:, :, 20:80, -80:-20] = torch.rand(args.n, 3, 60, 60, device=device)
    torch.testing.assert_close(gradient_map(x), gradient_map_unfold(x))  # same numbers first

    lgs = LGS()
    lambdas = [1.5, 1.9, 2.3, 2.7, 3.1, 3.5]
    rows = []
    t_pool = timeit(lambda: gradient_map(x), device)
    t_unfold = timeit(lambda: gradient_map_unfold(x), device)
    rows.append(("g(x): pooled (patchbench)", t_pool, t_unfold / t_pool))
    rows.append(("g(x): unfold/fold", t_unfold, 1.0))

    def sweep_once():
        m = lgs.maps(x)
        for lam in lambdas:
            lgs.apply(x, m, lam)

    def sweep_recompute():
        for lam in lambdas:
            lgs(x, lam)

    t_once, t_re = timeit(sweep_once, device), timeit(sweep_recompute, device)
    rows.append((f"{len(lambdas)}-λ sweep, maps once", t_once, t_re / t_once))
    rows.append((f"{len(lambdas)}-λ sweep, maps per λ", t_re, 1.0))
    df = pd.DataFrame(rows, columns=["what", "seconds", "speedup_vs_baseline"])
    df["images_per_s"] = args.n / df["seconds"]
    df.insert(0, "device", str(device))
    df.insert(1, "images", f"{args.n}x3x{args.size}x{args.size}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
