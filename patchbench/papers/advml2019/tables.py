"""AdvML 2019 Fig. 2 as a table: the natural, standard and background models' cross-entropy loss on
natural inputs (scaled ×1000 for MNIST-like datasets, ×100 for CIFAR-10, as the paper's figure)
and under the standard and the background PGD attack; ours (mean ± 95 % normal interval over
images) beside the paper's; then the same grid in accuracy (Wilson 95 %), and the relative changes
the paper's text states (Sec. 5.1) computed from ours beside the paper's.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from patchbench.api import PatchbenchError, Table, TableContext, fmt_pct

MODELS = {"raw": "natural", "madry": "standard", "lat": "background"}
LABELS = {"natural": '"Natural" model', "standard": '"Standard" model', "background": '"Background" model'}
INPUTS = {"natural": "Natural images", "standard_pgd": "Standard attack", "background_pgd": "Background attack"}
# the paper's Sec. 5.1 statements: (dataset, what, paper's number in %)
STATED = [
    ("mnist", "background vs natural model, natural inputs", "natural", -4.35),
    ("mnist", "background vs natural model, standard attack", "standard_pgd", -99.0),
    ("cifar10", "background vs natural model, natural inputs", "natural", -1.63),
    ("cifar10", "background vs natural model, standard attack", "standard_pgd", -15.98),
]


def _input_of(row) -> str:
    """natural, standard_pgd (every pixel) or background_pgd (a localized PGD: any ``region`` but
    ``all``, a centred box kept or the object masked)."""
    if row["condition"] == "clean":
        return "natural"
    params = json.loads(row["attack_params"]) if isinstance(row["attack_params"], str) else {}
    return "background_pgd" if params.get("region", "all") != "all" else "standard_pgd"


def fig2_cells(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    df = cells[(cells["preset"] == preset) & cells["training"].isin(list(MODELS))] if len(cells) else cells
    if df.empty or "loss" not in df or df["loss"].isna().all():
        raise PatchbenchError(f"no stored AdvML cells with losses for preset {preset!r}; run `patchbench reproduce advml2019` first")
    df = df.sort_values("created").copy()
    df["model_kind"] = df["training"].map(MODELS)
    df["input"] = df.apply(_input_of, axis=1)
    return df.drop_duplicates(["model_kind", "input"], keep="last")


def _paper_dataset(dataset: str) -> str:
    return "cifar10" if dataset.startswith("cifar") else "mnist"


def build_fig2(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    preset = ctx.preset
    df = fig2_cells(cells, preset)
    dataset = df["dataset"].iloc[0]
    pds = _paper_dataset(dataset)
    scale = 100 if pds == "cifar10" else 1000
    ref = ctx.reference("advml2019_lat_fig2")
    ref = ref[ref["dataset"] == pds]
    rows = []
    for kind in ("natural", "standard", "background"):
        row = {"Model": LABELS[kind]}
        for inp, col in INPUTS.items():
            c = df[(df["model_kind"] == kind) & (df["input"] == inp)]
            factor = scale if inp == "natural" else 1
            if len(c):
                r = c.iloc[0]
                half = 1.96 * float(r["loss_std"]) / math.sqrt(int(r["n"]))
                row[f"{col} loss ours"] = f"{factor * r['loss']:.2f} ± {factor * half:.2f}"
                row[f"{col} acc ours"] = f"{100 * r['accuracy']:.2f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
            else:
                row[f"{col} loss ours"] = row[f"{col} acc ours"] = "-"
            v = ref[(ref["training"] == kind) & (ref["eval_input"] == inp)]["value"]
            row[f"{col} loss paper"] = fmt_pct(float(v.iloc[0])) if len(v) else "-"
        rows.append(row)
    order = [f"{c} {what}" for c in INPUTS.values() for what in ("loss ours", "loss paper")]
    order += [f"{c} acc ours" for c in INPUTS.values()]
    table = pd.DataFrame(rows)[["Model", *order]]
    warnings = []
    for ds, what, inp, stated in STATED:
        if ds != pds:
            continue
        nat = df[(df["model_kind"] == "natural") & (df["input"] == inp)]
        bg = df[(df["model_kind"] == "background") & (df["input"] == inp)]
        if len(nat) and len(bg) and nat["loss"].iloc[0] > 0:
            ours = 100 * (bg["loss"].iloc[0] - nat["loss"].iloc[0]) / nat["loss"].iloc[0]
            bound = "≤ " if stated == -99.0 else ""
            warnings.append(f"Relative loss change, {what}: ours {ours:+.2f} % (paper, {pds}: {bound}{stated:+.2f} %).")
    table.attrs["warnings"] = warnings
    table.attrs["preset"] = preset
    caption = (f"AdvML 2019 Fig. 2: cross-entropy loss of the natural, standard and background (LAT) models on natural "
               f"inputs (×{scale}) and under the standard and the background PGD (×1); ours: {dataset} / {df['model'].iloc[0]}, "
               f"{int(df['n'].iloc[0])} test images (preset {preset}), mean ± 95% normal interval over images; accuracy with "
               f"Wilson 95% intervals. Paper: {pds}" + ("" if pds == dataset else " — a different dataset: compare trends, not values") + ".")
    return table, caption


TABLES = {
    "advml2019-fig2": Table("advml2019-fig2", "advml2019", "Fig. 2: losses of natural / standard / background models, "
                            "natural inputs and both attacks", build_fig2, ("advml2019-mnist", "advml2019-cifar10"),
                            "demo-advml-fmnist"),
}
