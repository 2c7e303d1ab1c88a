"""The background-only attack on image files (AdvML 2019 Sec. 3, Tables 1-2): PGD whose ε is 0 inside
each image's object bounding box, against a (pretrained) classifier; adversarial PNGs plus a table
of natural vs adversarial predictions.

Inputs: a folder of images and a CSV with one row per image, columns ``file, label, x0, y0, x1, y1``
(the file name inside the folder, the correct class index, the box in the image's own pixel
coordinates, x1/y1 exclusive — the paper's MobileNet detector boxes, or any). Every row is
checked (file present, box inside the image, numbers well-formed) before any work. Each image is
resized to the model's input size; its box is scaled with it.

The table (one row per image, natural and adversarial) has the columns of the paper's Tables 1-2:
correct guess?, in top 5?, in top 10?, the classifier's guess, its confidence in the correct class,
and the percentage of pixels altered (any channel changed).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from patchbench.attacks.linf import check_eps, check_steps
from patchbench.attacks.pgd import PGD
from patchbench.data import get_dataset_info
from patchbench.devices import resolve_device
from patchbench.errors import PatchbenchError, check
from patchbench.imagefiles import imageio
from patchbench.imagefiles.imageio import read_image
from patchbench.models import build_classifier
from patchbench.util import atomic_write

COLUMNS = ("file", "label", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class Box:
    file: Path
    label: int
    x0: int
    y0: int
    x1: int
    y1: int


def read_boxes(images: Path, boxes_csv: Path, num_classes: int) -> list[Box]:
    """Every row of ``boxes_csv``, checked against the images in ``images`` (one-line errors)."""

    check(images.is_dir(), f"image folder not found: {images}")
    check(boxes_csv.is_file(), f"boxes CSV not found: {boxes_csv}")
    try:
        with open(boxes_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PatchbenchError(f"cannot read boxes CSV {boxes_csv}: {type(exc).__name__}") from None
    check(rows, f"boxes CSV {boxes_csv} has no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    check(not missing, f"boxes CSV {boxes_csv} needs the columns {', '.join(COLUMNS)}; missing: {', '.join(missing)}")
    out = []
    for i, r in enumerate(rows, start=2):  # line numbers as an editor shows them (header = 1)
        try:
            label, x0, y0, x1, y1 = (int(str(r[c]).strip()) for c in COLUMNS[1:])
        except (TypeError, ValueError):
            raise PatchbenchError(f"boxes CSV {boxes_csv} line {i}: label, x0, y0, x1, y1 must be integers") from None
        path = images / str(r["file"]).strip()
        check(path.is_file(), f"boxes CSV {boxes_csv} line {i}: image {r['file']!r} not found in {images}")
        check(0 <= label < num_classes, f"boxes CSV {boxes_csv} line {i}: label {label} outside 0..{num_classes - 1}")
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, UnidentifiedImageError):
            raise PatchbenchError(f"boxes CSV {boxes_csv} line {i}: {path.name} is not a readable image") from None
        check(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h,
              f"boxes CSV {boxes_csv} line {i}: box ({x0}, {y0}, {x1}, {y1}) does not lie inside the {w}x{h} image {path.name}")
        check(not (x0 == 0 and y0 == 0 and x1 == w and y1 == h),
              f"boxes CSV {boxes_csv} line {i}: the box covers the whole image {path.name}: no background to attack")
        out.append(Box(path, label, x0, y0, x1, y1))
    return out


def load_batch(boxes: list[Box], size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (B, C, size, size) in [0, 1], labels, allowed (B, 1, size, size): 0 inside each box)."""

    xs, allowed = [], torch.ones(len(boxes), 1, size, size)
    for i, b in enumerate(boxes):
        img = read_image(b.file)
        if img.shape[0] != channels:
            img = img.expand(channels, -1, -1) if img.shape[0] == 1 else img[:1]
        h, w = img.shape[-2:]
        xs.append(F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0].clamp(0, 1))
        top, bottom = int(b.y0 * size / h), max(int(-(-b.y1 * size // h)), int(b.y0 * size / h) + 1)
        left, right = int(b.x0 * size / w), max(int(-(-b.x1 * size // w)), int(b.x0 * size / w) + 1)
        allowed[i, :, top:bottom, left:right] = 0  # the scaled box, rounded outward: the object stays whole
    return torch.stack(xs), torch.tensor([b.label for b in boxes]), allowed


@torch.no_grad()
def prediction_rows(model, x: torch.Tensor, labels: torch.Tensor, kind: str) -> list[dict]:
    prob = model(x).softmax(1)
    top = prob.topk(min(10, prob.shape[1]), dim=1).indices
    names = getattr(model, "class_names", None)
    rows = []
    for i in range(len(x)):
        guess = int(top[i, 0])
        rows.append({"input": kind, "correct guess": bool(guess == labels[i]),
                     "in top 5": bool((top[i, :5] == labels[i]).any()), "in top 10": bool((top[i] == labels[i]).any()),
                     "classifier guess": names[guess] if names and guess < len(names) else guess,
                     "confidence in correct class": float(prob[i, labels[i]])})
    return rows


def background_attack(model, boxes: list[Box], size: int, channels: int, eps: float, steps: int,
                      step_size: float | None, seed: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, pd.DataFrame]:
    """Adversarial images (B, C, size, size) and the natural-vs-adversarial table (AdvML Tables 1-2)."""

    attack = PGD(model, eps, steps, step_size, seed=seed)
    advs, rows = [], []
    for start in range(0, len(boxes), batch_size):
        part = boxes[start:start + batch_size]
        x, y, allowed = load_batch(part, size, channels)
        x, y, allowed = x.to(device), y.to(device), allowed.to(device)
        adv = attack.forward(x, y, allowed=allowed)
        altered = (adv != x).any(1).flatten(1).float().mean(1)
        nat, atk = prediction_rows(model, x, y, "natural"), prediction_rows(model, adv, y, "adversarial")
        for b, n, a, pct in zip(part, nat, atk, altered.tolist()):
            common = {"file": b.file.name, "correct class": b.label}
            rows.append({**common, **n, "pixels altered (%)": 0.0})
            rows.append({**common, **a, "pixels altered (%)": round(100 * pct, 2)})
        advs.append(adv.cpu())
    return torch.cat(advs), pd.DataFrame(rows)


def run(images: Path, boxes_csv: Path, out_dir: Path, model: str, weights: str, dataset: str, image_size: int,
        eps: float, steps: int, step_size: float | None, seed: int, batch_size: int, device: str) -> str:
    """``patchbench background-attack``: every input checked before any work, then the adversarial
    PNGs and ``background-attack.{csv,md}`` in ``out_dir``; returns the one-line summary."""

    check_eps(eps, "background-attack")
    check_steps(steps, "background-attack")
    info = get_dataset_info(dataset)
    rows = read_boxes(images, boxes_csv, info.num_classes)
    dev = resolve_device(device)
    net = build_classifier(model, dataset, None if weights.lower() == "none" else weights, image_size).to(dev).eval()
    net.requires_grad_(False)
    adv, table = background_attack(net, rows, image_size, info.channels, eps, steps, step_size, seed, batch_size, dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    for b, x in zip(rows, adv):
        imageio.write_png(x, out_dir / f"{b.file.stem}.png")
    atomic_write(out_dir / "background-attack.csv", table.to_csv(index=False).encode())
    atomic_write(out_dir / "background-attack.md", table.to_markdown(index=False).encode())
    nat, at = table[table["input"] == "natural"], table[table["input"] == "adversarial"]
    return (f"background attack on {len(rows)} image(s), {model}: correct {nat['correct guess'].mean():.0%} -> "
            f"{at['correct guess'].mean():.0%}, top-10 {nat['in top 10'].mean():.0%} -> {at['in top 10'].mean():.0%}, "
            f"pixels altered {at['pixels altered (%)'].mean():.1f}% -> {out_dir}")
