"""The certified baseline as a preset step any paper can declare: PatchCleanser (Xiang et al. 2022,
:mod:`patchbench.defenses.patchcleanser`) beside the empirical defenses, and its table.

A paper opts in as for the adaptive attack: ``sections={"certified": CertifiedConfig}``, calls
:func:`check_certified` from its ``validate`` and :func:`run_certified_section` from its
``extra_steps`` (after the sweep and the adaptive attack: it reuses their cached model and patches),
and registers a :class:`~patchbench.table.Table` with :func:`build_certified` (all in
:mod:`patchbench.api`). Per certified patch side s (``sizes``; default every patch size of the
preset's attacks), through the same engine and store as every other cell (resumable):

* the clean evaluation images through ``patchcleanser`` (patch_px = s, ``k`` masks per axis,
  ``fill``, certificate on): clean accuracy of double masking, and the certified accuracy
  (``n_certified`` / ``certified_accuracy``; per image ``certified`` in the predictions);
* the preset's patches of side s (``seeds: first``: the first seed's patch of each attack, the
  default, a third of the cost at demo scale; ``all``) through ``patchcleanser`` without the
  certificate (``certify: false``: it is a property of the clean image);
* ``adaptive: true``: LaVAN trained through ``patchcleanser`` (its exact gradient: the patch
  optimized through the mask the defense picks; :mod:`patchbench.sections.adaptive`) at the ``adaptive:``
  section's size if it is certified, else the largest certified size, for ``adaptive_steps``
  (default: the adaptive section's steps), evaluated at step 0 and the last step.

``n`` (optional): PatchCleanser's cells (clean, attacked, adaptive) take the first ``n`` images of the
preset's seeded evaluation draw — a subset of the images of every other cell, so paired comparisons
read the images both saw; double masking at k = 6 classifies up to 36 + 630 masked images per image.

``model`` (a ``model.train`` mapping, optional): PatchCleanser runs on the preset's classifier
fine-tuned with it from its weights (:func:`~patchbench.cache.models.ensure_finetuned`) — the
paper's recipe is ``training: cutout`` (Xiang et al. 2022 Sec. 5.1; :mod:`patchbench.training.cutout`).
Its cells carry ``training`` = that objective; the fine-tuned model's clean accuracy and the
preset's patches without a defense are evaluated too, so the table prints both models' clean
accuracy side by side. The patches stay those of the preset's model (transferred), the adaptive
LaVAN is trained through PatchCleanser on the fine-tuned model.

:func:`build_certified` shows, per defense row (no defense; each swept defense at the adaptive
section's λ; PatchCleanser per s), clean accuracy, certified accuracy, accuracy under each patch
attack and size (the patches of the first seed, the same for every row) and under the adaptive
LaVAN's last snapshot through that defense, and ``flipped``: the certified images any stored
attacked cell of that PatchCleanser row misclassifies — 0 unless a certificate is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from patchbench.attacks.adaptive_lavan import AdaptiveLaVAN
from patchbench.cache.models import ensure_finetuned, ensure_model
from patchbench.cache.patches import ensure_patches
from patchbench.config import Preset, TrainConfig
from patchbench.config.parsing import build_dataclass
from patchbench.defenses import certifies
from patchbench.defenses.base import UNDEFENDED, NoDefense
from patchbench.defenses.patchcleanser import PatchCleanser
from patchbench.errors import check, is_int
from patchbench.evaluation.engine import Condition, DefenseRun
from patchbench.evaluation.grid import evaluate_conditions
from patchbench.evaluation.stages import stage
from patchbench.sections.adaptive import run_adaptive
from patchbench.store.results import ResultStore
from patchbench.table import audit_legend, audit_mark, preset_cells
from patchbench.training.checks import validate_train
from patchbench.util import console

ATTACK_LABELS = {"lavan": "LaVAN", "adversarial_patch": "Adv. Patch"}


@dataclass(frozen=True)
class CertifiedConfig:
    """The preset's ``certified:`` section (see the module docstring). Empty ``sizes``: every patch
    size of the preset's attacks; ``k`` masks per axis (the paper's 6)."""

    sizes: list[int] = field(default_factory=list)
    k: int = 6
    fill: object = "mean"
    seeds: str = "first"
    adaptive: bool = True
    adaptive_steps: int | None = None
    model: dict | None = None  # fine-tuning of the preset's classifier for PatchCleanser (a model.train mapping)
    n: int | None = None  # PatchCleanser's cells on the first n of the preset's evaluation draw (None: all of them)


def finetune_config(cfg: CertifiedConfig) -> TrainConfig | None:
    """The ``model`` mapping as a checked TrainConfig (None: PatchCleanser on the preset's classifier)."""
    if cfg.model is None:
        return None
    t = build_dataclass(TrainConfig, cfg.model, "certified.model")
    validate_train(t, where="certified.model")
    return t


def certified_sizes(preset: Preset, cfg: CertifiedConfig) -> list[int]:
    return sorted(set(cfg.sizes or [s for a in preset.attacks for s in a.sizes]))


def check_certified(preset: Preset) -> None:
    """Validate the ``certified:`` section before any work."""
    cfg = preset.extra.get("certified")
    if cfg is None:
        return
    n = preset.data.image_size
    check(all(is_int(s) and 0 < s < n for s in cfg.sizes), f"certified.sizes must be integers in 1..{n - 1}, got {cfg.sizes!r}")
    check(bool(certified_sizes(preset, cfg)), "certified needs sizes, or attacks whose sizes it certifies")
    PatchCleanser(patch_px=1, k=cfg.k, fill=cfg.fill)  # k and fill, with the defense's own messages
    check(cfg.seeds in ("first", "all"), f"certified.seeds must be first or all, got {cfg.seeds!r}")
    check(isinstance(cfg.adaptive, bool), f"certified.adaptive must be true or false, got {cfg.adaptive!r}")
    check(cfg.n is None or (is_int(cfg.n) and cfg.n >= 1), f"certified.n must be an integer >= 1, got {cfg.n!r}")
    check(cfg.adaptive_steps is None or (is_int(cfg.adaptive_steps) and cfg.adaptive_steps >= 1),
          f"certified.adaptive_steps must be an integer >= 1, got {cfg.adaptive_steps!r}")
    check(not cfg.adaptive or bool(preset.attacks), "certified.adaptive needs an attack entry (LaVAN's settings)")
    t = finetune_config(cfg)
    # split_models tells the fine-tuned classifier's cells from the preset's by their training objective, so a plain
    # (raw) fine-tuning would be read as the preset's own classifier and hide its grid
    check(t is None or t.training != "raw", "certified.model.training must be a fine-tuning objective other than raw "
          "(e.g. cutout, the paper's): the certified table tells the fine-tuned classifier's cells by it")


def run_certified_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> pd.DataFrame | None:
    """The ``certified:`` section of a preset, if it has one (``reproduce``'s extra step)."""
    with stage("certified"):
        return _certified_section(preset, store, device, progress)


def _certified_section(preset: Preset, store: ResultStore, device: torch.device, progress: bool) -> pd.DataFrame | None:
    cfg = preset.extra.get("certified")
    if cfg is None:
        return None
    loaded = ensure_model(preset, store, device, progress=progress)
    patches = ensure_patches(preset, loaded, store, device, progress=progress)
    if cfg.seeds == "first":
        first = {}
        for p in patches:  # per attack and size, the patch of the first seed the preset lists
            first.setdefault((p.meta.get("attack"), p.size), p)
        patches = list(first.values())
    frames = []
    tune = finetune_config(cfg)
    columns = {}
    if tune is not None:  # PatchCleanser's classifier: the preset's fine-tuned (the paper's Cutout model)
        loaded = ensure_finetuned(preset, loaded, tune, store, device, progress=progress)
        columns = {"training": tune.training}
        frames.append(evaluate_conditions(preset, loaded, [Condition(None)] + [Condition(p) for p in patches],
                                          [DefenseRun(NoDefense(), [None])], store, device, progress, **columns))
    sizes = certified_sizes(preset, cfg)
    if cfg.n is not None and (preset.data.eval_n <= 0 or cfg.n < preset.data.eval_n):  # the seeded draw, cut: a subset
        preset = replace(preset, data=replace(preset.data, eval_n=cfg.n))
    for s in sizes:
        pc = dict(patch_px=s, k=cfg.k, fill=cfg.fill)
        frames.append(evaluate_conditions(preset, loaded, [Condition(None)], [DefenseRun(PatchCleanser(**pc))],
                                          store, device, progress, **columns))
        attacked = [Condition(p) for p in patches if p.size == s]
        if attacked:
            frames.append(evaluate_conditions(preset, loaded, attacked, [DefenseRun(PatchCleanser(**pc, certify=False))],
                                              store, device, progress, **columns))
    if cfg.adaptive:
        ad = preset.extra.get("adaptive")
        size = ad.size if ad is not None and ad.size in sizes else max(sizes)
        steps = cfg.adaptive_steps or (ad.steps if ad is not None else None)
        frames.append(run_adaptive(preset, loaded, store, device, [PatchCleanser.name], sizes=[size], steps=steps,
                                   record_every=steps, progress=progress, include_undefended=False,
                                   defense_params={PatchCleanser.name: dict(patch_px=size, k=cfg.k, fill=cfg.fill,
                                                                         certify=False)}, columns=columns))
    rows = pd.concat(frames, ignore_index=True)
    console.print(f"[bold]{preset.name}[/]: {len(rows)} certified-baseline cells")
    return rows


# ---- the table ---------------------------------------------------------------------------------


def _pc_key(params) -> tuple | None:
    """A PatchCleanser row: its parameters but the certificate switch (clean cells compute it, attacked
    cells do not), as (patch_px, k, fill)."""
    if not isinstance(params, str):
        return None
    d = json.loads(params)
    return int(d["patch_px"]), int(d["k"]), str(d["fill"])


def _flipped(cells: pd.DataFrame, clean: pd.Series, attacked: pd.DataFrame) -> int | None:
    """Certified images (clean cell) misclassified by any of the attacked cells (stored predictions)."""
    root = cells.attrs.get("results")
    if root is None or attacked.empty:
        return None
    store = ResultStore(root, read_only=True)
    cert = store.load_predictions(clean["run_id"]).set_index("index")["certified"]
    bad = pd.Series(False, index=cert.index)
    for rid in attacked["run_id"]:
        pr = store.load_predictions(rid).set_index("index")
        bad |= (pr["pred"] != pr["label"]).reindex(cert.index, fill_value=False)
    return int((bad & cert).sum())


def split_models(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the preset's classifier's cells, the fine-tuned classifier's): cells with a ``training`` other
    than raw come from a ``certified.model`` fine-tuning; each part keeps its latest model."""
    tuned = df["training"].notna() & (df["training"] != "raw") if "training" in df else pd.Series(False, index=df.index)
    parts = []
    for part in (df[~tuned], df[tuned]):
        parts.append(part[part["model_id"] == part["model_id"].iloc[-1]] if len(part) else part)
    return parts[0], parts[1]


def build_certified(table, cells: pd.DataFrame, ctx):
    """Clean, certified and empirical accuracy (%) per defense; see the module docstring."""

    df = preset_cells(cells, ctx.preset)
    base, tuned = split_models(df)
    df = pd.concat([base, tuned])
    ad = ctx.sections.get("adaptive")
    lam = None if ad is None else ad.lam
    seed = df["attack_seed"].dropna().min() if "attack_seed" in df and df["attack_seed"].notna().any() else None
    plain = df[df["attack"].isin(list(ATTACK_LABELS)) & ((df["attack_seed"] == seed) if seed is not None else True)]
    attack_cols = sorted({(a, int(s)) for a, s in zip(plain["attack"], plain["patch_px"])}, key=lambda t: (t[1], t[0]))
    adaptive = df[(df["attack"] == AdaptiveLaVAN.name) & (df["defense"] == df["attack_through"])]
    adaptive = adaptive[adaptive["attack_step"] == adaptive.groupby("attack_through")["attack_step"].transform("max")]

    def pct(rows: pd.DataFrame) -> str:
        if rows.empty:
            return ""
        last = rows.sort_values("created").iloc[[-1]]
        return f"{100 * last['accuracy'].iloc[0]:.1f}" + (audit_mark(last) if (last["condition"] == "attacked").all() else "")

    def row(label, sel, size=None):
        clean = sel[sel["condition"] == "clean"]
        r = {"Defense": label, "clean": pct(clean), "certified": "", "flipped": ""}
        if size is not None and not clean.empty and pd.notna(clean.iloc[-1].get("certified_accuracy")):
            r["certified"] = f"{100 * clean.iloc[-1]['certified_accuracy']:.1f}"
        for a, s in attack_cols:
            r[f"{ATTACK_LABELS[a]} {s} px"] = pct(sel[(sel["attack"] == a) & (sel["patch_px"] == s) & sel.index.isin(plain.index)])
        r["adaptive LaVAN"] = pct(adaptive[adaptive.index.isin(sel.index)])
        if r["certified"]:
            hit = sel[(sel["condition"] == "attacked") & (sel["patch_px"] <= size)]
            flipped = _flipped(cells, clean.sort_values("created").iloc[-1], hit)
            r["flipped"] = "" if flipped is None else str(flipped)
        return r

    rows = [row("No defense", base[base["defense"] == UNDEFENDED])]
    for name in sorted(d for d in set(base["defense"]) if d != UNDEFENDED and not certifies(d)):  # not the cells' order
        sel = base[base["defense"] == name]
        if lam is not None and sel["lam"].notna().any():
            sel = sel[(sel["lam"] - lam).abs() < 1e-6]
        rows.append(row(name.upper() + ("" if lam is None or sel["lam"].isna().all() else f" λ={lam:g}"), sel))
    training = None if tuned.empty else str(tuned["training"].iloc[-1])
    if training is not None:
        tuned_row = row(f"No defense, {training}-tuned", tuned[tuned["defense"] == UNDEFENDED])
        rows.append(tuned_row)
    pcs = (base if tuned.empty else tuned)[lambda d: d["defense"].map(certifies).astype(bool)]
    keys = pcs["defense_params"].map(_pc_key)
    for s, k, fill in sorted(set(keys.dropna())):
        sel = pcs[keys == (s, k, fill)]
        rows.append(row(f"PatchCleanser {s} px (k={k}{'' if fill == 'mean' else f', fill {fill}'})", sel, size=s))
    out = pd.DataFrame(rows)
    shown = pd.concat([plain, adaptive])
    out.attrs["warnings"] = audit_legend(shown[shown["condition"] == "attacked"], ctx.preset)
    seeds = "" if seed is None else f"; patches of seed {int(seed)}"
    caption = (f"Certified (PatchCleanser) vs empirical accuracy (%), {ctx.preset}{seeds}; adaptive: LaVAN trained "
               "through the row's defense, last step; flipped: certified images an attacked cell misclassifies")
    if training is not None:
        caption += (f"; PatchCleanser runs on the classifier fine-tuned with {training} (the paper's recipe): clean "
                    f"accuracy {rows[0]['clean'] or '?'} % undefended model, {tuned_row['clean'] or '?'} % {training}-tuned "
                    "model; the patches are the undefended model's (transferred to it)")
    return out, caption

