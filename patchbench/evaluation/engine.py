"""The evaluation engine: one pass over the evaluation images for a whole grid of cells.

Per batch (docs/ARCHITECTURE.md): the clean images and each attacked version are built once; for each
defense its λ-independent maps are computed once; then each λ costs one cheap ``apply`` and one
forward pass. Everything stays on the device; only predictions go back to the host.
Cells already in the store are skipped (resume); a grid with nothing missing does no work.

Its parts: :func:`plan` (conditions × defenses × λ -> :class:`Cell`, each with its run id), an
:class:`EvalContext` (the model, the images, the store and the columns every cell carries), a
:class:`CellAccumulator` per cell (updated with each batch's logits, it produces the cell's row and
predictions) and :func:`evaluate`, which runs the missing cells of a grid.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from patchbench.attacks import NO_ATTACK, evasion_label
from patchbench.attacks.patch import Patch
from patchbench.data import ImageSource, iterate
from patchbench.defenses.base import CERTIFIED, MASK, Defense
from patchbench.devices import machine
from patchbench.evaluation.accumulator import CellAccumulator
from patchbench.evaluation.ssim import ssim_per_image
from patchbench.store.columns import check_row, patch_meta_columns
from patchbench.store.results import ResultStore, run_id
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


@dataclass
class EvalContext:
    """What one evaluation runs on: the model, its evaluation images (``indices`` of ``source``, at
    ``image_size`` px, ``batch_size`` at a time on ``device``), the store its cells go to, and the
    columns every cell carries (``columns``: dataset, split, model_id, ...; ``extra``: the preset's name,
    a plugin's, ...; a declared key column among ``extra`` is part of each cell's run id).

    ``ssim_n`` > 0: for clean cells with a defense, also the mean SSIM between the input and the
    defended image over the first ``ssim_n`` evaluation images (ICAART Sec. 4.2). ``amp`` (bf16 |
    fp16): the classifier's prediction passes run under ``torch.autocast`` (logits cast back to fp32
    for the loss); the attacks and the defenses' own model passes stay fp32.
    """

    model: torch.nn.Module
    source: ImageSource
    indices: torch.Tensor
    image_size: int
    batch_size: int
    store: ResultStore
    device: torch.device
    columns: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    progress: bool = True
    ssim_n: int = 0
    amp: str | None = None

    @property
    def n(self) -> int:
        return len(self.indices)

    def key(self) -> dict[str, Any]:
        """The key columns every cell of the grid shares."""
        return {**self.columns, **self.extra, "eval_n": self.n}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's fp32 logits on ``x`` (under ``amp`` if set)."""
        with predict_context(self.device, self.amp):
            return self.model(x).float()


def evaluate(ctx: EvalContext, conditions: list[Condition], defenses: list[DefenseRun]) -> pd.DataFrame:
    """Compute every missing cell of conditions × defenses × λ; return all the grid's rows."""
    check_row({**ctx.columns, **ctx.extra})  # an undeclared column fails before any work
    cells = plan(ctx.key(), conditions, defenses)
    store = ctx.store
    store.planned.extend(c.rid for c in cells)
    todo = [c for c in cells if not store.has(c.rid) and store.owns(c.rid)]
    if todo:
        _run(ctx, todo)
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


@dataclass
class Batch:
    """One batch of evaluation images: ``x``, ``y``, their dataset ``indices``, where they start in the
    evaluation order (``pos``), and the undefended model's logits on ``x`` (None: no cell needs them)."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    pos: int
    clean_logits: torch.Tensor | None


Groups = dict[int, tuple[Condition, dict[int, tuple[DefenseRun, list[Cell]]]]]


def _group(todo: list[Cell]) -> Groups:
    """condition -> defense run -> cells, so the maps are computed once per batch and defense."""
    groups: Groups = {}
    for c in todo:
        _, by_def = groups.setdefault(id(c.condition), (c.condition, {}))
        by_def.setdefault(id(c.defense_run), (c.defense_run, []))[1].append(c)
    return groups


def _run(ctx: EvalContext, todo: list[Cell]) -> None:
    """Compute the cells ``todo`` in one pass over the images and store each cell's row."""
    n = ctx.n
    accs = {c.rid: CellAccumulator(c, n) for c in todo}
    labels = torch.empty(n, dtype=torch.int64)
    # the undefended model on the clean images: the base of each attacked cell's defense success rate,
    # computed once per batch and reused as the clean, undefended cell's own forward pass
    clean_correct = torch.zeros(n, dtype=torch.bool)
    any_attacked = any(c.condition.name == "attacked" for c in todo)
    groups = _group(todo)
    ctx.model.eval()
    pos = 0
    bar = progress_bar(None, ctx.progress, total=n, desc=f"evaluate {len(todo)} cells", unit="img")
    for batch_idx, x, y in iterate(ctx.source, ctx.indices, ctx.image_size, ctx.batch_size, ctx.device, ctx.num_workers):
        b = len(y)
        labels[pos:pos + b] = y.cpu()
        clean_logits = None
        if any_attacked:
            with torch.no_grad():
                clean_logits = ctx.predict(x)
            clean_correct[pos:pos + b] = (clean_logits.argmax(1) == y).cpu()
        batch = Batch(x, y, batch_idx, pos, clean_logits)
        for cond, by_def in groups.values():
            _condition_batch(ctx, batch, cond, list(by_def.values()), accs)
        pos += b
        bar.update(b)
    bar.close()
    _store_rows(ctx, list(accs.values()), labels, clean_correct)


def _condition_batch(ctx: EvalContext, batch: Batch, cond: Condition, runs: list[tuple[DefenseRun, list[Cell]]],
                     accs: dict[str, CellAccumulator]) -> None:
    """One condition on one batch: its images built once, then each defense's maps once."""
    t0 = time.perf_counter()
    xc = cond.build(batch.x, batch.y, batch.indices)
    _sync(ctx.device)
    t_cond = (time.perf_counter() - t0) / sum(len(cs) for _, cs in runs)
    for dr, cs in runs:
        t0 = time.perf_counter()
        maps = dr.defense.maps(xc, ctx.model)
        _sync(ctx.device)
        overhead = (time.perf_counter() - t0) / len(cs) + t_cond
        for cell in cs:
            _cell_batch(ctx, batch, xc, maps, cell, accs[cell.rid], overhead)


def _cell_batch(ctx: EvalContext, batch: Batch, xc: torch.Tensor, maps: dict[str, torch.Tensor], cell: Cell,
                acc: CellAccumulator, overhead: float) -> None:
    """One cell on one batch: the defense at the cell's λ, one prediction pass (none for the identity
    defense on clean images: the undefended pass is reused), the accumulator updated."""
    defense, y = cell.defense_run.defense, batch.y
    t0 = time.perf_counter()
    with torch.no_grad():
        xd = defense.apply(xc, maps, cell.lam)
        reuse = batch.clean_logits is not None and cell.condition.name == "clean" and defense.is_identity
        logits = batch.clean_logits if reuse else ctx.predict(xd)
    share = float(maps[MASK].flatten(1).float().mean(1).sum()) if MASK in maps else None
    certified = maps[CERTIFIED].cpu() == y.cpu() if CERTIFIED in maps else None
    acc.update(batch.pos, y, logits, certified, share)
    acc.seconds += time.perf_counter() - t0 + overhead
    k = min(len(y), ctx.ssim_n - batch.pos)
    if k > 0 and cell.condition.patch is None and not defense.is_identity:
        acc.add_ssim(float(ssim_per_image(xc[:k], xd[:k]).sum()), k)


def _store_rows(ctx: EvalContext, accs: list[CellAccumulator], labels: torch.Tensor, clean_correct: torch.Tensor) -> None:
    idx = ctx.indices.cpu()
    dev = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    host = machine()
    for acc in accs:
        row, pred_df = acc.row(labels, clean_correct, idx, ctx.extra, dev, host)
        ctx.store.write(row, pred_df)
