"""TOMM 2022 Table 6 (adversarial training with and without AAD) and Table 7 (A3 attacks).

Rows: training objective × (ours, paper, Δ); columns: Clean and the preset's attack columns in
the paper's order. A preset's Table 7 columns are labelled ``"T7 <attack>"``.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from patchbench.api import PatchbenchError, Table, TableContext, fmt_pct, wilson_ci

TABLE7_PREFIX = "T7 "
TRAINING_LABELS = {"raw": "RAW", "madry": "Madry", "madry+aad": "Madry+AAD", "alp": "ALP", "alp+aad": "ALP+AAD"}


def _column_order(label: str) -> tuple:
    """The paper's column orders: FGSM, PGD-k (k ascending), CW-k, other attacks; then Table 7's
    Iter-StepLL, Iter-StepLL+A3, PGD, PGD+A3."""
    if label.startswith(TABLE7_PREFIX):
        rank7 = {"Iter-StepLL": 0, "Iter-StepLL+A3": 1, "PGD": 2, "PGD+A3": 3}
        return (1, rank7.get(label.removeprefix(TABLE7_PREFIX), 9), 0, label)
    m = re.fullmatch(r"(FGSM|PGD|CW)(\d*)", label)
    if m:
        return (0, ("FGSM", "PGD", "CW").index(m.group(1)), int(m.group(2) or 0), label)
    return (0, 9, 0, label)


def build_training_table(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    """Rows: training mode × (ours, paper, Δ); columns: Clean and the preset's attack columns."""
    preset = ctx.preset
    number = t.option("table")
    df = cells[(cells["preset"] == preset) & cells["training"].notna()] if "training" in cells else cells.iloc[0:0]
    if df.empty:
        raise PatchbenchError(f"no stored adversarial-training cells for preset {preset!r}; run "
                              f"`patchbench reproduce tomm2022` (or with --preset-scale paper) first")
    df = df.sort_values("created").copy()
    df["column"] = df.apply(lambda r: "Clean" if r["condition"] == "clean" else (r["attack_label"] or r["attack"]), axis=1)
    # one cell per model (training seed) and column; several seeds of an objective are pooled below
    df["seed"] = df["train_seed"] if "train_seed" in df else None
    df = df.drop_duplicates(["training", "column", "seed"], keep="last")
    ref = ctx.reference(f"tomm2022_aad_table{number}")
    dataset, model = df["dataset"].iloc[0], df["model"].iloc[0]
    # the paper's rows for the same dataset; the demo (Fashion-MNIST / LeNet) is shown beside MNIST / LeNet
    paper_dataset = dataset if dataset in set(ref["dataset"]) else ("mnist" if number == "6" else t.option("dataset"))
    ref = ref[ref["dataset"] == paper_dataset]
    same_setting = dataset == paper_dataset and model in set(ref["model"])
    columns = ["Clean"] + sorted(set(df.loc[df["condition"] != "clean", "column"]), key=_column_order)
    trainings = [tr for tr in TRAINING_LABELS if tr in set(df["training"])]
    # Table 7 has no clean column and one (raw) model
    if number == "7":
        columns = [c for c in columns if c.startswith(TABLE7_PREFIX)]
        trainings = [tr for tr in trainings if tr == "raw"]
        if not columns:
            raise PatchbenchError(f"preset {preset!r} has no Table 7 attacks (evasion entries labelled "
                                  f"'{TABLE7_PREFIX}...')")
    else:
        columns = [c for c in columns if not c.startswith(TABLE7_PREFIX)]
    rows = []
    for tr in trainings:
        ours_row = {"Training": TRAINING_LABELS[tr], "": "ours"}
        paper_row = {"Training": TRAINING_LABELS[tr], "": f"paper ({paper_dataset})"}
        delta_row = {"Training": TRAINING_LABELS[tr], "": "Δ"}
        for col in columns:
            o = df[(df["training"] == tr) & (df["column"] == col)]
            ref_attack = "clean" if col == "Clean" else col.removeprefix(TABLE7_PREFIX).lower()
            r = ref[(ref["training"] == tr) & (ref["attack"] == ref_attack)]
            k, n_all = int(o["correct"].sum()), int(o["n"].sum())
            acc = 100 * k / n_all if len(o) and n_all else None
            lo, hi = wilson_ci(k, n_all) if acc is not None else (0.0, 0.0)
            ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if acc is not None else ""
            paper_val = float(r["value"].iloc[0]) if len(r) else None
            ours_row[col] = "" if acc is None else f"{acc:.2f}{ci}"
            paper_row[col] = fmt_pct(paper_val)
            delta_row[col] = "" if acc is None or paper_val is None else f"{acc - paper_val:+.2f}"
        rows += [ours_row, paper_row] + ([delta_row] if same_setting else [])
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    eps = sorted({json.loads(p)["eps"] for p in df["attack_params"].dropna()})
    n = int(df["n"].iloc[0])
    caption = (f"{t.title}. Top-1 accuracy (%) with Wilson 95% CI; ours: {dataset} / {model}, {n} "
               f"{df['split'].iloc[0]} images, ε = {', '.join(f'{e:.4g}' for e in eps)} (preset {preset}).")
    seeded = {TRAINING_LABELS[tr]: sorted(int(s) for s in df.loc[df["training"] == tr, "seed"].dropna().unique())
              for tr in trainings}
    if any(len(s) > 1 for s in seeded.values()):
        caption += (" Several training seeds: " + "; ".join(f"{lab} {', '.join(map(str, s))}" for lab, s in seeded.items() if s)
                    + " — each seed's model on the same images, counts pooled over seeds (the interval treats "
                    "seeds x images as independent, so it is narrower than the seed-to-seed spread).")
    if not same_setting:
        caption += (f" Paper: {paper_dataset} / {', '.join(sorted(set(ref['model'])))} — a different setting, so "
                    "compare trends, not values (no Δ row).")
    return table, caption


PAPER_PRESETS = ("tomm2022-mnist", "tomm2022-cifar10", "tomm2022-imagenet")
TABLES = {
    "tomm2022-6": Table("tomm2022-6", "tomm2022", "TOMM 2022 Table 6: adversarial training with and without AAD",
                        build_training_table, PAPER_PRESETS, "demo-tomm-fmnist",
                        (("table", "6"), ("dataset", "mnist"))),
    "tomm2022-7": Table("tomm2022-7", "tomm2022", "TOMM 2022 Table 7: attention-augmented attacks (A3)",
                        build_training_table, PAPER_PRESETS, "demo-tomm-fmnist",
                        (("table", "7"), ("dataset", "imagenet"))),
}
