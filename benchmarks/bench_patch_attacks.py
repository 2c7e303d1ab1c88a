"""Patch attacks at equal budget: patchbench's optimisers vs an independent plain loop.

The reference (:func:`reference_patch`) is written here from the attacks' definitions alone, with
nothing of patchbench's attack code: a patch δ ~ U(0, 1), Adam on δ, each image of a batch gets
the patch at its own random location (Adversarial Patch: expectation over location only, the
demo preset's EoT) or at the fixed test placement (LaVAN), the paste done image by image in a
Python loop, δ clipped to [0, 1] after each step. Loss: −log p(target) (Adversarial Patch, Eq. 2)
or −(z_target − z_source) (LaVAN, Eq. 3).

For each configuration, the same model, training pool, patch size, steps and batch size; the
result is accuracy and targeted success with the patch at the test placement on the preset's
evaluation images (success on non-target images), and seconds. Usage::

    python benchmarks/bench_patch_attacks.py --preset demo-fmnist --attack adversarial_patch --size 14 \\
        [--steps 300] [--results results] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F
from rich.console import Console

from patchbench.cache.models import ensure_model

from patchbench.cache.patches import attack_entry, patch_batches, patch_candidates, selection_indices
from patchbench.attacks import attack_class
from patchbench.attacks.patch import Placement
from patchbench.presets import load_preset
from patchbench.data import eval_indices, get_dataset_info, iterate, load_split
from patchbench.store.results import ResultStore


def reference_patch(model, images, labels, target, size, steps, batch, lr, seed, random_location, test_offset, kind):
    """The independent plain loop (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = images.shape
    patch = torch.rand(c, size, size, generator=g).requires_grad_(True)
    opt = torch.optim.Adam([patch], lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        pasted = []
        for i in idx.tolist():
            if random_location:
                top, left = (int(v) for v in torch.randint(0, h - size + 1, (2,), generator=g))
            else:
                top, left = test_offset
            img = images[i].clone()
            img[:, top:top + size, left:left + size] = patch
            pasted.append(img)
        logits = model(torch.stack(pasted))
        if kind == "adversarial_patch":
            loss = -F.log_softmax(logits, 1)[:, target].mean()
        else:
            loss = -(logits[:, target] - logits.gather(1, labels[idx][:, None]).squeeze(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            patch.clamp_(0, 1)
    return patch.detach()


@torch.no_grad()
def score(model, x, y, pixels, target, test_offset):
    size = pixels.shape[-1]
    top, left = test_offset
    xa = x.clone()
    xa[:, :, top:top + size, left:left + size] = pixels
    pred = torch.cat([model(xa[i:i + 500]).argmax(1) for i in range(0, len(xa), 500)])
    nontarget = y != target
    return float((pred == y).float().mean()), float((pred[nontarget] == target).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo-fmnist")
    ap.add_argument("--attack", default="adversarial_patch", choices=["adversarial_patch", "lavan"])
    ap.add_argument("--size", type=int, default=14)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--seeds", default="0", help="comma list")
    ap.add_argument("--ref-lrs", default="0.01,0.03,0.1", help="Adam learning rates of the reference loop (best is reported)")
    ap.add_argument("--configs", default="preset,adam:0.05:cosine,sign:0.03:cosine",
                    help="patchbench settings: preset, or optimizer:lr:schedule[:restarts[:batch[:steps]]]")
    ap.add_argument("--results", default="results", help="where the preset's classifier is cached")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    p = load_preset(args.preset)
    device = torch.device("cpu")
    loaded = ensure_model(p, ResultStore(args.results), device, progress=False)
    model = loaded.model
    base = attack_entry(p, args.attack, sizes=[args.size], steps=args.steps)
    d = p.data
    info = get_dataset_info(d.dataset)
    train_src = load_split(d.dataset, d.root, "train", d.image_size)
    pool = patch_candidates(train_src, base)[: base.train_pool]
    train_x = torch.cat([x for _, x, _ in iterate(train_src, pool, d.image_size, 1000, device)])
    train_y = train_src.labels[pool]
    eval_src = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(eval_src), d.eval_n, d.eval_seed)
    ex = torch.cat([x for _, x, _ in iterate(eval_src, idx, d.image_size, 1000, device)])
    ey = eval_src.labels[idx]
    offset = Placement(base.placement, base.margin).offset(d.image_size, args.size)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for lr in [float(v) for v in args.ref_lrs.split(",")]:
            t0 = time.perf_counter()
            pixels = reference_patch(model, train_x, train_y, base.target, args.size, base.steps, base.batch_size, lr,
                                     seed, base.random_placement, offset, args.attack)
            acc, succ = score(model, ex, ey, pixels, base.target, offset)
            rows.append({"who": f"reference adam lr={lr}", "seed": seed, "accuracy": acc, "success": succ,
                         "seconds": time.perf_counter() - t0})
        for spec in args.configs.split(","):
            cfg = replace(base, seed=seed)
            if spec != "preset":
                opt, lr, sched, *rest = spec.split(":")
                cfg = replace(cfg, optimizer=opt, lr=float(lr), schedule=sched, restarts=int(rest[0]) if rest else 1)
                if len(rest) > 1:
                    cfg = replace(cfg, batch_size=int(rest[1]))
                if len(rest) > 2:
                    cfg = replace(cfg, steps=int(rest[2]))
            atk = attack_class(args.attack, patch=True).from_config(model, cfg, d.image_size, progress=False)
            batches = patch_batches(train_src, pool, d.image_size, cfg.batch_size, device, cfg.seed)
            hold = selection_indices(patch_candidates(train_src, cfg), cfg.train_pool, cfg.select_n)
            holdout = next(iter((x, y) for _, x, y in iterate(train_src, hold, d.image_size, len(hold), device)))
            t0 = time.perf_counter()
            patch = atk.fit(batches, channels=info.channels, holdout=holdout if cfg.restarts > 1 else None)
            acc, succ = score(model, ex, ey, patch.pixels, base.target, offset)
            rows.append({"who": f"patchbench {spec if spec != 'preset' else f'preset ({cfg.optimizer} lr={cfg.lr})'}",
                         "seed": seed, "accuracy": acc, "success": succ, "seconds": time.perf_counter() - t0})
            Console(stderr=True).print(rows[-1])
    df = pd.DataFrame(rows)
    summary = df.groupby("who", sort=False).agg(accuracy=("accuracy", "mean"), success=("success", "mean"),
                                                 seconds=("seconds", "mean"), seeds=("seed", "count")).reset_index()
    print(f"{args.attack} {args.size}px, {base.steps} steps, batch {base.batch_size}, preset {args.preset} "
          f"({len(ey)} evaluation images, mean over seeds)")
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    if args.csv:
        df.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
