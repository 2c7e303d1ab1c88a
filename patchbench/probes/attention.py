"""Does an attention objective (AAD, TOMM 2022's Eq. 7-10) act on the maps? The Grad-CAM maps of an
evasion preset's trained models, clean and under PGD.

Per model (training objective × training seed, loaded from the cache, never
trained here) on the first ``n`` evaluation images:

* ``iou@K``: TOMM Sec. 3.2 / Table 3, Eq. 6 — the attention areas of the clean and the adversarial
  image, each the K grid cells of highest Grad-CAM score, and their intersection over union, mean
  over images (the paper reports K = 5, 10, 20, 30 on Inception's 8×8 grid; LeNet's is 14×14). A
  model whose attention is preserved under attack (what L_p asks for) scores higher;
* ``l1``: mean over images and grid cells of |g(x) − g(x_adv)|, the per-cell L_p of Eq. 9 on maps
  normalized by their maximum (as training computes it);
* ``cam0`` / ``cam0_adv``: the share of clean / adversarial maps that are all zero (a collapsed
  map has no attention area);
* from the model's training history (its last epoch's mean terms): ``alpha_Lr`` = α·L_r and
  ``beta_Lp`` = β·L_p beside ``Lc``, so the size of the attention terms in the loss is visible.

The attack is the preset's first PGD column (its ε, steps and step size) on the classifier.
``python -m patchbench.probes.attention --preset demo-tomm-fmnist --results DIR [--n 500]
[--set key=value ...]`` prints one row per model.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from patchbench.attacks import PGD
from patchbench.cache.models import ensure_model, with_training
from patchbench.data import eval_indices, load_split
from patchbench.devices import resolve_device
from patchbench.errors import check, is_int
from patchbench.models.gradcam import gradcam_for
from patchbench.presets import load_preset
from patchbench.probes import command
from patchbench.store.results import NotCached, ResultStore

CELLS = (5, 10, 20, 30)


def topk_area(g: torch.Tensor, k: int) -> torch.Tensor:
    """Each map's K highest cells as a {0, 1} mask (N×h×w -> N×h×w bool); ties go to the lower flat index."""
    flat = g.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True).view_as(g)


def topk_iou(g: torch.Tensor, g_adv: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 6 per image: |Att(x_adv) ∩ Att(x)| / |Att(x_adv) ∪ Att(x)| with K-cell areas (N,)."""
    a, b = topk_area(g, k).flatten(1), topk_area(g_adv, k).flatten(1)
    return (a & b).sum(1).float() / (a | b).sum(1).float()


def attention_change(model, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, cells=CELLS) -> dict:
    """The map statistics of the module docstring for one batch (grid maps, normalized, class = label)."""
    cam = gradcam_for(model, normalize=True, upsample=False)
    g = cam.compute(x, y, create_graph=False)[0].detach()
    g_adv = cam.compute(x_adv, y, create_graph=False)[0].detach()
    out = {f"iou@{k}": float(topk_iou(g, g_adv, k).mean()) for k in cells if k <= g[0].numel()}
    out["l1"] = float((g - g_adv).abs().mean())
    out["cam0"] = float((g.flatten(1).amax(1) == 0).float().mean())
    out["cam0_adv"] = float((g_adv.flatten(1).amax(1) == 0).float().mean())
    return out


def training_terms(meta: dict) -> dict:
    """α·L_r, β·L_p and L_c of the model's last training epoch (its history), where it has them."""
    hist = meta.get("history") or [{}]
    last, t = hist[-1], meta.get("train", {})
    out = {"Lc": last.get("Lc")}
    if "Lr" in last:
        out["alpha_Lr"] = t.get("aad_alpha", 0) * last["Lr"]
        out["beta_Lp"] = t.get("aad_beta", 0) * last["Lp"]
        out["train_cam0"] = last.get("cam0")
    return out


def attention_report(preset, results: Path, device, n: int = 500) -> pd.DataFrame:
    """One row per cached model of ``preset`` (objective × training seed); models not trained yet are skipped."""
    check(is_int(n) and n >= 1, f"n must be a positive number of images, got {n!r}")
    pgd = next((e for e in preset.evasion if e.name == PGD.name), None)
    check(pgd is not None, f"preset {preset.name} has no pgd evasion column to attack the maps with")
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)[:n]
    x, y = source.batch(idx, d.image_size, device), source.labels[idx].to(device)
    store = ResultStore(results, plan_only=True)
    rows = []
    for training in preset.trainings or [preset.model.train.training]:
        for seed in preset.seeds_of(training):
            p = with_training(preset, training).with_train(seed=seed)
            try:
                loaded = ensure_model(p, store, device, progress=False)
            except NotCached:  # plan-only store: a model not trained yet has nothing to measure
                continue
            attack = PGD.from_config(loaded.model, pgd, d.image_size)
            x_adv = torch.cat([attack(x[i:i + d.batch_size], y[i:i + d.batch_size]) for i in range(0, len(x), d.batch_size)])
            with torch.no_grad():
                acc_adv = float((loaded.model(x_adv).argmax(1) == y).float().mean())
            rows.append({"training": training, "seed": seed, "n": len(idx), "pgd_acc": acc_adv,
                         **attention_change(loaded.model, x, y, x_adv), **training_terms(loaded.meta)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = command.parser("attention", __doc__, preset="demo-tomm-fmnist", n=500)
    args = ap.parse_args(argv)

    def probe() -> pd.DataFrame:
        preset = load_preset(args.preset, args.set)
        df = attention_report(preset, Path(args.results), resolve_device(preset.device), args.n)
        check(not df.empty, "no cached model of the preset in the results directory")
        return df

    return command.run(probe, digits=4)


if __name__ == "__main__":
    raise SystemExit(main())
