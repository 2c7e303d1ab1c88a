"""The evaluation engine: one pass over the evaluation images for a whole grid of cells.

Per batch (docs/ARCHITECTURE.md): the clean images and each attacked version are built once; for each
defense its λ-independent maps are computed once; then each λ costs one cheap ``apply`` and one
forward pass. Everything stays on the device; only predictions go back to the host.
Cells already in the store are skipped (resume); a grid with nothing missing does no work.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from patchbench import __version__
from patchbench.attacks import NO_ATTACK, evasion_label
from patchbench.attacks.patch import Patch
from patchbench.data import ImageSource, iterate
from patchbench.defenses.base import CERTIFIED, MASK, Defense
from patchbench.devices import machine
from patchbench.evaluation.ssim import ssim_per_image
from patchbench.store.columns import check_row, patch_meta_columns
from patchbench.store.results import ResultStore, git_sha, now_utc, run_id, wilson_ci
from patchbench.util import progress_bar


@dataclass
class Condition:
    """What the classifier is shown before any defense: clean images, images with a patch, or
    images perturbed by an evasion attack (``attack(x, y)``, e.g. PGD; TOMM 2022 Table 6)."""

    patch: Patch | None = None
    attack: Any = None  # an Attack instance (forward(images, labels)) for evasion conditions
    attack_config: Any = None  # its EvasionConfig: name, eps, steps, ... (the cell's identity)

    @property
    def name(self) -> str:
        return "clean" if self.patch is None and self.attack is None else "attacked"

    def fields(self) -> dict[str, Any]:
        if self.attack is not None:
            c = self.attack_config
            params = {"eps": c.eps, "steps": c.steps, "step_size": c.step_size, "seed": c.seed, **c.params}
            return {"attack": c.name, "attack_params": json.dumps(params, sort_keys=True), "attack_label": evasion_label(c),
                    "patch_px": None, "target": None, "placement": None, "patch_id": None,
                    "patch_area_pct": None, "condition": "attacked"}
        if self.patch is None:
            return {"attack": NO_ATTACK, "attack_params": None, "patch_px": None, "target": None, "placement": None,
                    "patch_id": None, "patch_area_pct": None, "condition": "clean"}
        p = self.patch
        return {"attack": p.meta.get("attack", "patch"), "attack_params": None, "patch_px": p.size,
                "target": p.target, "placement": p.placement.label(),
                "patch_id": p.content_id(), "patch_area_pct": p.meta.get("area_pct"), "condition": "attacked",
                **{col: p.meta.get(key) for col, key in patch_meta_columns().items()}}

    def build(self, x: torch.Tensor, y: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The condition's images; ``indices`` (dataset indices) place a randomly placed patch per image."""
        if self.attack is not None:
            return self.attack(x, y).detach()
        return x if self.patch is None else self.patch.apply(x, indices=indices)


@dataclass
class DefenseRun:
    defense: Defense
    lambdas: list[float | None] = field(default_factory=lambda: [None])

    def fields(self) -> dict[str, Any]:
        return {"defense": self.defense.name,
                "defense_params": json.dumps(self.defense.params(), sort_keys=True)}


@dataclass
class Cell:
    condition: Condition
    defense_run: DefenseRun
    lam: float | None
    key: dict[str, Any]
    rid: str


def plan(context: dict[str, Any], conditions: list[Condition], defenses: list[DefenseRun]) -> list[Cell]:
    cells = []
    for cond in conditions:
        cf = cond.fields()
        for dr in defenses:
            lams = dr.lambdas if dr.defense.uses_lambda else [None]
            for lam in lams:
                key = {**context, **cf, **dr.fields(), "lam": None if lam is None else float(lam)}
                cells.append(Cell(cond, dr, key["lam"], key, run_id(key)))
    return cells


def evaluate(
    model: torch.nn.Module,
    source: ImageSource,
    indices: torch.Tensor,
    image_size: int,
    batch_size: int,
    conditions: list[Condition],
    defenses: list[DefenseRun],
    store: ResultStore,
    context: dict[str, Any],
    device: torch.device,
    num_workers: int = 0,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    ssim_n: int = 0,
    amp: str | None = None,
) -> pd.DataFrame:
    """Compute every missing cell of conditions × defenses × λ; return all the grid's rows.

    ``ssim_n`` > 0: for clean cells with a defense, also the mean SSIM between the input and the
    defended image over the first ``ssim_n`` evaluation images (ICAART Sec. 4.2). ``amp`` (bf16 |
    fp16): the classifier's prediction passes run under ``torch.autocast`` (logits cast back to fp32
    for the loss); the attacks and the defenses' own model passes stay fp32.
    """
    extra = extra or {}
    check_row({**context, **extra})  # an undeclared column fails before any work
    # a declared key column among ``extra`` (e.g. a plugin's) is part of each cell's run id
    context = {**context, **extra, "eval_n": len(indices)}
    cells = plan(context, conditions, defenses)
    store.planned.extend(c.rid for c in cells)
    todo = [c for c in cells if not store.has(c.rid) and store.owns(c.rid)]
    if todo:
        _run(model, source, indices, image_size, batch_size, todo, store, device, num_workers, progress,
             extra, ssim_n, amp)
    # a shard returns the grid's stored cells (its own and any other shard's finished ones)
    return pd.DataFrame([store.read_cell(c.rid) for c in cells if store.has(c.rid)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict_context(device: torch.device, amp: str | None):
    """The context of a prediction pass: ``torch.autocast`` at ``amp`` (bf16 | fp16) or nothing (fp32)."""

    if amp is None:
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def _run(model, source, indices, image_size, batch_size, todo, store, device, num_workers, progress, extra, ssim_n,
         amp=None):

    n = len(indices)
    ssim_sum = {c.rid: 0.0 for c in todo}
    ssim_count = {c.rid: 0 for c in todo}
    preds = {c.rid: torch.empty(n, dtype=torch.int64) for c in todo}
    loss_sum = {c.rid: 0.0 for c in todo}  # cross-entropy summed over the images (AdvML 2019 reports losses)
    loss_sq = {c.rid: 0.0 for c in todo}  # and its squares, for the per-image standard deviation
    # and the values themselves, in the predictions: claims on losses pair two cells image by image
    losses = {c.rid: torch.empty(n, dtype=torch.float32) for c in todo}
    seconds = {c.rid: 0.0 for c in todo}
    # a certifying defense (maps[CERTIFIED]): per image, whether the certified label is the true one
    certified: dict[str, torch.Tensor] = {}
    masked = {c.rid: None for c in todo}  # Σ over images of the share of pixels maps["mask"] marks
    labels_all = torch.empty(n, dtype=torch.int64)
    # the undefended model on the clean images: the base of each attacked cell's defense success rate,
    # computed once per batch and reused as the clean, undefended cell's own forward pass
    clean_correct = torch.zeros(n, dtype=torch.bool)
    any_attacked = any(c.condition.name == "attacked" for c in todo)
    # group: condition -> defense run -> cells (so maps are computed once per batch and defense)
    groups: dict[int, tuple[Condition, dict[int, tuple[DefenseRun, list[Cell]]]]] = {}
    for c in todo:
        _, by_def = groups.setdefault(id(c.condition), (c.condition, {}))
        by_def.setdefault(id(c.defense_run), (c.defense_run, []))[1].append(c)

    model.eval()
    pos = 0
    bar = progress_bar(None, progress, total=n, desc=f"evaluate {len(todo)} cells", unit="img")
    for batch_idx, x, y in iterate(source, indices, image_size, batch_size, device, num_workers):
        b = len(y)
        labels_all[pos:pos + b] = y.cpu()
        clean_logits = None
        if any_attacked:
            with torch.no_grad(), predict_context(device, amp):
                clean_logits = model(x).float()
            clean_correct[pos:pos + b] = (clean_logits.argmax(1) == y).cpu()
        for cond, by_def in groups.values():
            t0 = time.perf_counter()
            xc = cond.build(x, y, batch_idx)
            _sync(device)
            t_cond = (time.perf_counter() - t0) / sum(len(cs) for _, cs in by_def.values())
            for dr, cs in by_def.values():
                t0 = time.perf_counter()
                maps = dr.defense.maps(xc, model)
                _sync(device)
                t_maps = (time.perf_counter() - t0) / len(cs)
                share = float(maps[MASK].flatten(1).float().mean(1).sum()) if MASK in maps else None
                for cell in cs:
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        xd = dr.defense.apply(xc, maps, cell.lam)
                        undefended_clean = clean_logits is not None and cond.name == "clean" and dr.defense.is_identity
                        if undefended_clean:
                            logits = clean_logits
                        else:
                            with predict_context(device, amp):
                                logits = model(xd).float()
                        p = logits.argmax(1)
                        per_image = F.cross_entropy(logits.float(), y, reduction="none").double()
                        loss_sum[cell.rid] += float(per_image.sum())
                        loss_sq[cell.rid] += float(per_image.square().sum())
                    preds[cell.rid][pos:pos + b] = p.cpu()
                    losses[cell.rid][pos:pos + b] = per_image.float().cpu()
                    if CERTIFIED in maps:
                        certified.setdefault(cell.rid, torch.zeros(n, dtype=torch.bool))[pos:pos + b] = (
                            maps[CERTIFIED].cpu() == y.cpu())
                    seconds[cell.rid] += time.perf_counter() - t0 + t_maps + t_cond
                    if share is not None:
                        masked[cell.rid] = (masked[cell.rid] or 0.0) + share
                    k = min(b, ssim_n - pos)
                    if k > 0 and cond.patch is None and not dr.defense.is_identity:
                        ssim_sum[cell.rid] += float(ssim_per_image(xc[:k], xd[:k]).sum())
                        ssim_count[cell.rid] += k
        pos += b
        bar.update(b)
    bar.close()

    idx = indices.cpu()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    host = machine()
    for cell in todo:
        p = preds[cell.rid]
        correct = int((p == labels_all).sum())
        row = {**cell.key, **cell.condition.fields(), **extra, "lam": cell.lam}
        mean_loss = loss_sum[cell.rid] / n
        row.update(n=n, correct=correct, accuracy=correct / n, loss=mean_loss,
                   loss_std=max(loss_sq[cell.rid] / n - mean_loss ** 2, 0.0) ** 0.5)
        row["ci_low"], row["ci_high"] = wilson_ci(correct, n)
        target = cell.key.get("target")
        attacked_images = clean_correct
        if target is not None:
            # targeted success is measured on images whose true class is not the target
            nontarget = labels_all != int(target)
            row["n_nontarget"] = int(nontarget.sum())
            row["target_hits"] = int(((p == int(target)) & nontarget).sum())
            row["attack_success_rate"] = row["target_hits"] / max(row["n_nontarget"], 1)
            attacked_images = clean_correct & nontarget  # on an image of the target class "correct" = "target"
        if cell.condition.name == "attacked":
            # defense success rate (BMVC 2023 α/β): of the images the undefended model gets right when
            # clean (a targeted attack: those whose class is not the target), the share still classified
            # correctly under the attack (and the defense, if any)
            row["n_clean_correct"] = int(attacked_images.sum())
            row["kept_correct"] = int(((p == labels_all) & attacked_images).sum())
            row["defense_success_rate"] = row["kept_correct"] / max(row["n_clean_correct"], 1)
        row.update(ssim=ssim_sum[cell.rid] / ssim_count[cell.rid] if ssim_count[cell.rid] else None,
                   ssim_n=ssim_count[cell.rid] or None, seconds=round(seconds[cell.rid], 4),
                   masked_pct=None if masked[cell.rid] is None else 100 * masked[cell.rid] / n, device=dev, run_id=cell.rid,
                   git_sha=git_sha(), version=__version__, created=now_utc(), **host)
        pred_df = pd.DataFrame({"index": idx.numpy(), "label": labels_all.numpy(), "pred": p.numpy(),
                                "loss": losses[cell.rid].numpy()})
        if cell.rid in certified:  # certified accuracy: certified for the true label (PatchCleanser)
            pred_df["certified"] = certified[cell.rid].numpy()
            row["n_certified"] = int(certified[cell.rid].sum())
            row["certified_accuracy"] = row["n_certified"] / n
        store.write(row, pred_df)
