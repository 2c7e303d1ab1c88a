"""The undefended operating point of a patch-defense preset: per attack, size and seed, the patch
(trained, or loaded from the results' cache, so the preset's own run reuses it), its targeted
success and the accuracy it leaves on the preset's evaluation images *without any defense*, and
the audit's verdicts on its training traces (incomplete optimisation, silent success;
patchbench/audit/traces.py). No defended number is computed: this is what an operating-point rule
that reads the undefended model only (docs/OPERATING_POINTS.md) is checked with.

Usage::

    python benchmarks/operating_point.py --preset demo-fmnist --results DIR --attack lavan --sizes 10,12,14 \\
        --seeds 0,1,2,3,4 [--set attacks.0.steps=300 ...] [--csv out.csv]

``--set`` takes the preset overrides of the CLI (``attacks.0.steps=300``); the attack entry named by
``--attack`` is used, its ``sizes`` and ``seeds`` replaced by ``--sizes`` and ``--seeds``. Seconds
are the patch's own training time (``train_seconds``, 0 for a cached patch) and the process CPU
time, the latter less sensitive to a shared machine's load.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import pandas as pd
import torch

from patchbench.audit.traces import minibatch_incomplete_optimization, minibatch_silent_success
from patchbench.cache.models import ensure_model
from patchbench.cache.patches import train_patch
from patchbench.data import eval_indices, iterate, load_split
from patchbench.presets import load_preset, validate
from patchbench.store.results import ResultStore


def verdicts(meta: dict) -> tuple[bool, bool | None]:
    """(incomplete optimisation, silent success) of a patch's saved traces, as the audit reads them."""
    loss, hits = meta.get("loss_trace") or [], meta.get("hit_trace") or []
    incomplete = bool(minibatch_incomplete_optimization(torch.tensor(loss, dtype=torch.float64))) if len(loss) >= 4 else None
    silent = None
    if len(hits) >= 4 and meta.get("train_success_rate") is not None and not meta.get("random_placement"):
        silent = bool(minibatch_silent_success(torch.tensor(hits, dtype=torch.float64), float(meta["train_success_rate"]),
                                               int(meta["batch_size"]), int(meta.get("success_n") or 0) or None))
    return incomplete, silent


@torch.no_grad()
def undefended(model, x: torch.Tensor, y: torch.Tensor, patch, target: int | None) -> tuple[float, float]:
    """(accuracy, targeted success on non-target images) with the patch at its test placement."""
    pred = torch.cat([model(patch.apply(x[i:i + 500])).argmax(1) for i in range(0, len(x), 500)])
    keep = y != target if target is not None else torch.ones_like(y, dtype=torch.bool)
    hit = pred[keep] == target if target is not None else pred[keep] != y[keep]
    return float((pred == y).float().mean()), float(hit.float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo-fmnist")
    ap.add_argument("--results", required=True, help="results directory (its artifacts cache is used and filled)")
    ap.add_argument("--attack", default="lavan")
    ap.add_argument("--sizes", required=True, help="comma list of patch sides (px)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--set", action="append", default=[], help="preset override, e.g. attacks.0.steps=300")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()

    p = load_preset(args.preset, args.set)
    validate(p)
    device = torch.device("cpu")
    store = ResultStore(args.results)
    loaded = ensure_model(p, store, device, progress=False)
    entry = next(a for a in p.attacks if a.name == args.attack)
    d = p.data
    src = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(src), d.eval_n, d.eval_seed)
    x = torch.cat([b for _, b, _ in iterate(src, idx, d.image_size, 1000, device)])
    y = src.labels[idx]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = replace(entry, seed=seed, seeds=[], sizes=[size])
            cpu0, t0 = time.process_time(), time.perf_counter()
            patch = train_patch(p, cfg, size, loaded, store, device, progress=False)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            acc, succ = undefended(loaded.model, x, y, patch, cfg.target)
            io, ss = verdicts(patch.meta)
            rows.append({"attack": args.attack, "size": size, "area_pct": round(100 * size ** 2 / d.image_size ** 2, 2),
                         "seed": seed, "steps": cfg.steps, "lr": cfg.lr, "restarts": cfg.restarts, "batch": cfg.batch_size,
                         "success": succ, "accuracy": acc, "train_success": patch.meta.get("train_success_rate"),
                         "incomplete_opt": io, "silent_success": ss, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    g = df.groupby(["attack", "size", "area_pct", "steps", "lr", "restarts", "batch"])
    summary = g.agg(seeds=("seed", "count"), success=("success", "mean"), success_sd=("success", "std"),
                    success_min=("success", "min"), accuracy=("accuracy", "mean"),
                    incomplete=("incomplete_opt", "sum"), silent=("silent_success", "sum"),
                    cpu_s=("cpu_s", "mean")).reset_index()
    print(f"\n{args.preset} ({loaded.model_id}, clean test accuracy {loaded.meta.get('test_accuracy', math.nan):.4f}), "
          f"{len(y)} evaluation images, no defense; incomplete/silent: seeds flagged")
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
