"""The one training loop: every objective of :mod:`patchbench.training.objectives`, one place for
optimizer, schedule, resumable per-epoch checkpoints and the final accuracy.

Optimizers and schedules (``TrainConfig.optimizer`` / ``schedule``, the same for every objective):
Adam, SGD with momentum, or RMSProp (α = 0.9, ε = 1.0: the Inception-v3 recipe that the TOMM 2022
ResNet50 setting "0.045 decayed ×0.94 every 2 epochs" comes from); one-cycle (stepped per batch),
constant, or step decay (×``lr_decay`` every ``lr_decay_every`` epochs, stepped per epoch).

Checkpoints: after every epoch, ``{model, optimizer, scheduler, epoch, rng, config}`` is written
atomically to ``checkpoint``; a later call with the same checkpoint resumes after the last
finished epoch and ends with the same weights as an uninterrupted run (the data order, the PGD
start and dropout draw from generators saved in ``rng``; CPU bit-exact, GPU up to cuDNN
non-determinism).
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import torch
import torch.nn as nn

from patchbench.config import TrainConfig
from patchbench.data import ImageSource, iterate
from patchbench.errors import PatchbenchError
from patchbench.models.gradcam import GradCAM, gradcam_for
from patchbench.training import distributed
from patchbench.training.checks import validate_train
from patchbench.training.objectives import build_objective, minibatch_loss
from patchbench.training.syllabus import epoch_syllabus
from patchbench.util import atomic_write, progress_bar, tensors_id

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
    """``state`` with ``model_id``, the hash of its weights, checked when the training resumes from it."""
    buf = io.BytesIO()
    torch.save({**state, "model_id": tensors_id(state["model"])}, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    clear = f"delete it to start the training over: rm '{path}'"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PatchbenchError(f"cannot read training checkpoint {path}: {type(exc).__name__}; {clear}") from None
    if state.get("config_key") != _resume_key(cfg):
        raise PatchbenchError(f"training checkpoint {path} was made with another training config; {clear}")
    if "model_id" in state and tensors_id(state["model"]) != state["model_id"]:  # older checkpoints carry none
        raise PatchbenchError(f"training checkpoint {path} holds weights that do not match the id stored in it "
                              f"(changed or damaged); {clear}")
    return state


# --------------------------------------------------------------------------------------------
# the loop


def syllabus_order(order: torch.Tensor, source: ImageSource, image_size: int, cfg: TrainConfig,
                   device: torch.device) -> torch.Tensor:
    """The epoch's random order rearranged by the curriculum syllabus (BMVC 2023 Sec. 4.3, Eq. 11-13)."""

    return epoch_syllabus(order, source, image_size, cfg, device)


def train(model: nn.Module, source: ImageSource, indices: torch.Tensor, image_size: int,
          cfg: TrainConfig, device: torch.device, progress: bool = True,
          checkpoint: str | Path | None = None, cam=None, on_epoch_end=None) -> dict:
    """Train ``model`` (a Classifier) in place on ``indices`` of ``source`` with ``cfg.training``.

    ``cam`` (AAD objectives): a GradCAM, a layer name inside ``model``, or None for the registered
    ``cam_layer`` of the model's architecture. ``on_epoch_end(epoch, model) -> dict``: measurements
    after each epoch (e.g. a validation attack, BMVC 2023 Fig. 2), stored in the history with the
    epoch's mean loss terms. With ``cfg.syllabus`` the epoch order follows the curriculum syllabus
    (:mod:`patchbench.training.syllabus`). Returns stats (final loss terms, per-epoch history,
    optimizer, final learning rate, seconds, steps).
    """

    validate_train(cfg, where="train")
    objective = build_objective(cfg.training)
    device = torch.device(device)
    steps_per_epoch = max(1, len(indices) // cfg.batch_size)
    many = distributed.active()  # torchrun: this rank trains on its share of every global batch
    if many:
        distributed.shard_order(indices[: cfg.batch_size], cfg.batch_size)  # divisibility, before any work
        distributed.broadcast_model(model)
        progress = progress and distributed.is_main()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, cfg)
    sched, per_batch = build_schedule(opt, cfg, steps_per_epoch)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    attack = objective.make_attack(model, cfg)
    if many and attack is not None:
        attack.share = distributed.share()  # PGD starts drawn per global batch: as one process draws them
    if cfg.training.endswith("+aad"):
        cam = (gradcam_for(model, normalize=True) if cam is None
               else GradCAM(model, cam, normalize=True) if isinstance(cam, str) else cam)

    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state = load_checkpoint(checkpoint, cfg) if checkpoint is not None and checkpoint.exists() else None
    start_epoch = 0
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    history: list[dict] = []
    with torch.random.fork_rng(devices=cuda_devices):  # seed dropout without touching the caller's RNG
        torch.manual_seed(distributed.rank_seed(cfg.seed))  # cfg.seed for one process (and rank 0)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            history = list(state.get("history", []))
            rng = state["rng"]
            order_gen.set_state(rng["order"])
            if attack is not None:
                attack.generator.set_state(rng["attack"])
            # this rank's dropout stream; a checkpoint of another number of processes has none for
            # ranks > 0, which then keep their fresh rank seeds (rank 0 = the single-process stream)
            ranks = rng.get("ranks", [{k: rng[k] for k in ("torch", "cuda") if k in rng}])
            mine = ranks[distributed.rank()] if distributed.rank() < len(ranks) else {}
            if "torch" in mine:
                torch.set_rng_state(mine["torch"])
            if cuda_devices and "cuda" in mine:
                torch.cuda.set_rng_state(mine["cuda"], cuda_devices[0])
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = indices[torch.randperm(len(indices), generator=order_gen)][: steps_per_epoch * cfg.batch_size]
            if cfg.syllabus:
                order = syllabus_order(order, source, image_size, cfg, device)
            order, batch_size = distributed.shard_order(order, cfg.batch_size)  # identity for one process
            sums: dict[str, float] = {}
            bar = progress_bar(iterate(source, order, image_size, batch_size, device), progress, total=steps_per_epoch,
                               desc=f"{cfg.training} epoch {epoch + 1}/{cfg.epochs}")
            for step, (_, x, y) in enumerate(bar):
                loss, last = minibatch_loss(model, objective, x, y, cfg, attack, cam)
                if not torch.isfinite(loss):
                    raise PatchbenchError(f"{cfg.training} training diverged: non-finite loss at epoch {epoch + 1}, "
                                          f"step {step + 1} (lower model.train.lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if many:
                    distributed.average_gradients(params)
                opt.step()
                if many:
                    distributed.sync_buffers(model)  # rank 0's BatchNorm statistics everywhere (as DDP)
                if sched is not None and per_batch:
                    sched.step()
                bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()}, refresh=False)  # drawn at the next update
                for k, v in last.items():
                    sums[k] = sums.get(k, 0.0) + v
            if sched is not None and not per_batch:
                sched.step()
            sums = distributed.mean_over_ranks(sums)
            record = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()}}
            if on_epoch_end is not None:
                model.eval()
                record.update(on_epoch_end(epoch + 1, model))
            history.append(record)
            if checkpoint is not None:
                mine = {"torch": torch.get_rng_state()}
                if cuda_devices:
                    mine["cuda"] = torch.cuda.get_rng_state(cuda_devices[0])
                ranks = distributed.gather(mine)  # the dropout streams differ by rank: keep them all
            if checkpoint is not None and distributed.is_main():
                rng = {"order": order_gen.get_state(), **mine}  # rank 0's = one process's layout
                if many:
                    rng["ranks"] = ranks
                if attack is not None:
                    rng["attack"] = attack.generator.get_state()
                save_checkpoint(checkpoint, {
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "epoch": epoch + 1, "rng": rng, "history": history, "config_key": _resume_key(cfg)})
            distributed.barrier()  # the checkpoint is whole before any rank goes on
    model.eval()
    return {"training": cfg.training, "epochs": cfg.epochs, "resumed_from_epoch": start_epoch, "world_size": distributed.world(),
            "steps": (cfg.epochs - start_epoch) * steps_per_epoch, "final_terms": last, "history": history,
            "optimizer": type(opt).__name__, "final_lr": opt.param_groups[0]["lr"],
            "train_seconds": round(time.perf_counter() - t0, 2)}


@torch.no_grad()
def correct_count(model, source: ImageSource, indices: torch.Tensor, image_size: int, batch_size: int,
                  device: torch.device, progress: bool = False) -> int:
    """How many of the images ``indices`` the model (put in eval mode) classifies correctly."""
    model.eval()
    correct = 0
    for _, x, y in progress_bar(iterate(source, indices, image_size, batch_size, device), progress,
                                total=(len(indices) + batch_size - 1) // batch_size, desc="accuracy", leave=False):
        correct += int((model(x).argmax(1) == y).sum())
    return correct


def accuracy(model, source: ImageSource, indices: torch.Tensor, image_size: int, batch_size: int,
             device: torch.device, progress: bool = False) -> float:
    return correct_count(model, source, indices, image_size, batch_size, device, progress) / max(len(indices), 1)
