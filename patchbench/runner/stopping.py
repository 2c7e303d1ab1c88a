"""Training length by a stopping rule: train a preset's model epoch by epoch and stop once its loss
on held-out images stops improving (AdvML 2019's demo sets its length so).

:func:`plateau_epochs` trains ``epochs = 1, 2, ...`` through the training loop's per-epoch
checkpoint (each call resumes after the last finished epoch, so the model after epoch E is the one
a fresh E-epoch training gives; this needs a schedule other than one-cycle, whose steps depend on
the total length). After each epoch it measures the mean cross-entropy on ``held_out`` test images
outside the preset's evaluation subset (the first ones in index order, as BMVC's validation
images), and stops at the first epoch whose loss is not lower than the epoch before, or at
``max_epochs``. The chosen length is the epoch of lowest held-out loss.

``python -m patchbench.runner.stopping --preset P [--results DIR] [--max-epochs 10] [--held-out 1000]``
prints one line per epoch and the chosen epoch count.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from patchbench.cache.models import fresh_model, model_path
from patchbench.data import eval_indices, iterate, load_split
from patchbench.devices import resolve_device
from patchbench.errors import PatchbenchError, check, is_int
from patchbench.presets import load_preset
from patchbench.store.results import ResultStore
from patchbench.training.loop import train
from patchbench.util import console


def held_out_indices(n_split: int, eval_n: int, eval_seed: int, held_out: int) -> torch.Tensor:
    """The first ``held_out`` indices of a split of ``n_split`` images that are not evaluation images."""
    taken = torch.zeros(n_split, dtype=torch.bool)
    taken[eval_indices(n_split, eval_n, eval_seed)] = True
    free = (~taken).nonzero().flatten()
    check(len(free) >= held_out, f"only {len(free)} images outside the evaluation subset, {held_out} asked for")
    return free[:held_out]


@torch.no_grad()
def mean_loss(model, source, indices: torch.Tensor, image_size: int, batch_size: int, device) -> float:
    """Mean cross-entropy of ``model`` (eval mode) on ``indices`` of ``source``."""
    model.eval()
    total = 0.0
    for _, x, y in iterate(source, indices, image_size, batch_size, device):
        total += float(F.cross_entropy(model(x), y, reduction="sum"))
    return total / max(len(indices), 1)


def first_plateau(losses: list[float]) -> int | None:
    """The 1-based epoch after which training stops: the first epoch whose loss is not lower than
    the epoch before, else None (still improving)."""
    for e in range(1, len(losses)):
        if losses[e] >= losses[e - 1]:
            return e + 1
    return None


def plateau_epochs(preset, results: Path, device, held_out: int = 1000, max_epochs: int = 10,
                   progress: bool = False) -> dict:
    """Train ``preset``'s model (its ``model.train``, as is) epoch by epoch; return
    ``{"losses": [...], "stopped_at": E or None, "best_epoch": argmin + 1, "train_seconds": s}``."""
    check(is_int(max_epochs) and max_epochs >= 2, f"max_epochs must be an integer >= 2, got {max_epochs!r}")
    check(is_int(held_out) and held_out >= 1, f"held_out must be an integer >= 1, got {held_out!r}")
    t = preset.model.train
    if t.schedule == "onecycle":
        raise PatchbenchError("a stopping rule needs a schedule whose steps do not depend on the length "
                              "(constant or step), not onecycle")
    d = preset.data
    train_src = load_split(d.dataset, d.root, "train", d.image_size)
    test_src = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    held = held_out_indices(len(test_src), d.eval_n, d.eval_seed, held_out)
    idx = eval_indices(len(train_src), t.train_n, t.seed)
    store = ResultStore(results)
    ckpt = model_path(preset, store).with_name(model_path(preset, store).stem + "-stopping.ckpt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    model = fresh_model(preset, device)
    losses: list[float] = []
    seconds = 0.0
    for epoch in range(1, max_epochs + 1):
        cfg = replace(t, epochs=epoch)
        stats = train(model, train_src, idx, d.image_size, cfg, device, progress, checkpoint=ckpt)
        seconds += stats["train_seconds"]
        losses.append(mean_loss(model, test_src, held, d.image_size, d.batch_size, device))
        if first_plateau(losses) is not None:
            break
    ckpt.unlink(missing_ok=True)
    best = min(range(len(losses)), key=losses.__getitem__) + 1
    return {"losses": losses, "stopped_at": first_plateau(losses), "best_epoch": best, "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m patchbench.runner.stopping", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--results", default="results")
    ap.add_argument("--training", default="raw", help="the objective whose length is measured (default: raw)")
    ap.add_argument("--max-epochs", type=int, default=10)
    ap.add_argument("--held-out", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], help="preset override, as patchbench's --set")
    args = ap.parse_args(argv)
    try:
        preset = load_preset(args.preset, args.set).with_train(training=args.training)
        out = plateau_epochs(preset, Path(args.results), resolve_device(preset.device), args.held_out, args.max_epochs)
    except PatchbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e, loss in enumerate(out["losses"], 1):
        console.print(f"epoch {e}: held-out loss {loss:.4f}")
    console.print(f"stopped after epoch {out['stopped_at']}; lowest loss at epoch {out['best_epoch']} "
                  f"({out['train_seconds']:.0f} s training)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
