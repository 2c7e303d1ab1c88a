"""Adversarial training for TOMM 2022 Table 6: raw, Madry, ALP, and either with AAD (Eq. 7–10).

``cfg.training`` picks the loss of one minibatch (x, y), with x_adv = PGD(x, y) (ε = ``cfg.eps``,
``cfg.attack_steps`` steps of ``cfg.attack_step_size``, random start; CE is the attack's loss as
in Madry et al.; the attack runs with the model in eval mode, then training resumes in train mode):

* ``raw``:    L_c(f(x), y)
* ``madry``:  L_c(f(x_adv), y)                                            (Madry et al. 2018)
* ``alp``:    ½·L_c(f(x), y) + ½·L_c(f(x_adv), y) + λ·mean((z(x) − z(x_adv))²)   (Kannan et al. 2018)
* ``+aad``:   the above + α·L_r + β·L_p                                   (Eq. 10)

  - L_r (Eq. 8) = −[‖softmax z(x) − softmax z(x^m)‖₂ + ‖softmax z(x_adv) − softmax z(x_adv^m)‖₂],
    x^m = x ⊙ (1 − Att(x)) (Eq. 7), Att the Grad-CAM attention area at κ (Eq. 3);
  - L_p (Eq. 9) = ‖g(x) − g(x_adv)‖₁ between Grad-CAM maps computed with ``create_graph=True``,
    so the loss reaches the weights through α_k and A^k.

Choices where the paper is silent or loose (all documented in the report of a run):

* L_c is the multi-label soft margin loss on one-hot targets, as Eq. 10 states
  (``class_loss="soft-margin"``; ``"ce"`` for cross-entropy). The same L_c serves all five modes,
  so rows differ only by their adversarial terms.
* ALP's pairing term is the squared logit difference averaged over the batch *and* the classes,
  with λ = ``cfg.alp_weight`` = 0.5 next to the 50/50 clean/adversarial mixing (Kannan et al.).
* Grad-CAM: class c = the true label; maps normalized per image by their maximum (so L_p cannot be
  lowered by shrinking activations), taken at the CAM layer's grid (before upsampling). L_r's
  norms are averaged over the batch. The mask of Eq. 7 thresholds the map bilinearly upsampled
  to the image size; the hard threshold passes no gradient (L_r reaches the weights through f(x^m)
  and f(x) only).
* L_p's reduction over the grid cells (``cfg.aad_lp_reduction``): ``"mean"`` (default), the mean
  absolute difference per cell, or ``"sum"``, the literal ℓ1 norm; either is averaged over the
  batch. Measured on LeNet / Fashion-MNIST (one epoch, 5k images, CE, ε = 0.1, PGD-3): with
  ``"sum"`` and β = 0.01, L_p drives 95 % of the Grad-CAM maps to all-zero (equal maps are
  trivially preserved maps; with L_r alone: 0 %), a degenerate optimum, and the "+aad" rows then
  measure a network without attention maps. With ``"mean"`` (L_p ~196× smaller at a 14×14 grid) no
  map collapses. The displayed term ``cam0`` is the fraction of clean images in the batch whose
  map is all zero, so a collapse shows while training.
* Each of x, x_adv, x^m, x_adv^m goes through the network in its own forward pass, so BatchNorm
  statistics are never mixed between clean, adversarial and masked images.

Optimizers and schedules of Sec. 5.1: Adam lr 1e-3 (LeNet, 5 epochs, batch 100), Adam lr 1e-4
(ResNet9), RMSProp lr 0.045 decayed ×0.94 every 2 epochs (ResNet50: ``optimizer=rmsprop,
schedule=step``). RMSProp uses α = 0.9, ε = 1.0 (the Inception-v3 recipe the 0.045/0.94 schedule
comes from).

Checkpoints: after every epoch, ``{model, optimizer, scheduler, epoch, rng, config}`` is written
atomically (temp file + ``os.replace``) to ``checkpoint``; a later call with the same checkpoint
resumes after the last finished epoch and ends with the same weights as an uninterrupted run
(the data order, the PGD start and dropout draw from generators saved in ``rng``; CPU bit-exact,
GPU up to cuDNN non-determinism).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchbench.attacks.pgd import PGD
from patchbench.config import TrainConfig, validate_train
from patchbench.data import ImageSource, iterate
from patchbench.errors import PatchbenchError
from patchbench.gradcam import GradCAM, attention_area, gradcam_for, masked_image

# --------------------------------------------------------------------------------------------
# loss terms


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "soft-margin") -> torch.Tensor:
    """L_c: multi-label soft margin loss on one-hot targets (Eq. 10), or cross-entropy."""
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.multilabel_soft_margin_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


def logit_pairing_loss(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """ALP's pairing term: mean over batch and classes of (z(x) − z(x_adv))²."""
    return (z - z_adv).pow(2).mean()


def rectification_distance(model: nn.Module, x: torch.Tensor, logits: torch.Tensor, g: torch.Tensor,
                           kappa) -> torch.Tensor:
    """Per image ‖softmax f(x) − softmax f(x^m)‖₂ with x^m = x ⊙ (1 − Att(x)) (Eq. 7–8).

    ``g`` is the map at the CAM grid; the mask thresholds it upsampled (bilinear) to the image.
    """
    g_img = F.interpolate(g.detach()[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    x_m = masked_image(x, attention_area(g_img, kappa))
    return torch.linalg.vector_norm(logits.softmax(1) - model(x_m).softmax(1), dim=1)


def preservation_loss(g: torch.Tensor, g_adv: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_p (Eq. 9): |g(x) − g(x_adv)| per image, summed (the ℓ1 norm, ``"sum"``) or averaged
    (``"mean"``) over the grid cells, then averaged over the batch."""
    per_cell = (g - g_adv).abs().flatten(1)
    return (per_cell.sum(1) if reduction == "sum" else per_cell.mean(1)).mean()


def adversarial_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                     attack: PGD | None, cam: GradCAM | None) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one minibatch under ``cfg.training``; returns (loss, terms for display)."""
    mode = cfg.training
    base, aad = mode.split("+")[0], mode.endswith("+aad")
    terms: dict[str, torch.Tensor] = {}
    x_adv = attack(x, y) if base != "raw" else None
    if aad:
        g, z = cam.compute(x, y, create_graph=True, upsample=False)
        g_adv, z_adv = cam.compute(x_adv, y, create_graph=True, upsample=False)
    else:
        z = model(x) if base in ("raw", "alp") else None
        z_adv = model(x_adv) if x_adv is not None else None

    if base == "raw":
        terms["Lc"] = classification_loss(z, y, cfg.class_loss)
    elif base == "madry":
        terms["Lc"] = classification_loss(z_adv, y, cfg.class_loss)
    else:  # alp
        terms["Lc"] = 0.5 * classification_loss(z, y, cfg.class_loss) + 0.5 * classification_loss(z_adv, y, cfg.class_loss)
        terms["pair"] = logit_pairing_loss(z, z_adv)
    loss = terms["Lc"] + (cfg.alp_weight * terms["pair"] if "pair" in terms else 0)
    if aad:
        terms["Lr"] = -(rectification_distance(model, x, z, g, cfg.kappa)
                        + rectification_distance(model, x_adv, z_adv, g_adv, cfg.kappa)).mean()
        terms["Lp"] = preservation_loss(g, g_adv, cfg.aad_lp_reduction)
        loss = loss + cfg.aad_alpha * terms["Lr"] + cfg.aad_beta * terms["Lp"]
        terms["cam0"] = (g.detach().flatten(1).amax(1) == 0).float().mean()  # diagnostic, not a loss
    return loss, {k: float(v.detach()) for k, v in terms.items()}


# --------------------------------------------------------------------------------------------
# optimizer, schedule, checkpoint


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1.0, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """(scheduler or None, stepped per batch?)."""
    if cfg.schedule == "onecycle" and cfg.epochs > 0:
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch), True
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay), False
    return None, False


def _resume_key(cfg: TrainConfig) -> dict:
    """The config a checkpoint must match to be resumed (epochs may grow unless one-cycle)."""
    d = dataclasses.asdict(cfg)
    if cfg.schedule != "onecycle":
        d.pop("epochs")
    return d


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PatchbenchError(f"cannot read training checkpoint {path}: {type(exc).__name__}") from None
    if state.get("config_key") != _resume_key(cfg):
        raise PatchbenchError(f"training checkpoint {path} was made with another training config; delete it to start over")
    return state


# --------------------------------------------------------------------------------------------
# the loop


def train_adversarial(model: nn.Module, source: ImageSource, indices: torch.Tensor, image_size: int,
                      cfg: TrainConfig, device: torch.device, progress: bool = True,
                      checkpoint: str | Path | None = None, cam: GradCAM | str | None = None) -> dict:
    """Train ``model`` (a Classifier) in place on ``indices`` of ``source`` with ``cfg.training``.

    ``cam`` (AAD modes): a GradCAM, a layer name inside ``model``, or None for the registered
    ``cam_layer`` of the model's architecture. Returns stats (final loss terms, seconds, steps).
    """
    validate_train(cfg, where="train")
    device = torch.device(device)
    steps_per_epoch = max(1, len(indices) // cfg.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, cfg)
    sched, per_batch = build_schedule(opt, cfg, steps_per_epoch)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    attack = None
    if cfg.training != "raw":
        attack = PGD(model, cfg.eps, cfg.attack_steps, cfg.attack_step_size, random_start=True, seed=cfg.seed)
    if cfg.training.endswith("+aad"):
        cam = (gradcam_for(model, normalize=True) if cam is None
               else GradCAM(model, cam, normalize=True) if isinstance(cam, str) else cam)

    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state = load_checkpoint(checkpoint, cfg) if checkpoint is not None and checkpoint.exists() else None
    start_epoch = 0
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    with torch.random.fork_rng(devices=cuda_devices):  # seed dropout without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            rng = state["rng"]
            order_gen.set_state(rng["order"])
            torch.set_rng_state(rng["torch"])
            if attack is not None:
                attack.generator.set_state(rng["attack"])
            if cuda_devices and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], cuda_devices[0])
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = indices[torch.randperm(len(indices), generator=order_gen)][: steps_per_epoch * cfg.batch_size]
            bar = tqdm(iterate(source, order, image_size, cfg.batch_size, device), total=steps_per_epoch,
                       desc=f"{cfg.training} epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
            for step, (_, x, y) in enumerate(bar):
                loss, last = adversarial_loss(model, x, y, cfg, attack, cam)
                if not torch.isfinite(loss):
                    raise PatchbenchError(f"{cfg.training} training diverged: non-finite loss at epoch {epoch + 1}, "
                                          f"step {step + 1} (lower model.train.lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None and per_batch:
                    sched.step()
                bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
            if sched is not None and not per_batch:
                sched.step()
            if checkpoint is not None:
                rng = {"order": order_gen.get_state(), "torch": torch.get_rng_state()}
                if attack is not None:
                    rng["attack"] = attack.generator.get_state()
                if cuda_devices:
                    rng["cuda"] = torch.cuda.get_rng_state(cuda_devices[0])
                save_checkpoint(checkpoint, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "epoch": epoch + 1, "rng": rng, "config_key": _resume_key(cfg)})
    model.eval()
    return {"training": cfg.training, "epochs": cfg.epochs, "resumed_from_epoch": start_epoch,
            "steps": (cfg.epochs - start_epoch) * steps_per_epoch, "final_terms": last,
            "train_seconds": round(time.perf_counter() - t0, 2)}
