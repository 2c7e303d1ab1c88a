"""ImageNet-Patch's tables from the stored cells: per model × defense × λ, the clean accuracy and, under
the published patches, the accuracy and the targeted success rate (mean over the patches, with their
range); and the same per patch, beside the numbers the ImageNet-Patch repository publishes
(``reference/imagenet_patch2023_published.csv``, each row with its source and setting)."""

from __future__ import annotations

import pandas as pd

from patchbench.api import DEFENSES, PatchbenchError, Table, TableContext, fmt_pct, lam_match, preset_cells

REFERENCE = "imagenet_patch2023_published"
ATTACK = "imagenet-patch"


def _cells(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    df = preset_cells(cells, preset, "ImageNet-Patch")
    key = ["model", "defense", "defense_params", "lam", "condition", "patch_id"]
    df = df.assign(lam=df["lam"].astype(float)).drop_duplicates(key, keep="last")
    if not (df["attack"] == ATTACK).any():
        raise PatchbenchError(f"no ImageNet-Patch cells for preset {preset!r}; run `patchbench reproduce imagenet_patch2023`")
    return df


def _groups(df: pd.DataFrame, ctx: TableContext):
    """(model, defense, λ, that group's clean cell, its patched cells): models in the section's order,
    defenses undefended first, then in the registry's order (a preset's usual order), λ ascending."""
    sect = ctx.sections.get("imagenet_patch")
    models = list(getattr(sect, "models", []) or []) + sorted(set(df["model"]))
    order = {"none": -1, **{name: i for i, name in enumerate(DEFENSES)}}
    keys = df[["model", "defense", "lam"]].drop_duplicates()
    keys = keys.assign(m=keys["model"].map(models.index), d=keys["defense"].map(lambda n: order.get(n, len(order))))
    for r in keys.sort_values(["m", "d", "lam"], na_position="first").itertuples():
        g = df[(df["model"] == r.model) & (df["defense"] == r.defense) & lam_match(df["lam"], r.lam)]
        yield r.model, r.defense, r.lam, g[g["condition"] == "clean"], g[(g["condition"] == "attacked") & (g["attack"] == ATTACK)]


def _lam(lam) -> str:
    return "" if pd.isna(lam) else f"{lam:g}"


def _range(s: pd.Series) -> str:
    return f"{100 * s.min():.1f}-{100 * s.max():.1f}" if len(s) else ""


def build_transfer(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    df = _cells(cells, ctx.preset)
    rows = []
    for model, defense, lam, clean, att in _groups(df, ctx):
        rows.append({"Model": model, "Defense": defense, "λ": _lam(lam),
                     "clean acc": fmt_pct(100 * clean["accuracy"].iloc[-1]) if len(clean) else "",
                     "patched acc (mean)": fmt_pct(100 * att["accuracy"].mean()) if len(att) else "",
                     "patched acc (range)": _range(att["accuracy"]),
                     "success (mean)": fmt_pct(100 * att["attack_success_rate"].mean()) if len(att) else "",
                     "success (range)": _range(att["attack_success_rate"]), "patches": len(att)})
    table = pd.DataFrame(rows)
    table.attrs["preset"] = ctx.preset
    n = int(df["n"].iloc[0])
    caption = (f"ImageNet-Patch (Pintor et al. 2023): the published patches, randomly rotated, moved and scaled per image as "
               f"published, against each model × defense (preset {ctx.preset}, {n} images): clean accuracy, accuracy under the "
               "patches and targeted success rate (% of the images of other classes classified as the patch's target), mean "
               "and range over the patches. The paper's per-model numbers are not shipped here (no copy of its tables); "
               "the per-patch table shows the numbers the ImageNet-Patch repository publishes.")
    return table, caption


def build_per_patch(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    df = _cells(cells, ctx.preset)
    ref = ctx.reference(REFERENCE)
    rows, settings = [], []
    for model, defense, lam, clean, att in _groups(df, ctx):
        for r in att.sort_values("patch_index").itertuples():
            paper = ref[(ref["model"] == model) & (ref["defense"] == defense) & (ref["patch_index"] == r.patch_index)]
            p = paper.iloc[0] if len(paper) else None
            if p is not None:
                settings.append(f"{model} / {defense} / patch {r.patch_index}: {p['setting']} (source: {p['source']})")
            rows.append({"Model": model, "Defense": defense, "λ": _lam(lam), "patch": int(r.patch_index),
                         "target": int(r.target),
                         "clean acc": fmt_pct(100 * clean["accuracy"].iloc[-1]) if len(clean) else "",
                         "patched acc": fmt_pct(100 * r.accuracy), "success": fmt_pct(100 * r.attack_success_rate),
                         "repo clean acc": "" if p is None else fmt_pct(p["clean_accuracy_pct"]),
                         "repo patched acc": "" if p is None else fmt_pct(p["robust_accuracy_pct"]),
                         "repo success": "" if p is None else fmt_pct(p["success_rate_pct"])})
    table = pd.DataFrame(rows)
    table.attrs["preset"] = ctx.preset
    table.attrs["warnings"] = [f"Repository number, another setting — {s}" for s in settings]
    caption = (f"ImageNet-Patch per patch (preset {ctx.preset}): accuracy and targeted success rate of each published patch "
               "per model × defense; 'repo' columns: the numbers the ImageNet-Patch repository publishes for that model, "
               "defense and patch, measured in another setting (footnotes): no Δ.")
    return table, caption


TABLES = {
    "imagenet-patch-transfer": Table("imagenet-patch-transfer", "imagenet_patch2023",
                                     "ImageNet-Patch: the published patches × models × defenses (mean over patches)",
                                     build_transfer, ("imagenet-patch-transfer",), "imagenet-patch-transfer"),
    "imagenet-patch-per-patch": Table("imagenet-patch-per-patch", "imagenet_patch2023",
                                      "ImageNet-Patch: each published patch × models × defenses, the repository's numbers beside",
                                      build_per_patch, ("imagenet-patch-transfer",), "imagenet-patch-transfer"),
}
