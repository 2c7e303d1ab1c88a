"""What the patch-optimality section adds to a preset's run, as a ratio to the work the preset already
does (its patches, its adaptive attack and its grid), measured in one process on one machine.

Each kind of work is timed on the preset's model and image size (random images; an attack step costs
the same whatever the pixels), interleaved, best of ``--repeat`` after a warm-up:

* a training step of each patch attack with the preset's entry (LaVAN: batch × restarts images; the
  Adversarial Patch: its own; Patch-RS: one forward pass of LaVAN's images) and of the adaptive LaVAN
  through each defense (the adaptive batch);
* the evaluation of ``--batch`` images through each defense (maps + apply + forward, one λ).

Then the counts: the preset's own patches (every attack × size × seed × steps), adaptive runs
(defenses × steps) and grid cells (conditions × defense runs × λ), and the section's new ones (the
patches, adaptive runs and cells it adds that the preset does not have). The ratio section / preset
is what to expect of the section's share of a run; the preset's model training, certified baseline
and audit are not counted, so the share of the whole run is lower. Usage::

    python benchmarks/bench_optimality_cost.py --preset demo-fmnist [--repeat 3] [--batch 250] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from rich.console import Console

from patchbench.attacks import ATTACKS, AdaptiveLaVAN, Placement
from patchbench.data import get_dataset_info
from patchbench.evaluation.defense_params import resolve_defense
from patchbench.defenses import NoDefense
from patchbench.models import build_classifier
from patchbench.presets import load_preset
from patchbench.sections.optimality import (
    ADAPTIVE, attack_names, defense_lambda, defense_names, grid_sizes, transfer_entry, unbounded_side,
)

console = Console()


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def attack_step(model, entry, size, image_size, channels, steps=3):
    """Seconds per training step of the attack of ``entry`` at ``size`` px."""
    atk = ATTACKS[entry.name].from_config(model, replace(entry, sizes=[size], steps=steps), image_size)
    n = entry.batch_size
    x, y = torch.rand(n, channels, image_size, image_size), torch.randint(1, 10, (n,))
    hold = (x, y) if entry.restarts > 1 else None

    def run():
        atk.fit(iter([(x, y)] * (steps + entry.restarts)), channels, hold)
    return lambda: run(), steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo-fmnist")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--set", action="append", default=[], help="a preset override, e.g. patch-optimality.sizes=[6,10,14]")
    args = ap.parse_args()
    preset = load_preset(args.preset, args.set)
    cfg = preset.extra["patch-optimality"]
    d = preset.data
    channels = get_dataset_info(d.dataset).channels
    torch.manual_seed(0)
    model = build_classifier(preset.model.arch, d.dataset, None, d.image_size).eval().requires_grad_(False)

    # ---- unit costs
    step_s: dict[str, float] = {}
    for name in [n for n in attack_names(preset, cfg) if n != ADAPTIVE]:
        fn, steps = attack_step(model, transfer_entry(preset, cfg, name), min(grid_sizes(preset, cfg)), d.image_size, channels)
        step_s[name] = best_of(fn, args.repeat) / steps
    lavan = transfer_entry(preset, cfg, "lavan")
    defs = {name: defense_lambda(preset, cfg, name, model) for name in defense_names(preset, cfg)}
    x = torch.rand(lavan.batch_size, channels, d.image_size, d.image_size)
    y = torch.randint(1, 10, (lavan.batch_size,))
    adaptive_s = {}
    for name, (defense, lam) in defs.items():
        atk = AdaptiveLaVAN(model, 6, 0, Placement(lavan.placement, lavan.margin), d.image_size, defense=defense, lam=lam,
                            steps=3, record_every=None, lr=lavan.lr, optimizer=lavan.optimizer, progress=False)
        adaptive_s[name] = best_of(lambda: atk.fit(iter([(x, y)] * 5), channels, holdout=(x[:2], y[:2])), args.repeat) / 3
    xe = torch.rand(args.batch, channels, d.image_size, d.image_size)
    maps_s, apply_s = {}, {}  # per cell of eval_n images: the defense's maps (once per λ list), then apply + forward
    for name, (defense, lam) in {"none": (NoDefense(), None), **defs}.items():
        maps = defense.maps(xe, model)
        maps_s[name] = best_of(lambda defense=defense: defense.maps(xe, model), args.repeat) * d.eval_n / args.batch

        def classify(defense=defense, lam=lam, maps=maps):
            with torch.no_grad():
                model(defense.apply(xe, maps, lam))
        apply_s[name] = best_of(classify, args.repeat) * d.eval_n / args.batch
    eval_s = {n: maps_s[n] + apply_s[n] for n in maps_s}  # one cell at one λ

    # ---- the preset's own work
    ad = preset.extra.get("adaptive")
    own_patches = sum(len(a.sizes) * max(len(a.seeds), 1) * a.steps * step_s.get(a.name, step_s["lavan"]) for a in preset.attacks)
    own_adaptive = sum(adaptive_s[n] * (ad.steps or lavan.steps) for n in (ad.defenses if ad else []) if n in adaptive_s)
    conditions = 1 + sum(len(a.sizes) * max(len(a.seeds), 1) for a in preset.attacks)
    per_condition = eval_s["none"] + sum(maps_s.get(dc.name, 0.0) + apply_s.get(dc.name, apply_s["none"]) * len(
        resolve_defense(preset, dc.name, model)[1]) for dc in preset.defenses)
    own_grid = conditions * per_condition
    own = own_patches + own_adaptive + own_grid

    # ---- what the section adds
    sizes = grid_sizes(preset, cfg) + ([unbounded_side(preset, cfg)] if cfg.unbounded else [])
    have = {(a.name, s) for a in preset.attacks for s in a.sizes}
    new_patches = sum(transfer_entry(preset, cfg, n).steps * step_s[n] for n in step_s for s in sizes if (n, s) not in have)
    ad_size = (ad.size or max(lavan.sizes)) if ad is not None else None
    steps = (ad.steps or lavan.steps) if ad is not None else (cfg.adaptive_steps or lavan.steps)
    new_adaptive = sum(adaptive_s[n] * steps for n in defs for s in sizes if not (ad is not None and s == ad_size and n in ad.defenses))
    new_cells = sum(eval_s[n] for n in ["none", *defs] for name in step_s for s in sizes if (name, s) not in have)
    new_cells += sum(eval_s[n] for n in defs for s in sizes if not (ad is not None and s == ad_size))  # adaptive, last step
    new = new_patches + new_adaptive + new_cells
    console.print(f"{args.preset}: per step (s) {({k: round(v, 4) for k, v in step_s.items()})}, adaptive "
                  f"{({k: round(v, 4) for k, v in adaptive_s.items()})}; {d.eval_n} images: maps "
                  f"{({k: round(v, 3) for k, v in maps_s.items()})}, apply + classify {({k: round(v, 3) for k, v in apply_s.items()})}")
    console.print(f"preset's own patches {own_patches:.0f} s, adaptive {own_adaptive:.0f} s, grid {own_grid:.0f} s; "
                  f"the section adds patches {new_patches:.0f} s, adaptive {new_adaptive:.0f} s, cells {new_cells:.0f} s: "
                  f"[bold]{new / own:.2f}×[/] the preset's own work (this machine, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
