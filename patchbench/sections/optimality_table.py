"""The patch-optimality table: per model and defense, each patch attack's optimality and rank, and the
mean over them (:mod:`.optimality_cells` scores the stored cells)."""

from __future__ import annotations

import math

import pandas as pd

from patchbench.audit.indicators import INDICATORS
from patchbench.defenses.base import is_undefended
from patchbench.errors import PatchbenchError
from patchbench.sections.optimality_cells import LABELS, SECTION, evaluate_targets, read_manifest
from patchbench.sections.optimality_metric import global_optimality, ranks




def _tag(name: str) -> str:
    return "".join(w[0] for w in INDICATORS[name].name.split("_")).upper()


def build_optimality(table, cells: pd.DataFrame, ctx):
    """Per model × defense (rows): clean accuracy, the best attack's accuracy with the largest patch, and
    each attack's optimality with its rank (1 = strongest); last row: the mean over the rows and its rank."""
    cfg = ctx.sections.get(SECTION)
    if cfg is None:
        raise PatchbenchError(f"preset {ctx.preset!r} has no {SECTION} section")
    root = cells.attrs.get("results")
    if root is None:
        raise PatchbenchError("the optimality table reads the cells' predictions: build it from a results directory")
    targets, notes = [], []
    for name in [ctx.preset, *cfg.presets]:
        manifest = read_manifest(root, name)
        if manifest is None:
            notes.append(f"{name}: not run yet (`patchbench reproduce` runs its {SECTION} section).")
            continue
        targets += evaluate_targets(root, manifest)
    if not targets:
        raise PatchbenchError(f"no {SECTION} results of {ctx.preset!r} in {root}; run `patchbench reproduce` first")
    attacks = list(dict.fromkeys(a for t in targets for a in t.scores.optimality))
    largest = max(int(s) for t in targets for s in t.rows.loc[t.rows["role"] == "curve", "patch_px"])
    rows, per_target = [], {}
    for t in targets:
        key = f"{t.model} · {t.defense}{'' if t.lam is None else f' λ={t.lam:g}'}"
        per_target[key] = t.scores.optimality
        rank = ranks(t.scores.optimality)
        row = {"Model": t.model, "Defense": t.defense if is_undefended(t.defense) else t.defense.upper(),
               "λ": "" if t.lam is None else f"{t.lam:g}", "clean": f"{100 * t.scores.clean_accuracy:.1f}",
               f"best ≤{largest}px": f"{100 * t.best_at_largest:.1f}"}
        for a in attacks:
            v = t.scores.optimality.get(a)
            mark = " †" + _tag("unconstrained_failure") if t.unconstrained.get(a) else ""
            row[LABELS.get(a, a)] = "" if v is None else ("n/a" if math.isnan(v) else f"{v:.2f} ({rank[a]})") + mark
        rows.append(row)
        notes += [f"{key}: {m} left out (a size's cell is missing)." for m in t.missing]
    mean = global_optimality(per_target)
    overall = ranks(mean)
    rows.append({"Model": f"mean over {len(targets)}", "Defense": "", "λ": "", "clean": "", f"best ≤{largest}px": "",
                 **{LABELS.get(a, a): "" if math.isnan(mean[a]) else f"{mean[a]:.2f} ({overall[a]})" for a in attacks}})
    out = pd.DataFrame(rows)
    if any(any(t.unconstrained.values()) for t in targets):
        ind = INDICATORS["unconstrained_failure"]
        notes.append(f"† {_tag('unconstrained_failure')} = {ind.name.replace('_', ' ')} ({ind.source}): the attack, with a "
                     f"patch of half the image, still misses more than 5 % of the images it attacks (correctly classified; for a "
                     f"targeted patch, those of the other classes). "
                     f"Run instead: {ind.run_instead}.")
    out.attrs["warnings"] = notes
    sizes = sorted({int(s) for t in targets for s in t.rows.loc[t.rows["role"] == "curve", "patch_px"]})
    image = int(targets[0].rows["image_size"].iloc[0])
    caption = (f"How strong each patch attack is: optimality (AttackBench, Cinà et al. 2025) of each attack's "
               f"robust-accuracy-vs-patch-area curve against the per-image best of all attacks, per model and defense "
               f"(rank 1 = strongest; 1.00 = as strong as the best on every image); patch sides {'/'.join(map(str, sizes))} px "
               f"({', '.join(f'{100 * s * s / image ** 2:.1f}' for s in sizes)} % of the image), one universal patch per "
               f"attack and size (adaptive LaVAN: trained through the row's defense, so only on defended rows — through no "
               f"defense it is LaVAN — and its mean is over those); best ≤{largest}px: accuracy (%) "
               f"when every attack may use any of its patches up to {largest} px; last row: mean over the rows, ranked")
    return out, caption
