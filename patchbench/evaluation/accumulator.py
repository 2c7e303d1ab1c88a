"""One cell's results as the engine's pass goes: per batch its predictions, losses, certificate and
masked share; at the end its row (accuracy and its Wilson interval, loss, attack and defense success
rates, SSIM, where it ran) and its per-image predictions, as :mod:`patchbench.store.columns` declares them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from patchbench import __version__
from patchbench.store.results import git_sha, now_utc, wilson_ci


class CellAccumulator:
    """One cell's running results over the batches: :meth:`update` with a batch's logits, then
    :meth:`row` gives the cell's row and its per-image predictions."""

    def __init__(self, cell, n: int):  # cell: the engine's Cell (key, condition, λ, run id)
        self.cell, self.n = cell, n
        self.preds = torch.empty(n, dtype=torch.int64)
        # the per-image losses too: claims on losses pair two cells image by image
        self.losses = torch.empty(n, dtype=torch.float32)
        self.loss_sum = 0.0  # cross-entropy summed over the images (AdvML 2019 reports losses)
        self.loss_sq = 0.0  # and its squares, for the per-image standard deviation
        self.seconds = 0.0
        self.ssim_sum, self.ssim_count = 0.0, 0
        self.masked: float | None = None  # Σ over images of the share of pixels maps[MASK] marks
        self.certified: torch.Tensor | None = None  # per image: certified label == true label

    def update(self, pos: int, y: torch.Tensor, logits: torch.Tensor, certified: torch.Tensor | None = None,
               mask_share: float | None = None) -> None:
        """Add the batch of images ``pos .. pos + len(y)``: its logits, the certificate of a certifying
        defense (per image, certified for the true label) and the summed share of masked pixels."""
        with torch.no_grad():
            per_image = F.cross_entropy(logits.float(), y, reduction="none").double()
            self.loss_sum += float(per_image.sum())
            self.loss_sq += float(per_image.square().sum())
        b = len(y)
        self.preds[pos:pos + b] = logits.argmax(1).cpu()
        self.losses[pos:pos + b] = per_image.float().cpu()
        if certified is not None:
            if self.certified is None:
                self.certified = torch.zeros(self.n, dtype=torch.bool)
            self.certified[pos:pos + b] = certified
        if mask_share is not None:
            self.masked = (self.masked or 0.0) + mask_share

    def add_ssim(self, total: float, k: int) -> None:
        self.ssim_sum += total
        self.ssim_count += k

    def row(self, labels: torch.Tensor, clean_correct: torch.Tensor, indices: torch.Tensor, extra: dict[str, Any],
            device: str, host: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
        """The cell's row and its predictions, given every image's label (``indices``: the images'
        dataset indices) and whether the undefended model classifies it correctly when clean; ``extra``
        the grid's descriptive columns, ``device`` and ``host`` where it ran."""
        cell, n, p = self.cell, self.n, self.preds
        correct = int((p == labels).sum())
        row = {**cell.key, **cell.condition.fields(), **extra, "lam": cell.lam}
        mean_loss = self.loss_sum / n
        row.update(n=n, correct=correct, accuracy=correct / n, loss=mean_loss,
                   loss_std=max(self.loss_sq / n - mean_loss ** 2, 0.0) ** 0.5)
        row["ci_low"], row["ci_high"] = wilson_ci(correct, n)
        row.update(_attack_scores(p, labels, clean_correct, cell.key.get("target"), cell.condition.name == "attacked"))
        row.update(ssim=self.ssim_sum / self.ssim_count if self.ssim_count else None, ssim_n=self.ssim_count or None,
                   seconds=round(self.seconds, 4), masked_pct=None if self.masked is None else 100 * self.masked / n,
                   device=device, run_id=cell.rid, git_sha=git_sha(), version=__version__, created=now_utc(), **host)
        pred_df = pd.DataFrame({"index": indices.numpy(), "label": labels.numpy(), "pred": p.numpy(),
                                "loss": self.losses.numpy()})
        if self.certified is not None:  # certified accuracy: certified for the true label (PatchCleanser)
            pred_df["certified"] = self.certified.numpy()
            row["n_certified"] = int(self.certified.sum())
            row["certified_accuracy"] = row["n_certified"] / n
        return row, pred_df


def _attack_scores(p: torch.Tensor, labels: torch.Tensor, clean_correct: torch.Tensor, target, attacked: bool) -> dict:
    """A targeted cell's success rate, and an attacked cell's defense success rate."""
    out: dict[str, Any] = {}
    attacked_images = clean_correct
    if target is not None:
        # targeted success is measured on images whose true class is not the target
        nontarget = labels != int(target)
        out["n_nontarget"] = int(nontarget.sum())
        out["target_hits"] = int(((p == int(target)) & nontarget).sum())
        out["attack_success_rate"] = out["target_hits"] / max(out["n_nontarget"], 1)
        attacked_images = clean_correct & nontarget  # on an image of the target class "correct" = "target"
    if attacked:
        # defense success rate (BMVC 2023 α/β): of the images the undefended model gets right when
        # clean (a targeted attack: those whose class is not the target), the share still classified
        # correctly under the attack (and the defense, if any)
        out["n_clean_correct"] = int(attacked_images.sum())
        out["kept_correct"] = int(((p == labels) & attacked_images).sum())
        out["defense_success_rate"] = out["kept_correct"] / max(out["n_clean_correct"], 1)
    return out
