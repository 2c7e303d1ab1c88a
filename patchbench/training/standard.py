"""Standard (ERM) training of a small classifier: Adam/SGD, optional one-cycle schedule."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchbench.config import TrainConfig
from patchbench.data import ImageSource, iterate


def train_standard(model, source: ImageSource, indices: torch.Tensor, image_size: int,
                   cfg: TrainConfig, device: torch.device, progress: bool = True) -> dict:
    """Train ``model`` (a Classifier) in place on ``indices`` of ``source``; returns stats."""
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(indices) // cfg.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = None
    if cfg.schedule == "onecycle" and cfg.epochs > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    t0 = time.perf_counter()
    model.train()
    last_loss = float("nan")
    for epoch in range(cfg.epochs):
        order = indices[torch.randperm(len(indices), generator=gen)][: steps_per_epoch * cfg.batch_size]
        bar = tqdm(iterate(source, order, image_size, cfg.batch_size, device), total=steps_per_epoch,
                   desc=f"train epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for _, x, y in bar:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            last_loss = loss.item()
            bar.set_postfix(loss=f"{last_loss:.3f}")
    model.eval()
    return {"epochs": cfg.epochs, "steps": cfg.epochs * steps_per_epoch, "final_loss": last_loss,
            "train_seconds": round(time.perf_counter() - t0, 2)}


@torch.no_grad()
def accuracy(model, source: ImageSource, indices: torch.Tensor, image_size: int, batch_size: int,
             device: torch.device, progress: bool = False) -> float:
    model.eval()
    correct = 0
    for _, x, y in tqdm(iterate(source, indices, image_size, batch_size, device),
                        total=(len(indices) + batch_size - 1) // batch_size, desc="accuracy",
                        disable=not progress, leave=False):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(len(indices), 1)
