"""Paper tables rebuilt from stored cells, with the published numbers beside ours.

Ours and the paper's are matched by defense, λ and column (clean, then patch sizes in increasing
order: at demo scale the three LaVAN sizes stand in for the paper's 42/52/60 px). Δ (ours - paper,
percentage points) is shown only when dataset and model are the paper's; otherwise the caption
names both settings and Δ is left out, since the numbers measure different things.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from patchbench.errors import PatchbenchError


@dataclass(frozen=True)
class TableSpec:
    paper: str
    table: str
    title: str
    attack: str  # the attack of the table's columns ("none" for tables on clean images only)
    model: str
    dataset: str
    paper_preset: str
    demo_preset: str
    kind: str = "patch"  # patch: accuracy per defense/λ × clean/patch size; ssim: SSIM per defense/λ
    lambdas: tuple[float, ...] | None = None  # only these λ rows (None: every λ of ours and the paper's)


TABLES: dict[str, TableSpec] = {
    "icaart2022-1": TableSpec("icaart2022-slgs", "1", "ICAART 2022 Table 1: VGG16 vs LaVAN", "lavan",
                              "vgg16", "imagenet", "icaart2022-vgg16", "demo-fmnist"),
    "icaart2022-2": TableSpec("icaart2022-slgs", "2", "ICAART 2022 Table 2: Inception-v3 vs LaVAN", "lavan",
                              "inception_v3", "imagenet", "icaart2022-inception_v3", "demo-fmnist-inception"),
    "icaart2022-3": TableSpec("icaart2022-slgs", "3", "ICAART 2022 Table 3: VGG16 vs Adversarial Patch (λ=3.5)",
                              "adversarial_patch", "vgg16", "imagenet", "icaart2022-vgg16", "demo-fmnist",
                              lambdas=(3.5,)),
    "icaart2022-4": TableSpec("icaart2022-slgs", "4", "ICAART 2022 Table 4: Inception-v3 vs Adversarial Patch (λ=3.5)",
                              "adversarial_patch", "inception_v3", "imagenet", "icaart2022-inception_v3",
                              "demo-fmnist-inception", lambdas=(3.5,)),
    "icaart2022-ssim": TableSpec("icaart2022-slgs", "ssim-text", "ICAART 2022 Sec. 4.2: mean SSIM(input, defended)",
                                 "none", "vgg16", "imagenet", "icaart2022-vgg16", "demo-fmnist", kind="ssim"),
}

TABLES.update({
    "tomm2022-6": TableSpec("tomm2022-aad", "6", "TOMM 2022 Table 6: adversarial training with and without AAD",
                            "evasion", "lenet", "mnist", "tomm2022-mnist", "demo-tomm-fmnist", kind="tomm"),
    "tomm2022-7": TableSpec("tomm2022-aad", "7", "TOMM 2022 Table 7: attention-augmented attacks (A3)",
                            "evasion", "resnet50", "imagenet", "tomm2022-imagenet", "demo-tomm-fmnist", kind="tomm"),
})
TABLE7_PREFIX = "T7 "
TOMM_PRESETS = ("tomm2022-mnist", "tomm2022-cifar10", "tomm2022-imagenet")
TRAINING_LABELS = {"raw": "RAW", "madry": "Madry", "madry+aad": "Madry+AAD", "alp": "ALP", "alp+aad": "ALP+AAD"}

ATTACK_LABELS = {"lavan": "LaVAN", "adversarial_patch": "Adversarial Patch"}
DEFENSE_LABELS = {"none": "No defense", "lgs": "LGS", "slgs": "SLGS", "wlgs": "WLGS"}


def reference_values(name: str = "icaart2022_slgs_tables") -> pd.DataFrame:
    with resources.files("patchbench").joinpath(f"reference/{name}.csv").open() as f:
        return pd.read_csv(f)


def _fmt_pct(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def select_cells(cells: pd.DataFrame, preset: str, attack: str) -> pd.DataFrame:
    """Cells of ``preset`` for the model used last, the newest cell per (defense, λ, condition, size)."""
    df = cells[cells["preset"] == preset]
    if df.empty:
        return df
    df = df.sort_values("created")
    latest_model = df["model_id"].iloc[-1]
    df = df[(df["model_id"] == latest_model) & df["attack"].isin(["none", attack])].copy()
    df["lam_key"] = df["lam"].fillna(-1.0)
    df["px_key"] = df["patch_px"].fillna(-1).astype(int)
    return df.drop_duplicates(["defense", "lam_key", "condition", "px_key"], keep="last")


def _ordered_keys(ours: pd.DataFrame, ref: pd.DataFrame, lambdas) -> pd.DataFrame:
    """(defense, λ) rows: ours ∪ paper's, in the paper's order (none, LGS, SLGS, WLGS; λ high→low)."""
    all_keys = pd.concat([ours[["defense", "lam"]], ref[["defense", "lam"]]]).drop_duplicates()
    if lambdas is not None:
        keep = all_keys["lam"].apply(lambda v: pd.isna(v) or any(abs(v - lam) < 1e-6 for lam in lambdas))
        all_keys = all_keys[keep]
    order = {d: i for i, d in enumerate(DEFENSE_LABELS)}
    return all_keys.assign(o=all_keys["defense"].map(lambda d: order.get(d, 99)),
                           l=-all_keys["lam"].fillna(99)).sort_values(["o", "l"])


def _lam_match(series: pd.Series, lam) -> pd.Series:
    return series.isna() if pd.isna(lam) else (series - lam).abs() < 1e-6


def build_table(name: str, cells: pd.DataFrame, preset: str | None = None) -> tuple[pd.DataFrame, str]:
    """Return (table, caption). Columns: Defense, λ, then per column group ours / paper (/ Δ)."""
    if name not in TABLES:
        raise PatchbenchError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    spec = TABLES[name]
    have = set(cells["preset"].dropna()) if len(cells) else set()
    if spec.kind == "tomm":
        if preset is None:
            preset = next((p for p in TOMM_PRESETS if p in have), spec.demo_preset)
        return _build_tomm(spec, cells, preset)
    if preset is None:
        preset = spec.paper_preset if spec.paper_preset in have else spec.demo_preset
    ours = select_cells(cells, preset, spec.attack)
    if ours.empty or (spec.attack != "none" and not (ours["attack"] == spec.attack).any()):
        raise PatchbenchError(f"no stored {spec.attack if spec.attack != 'none' else ''} cells for preset {preset!r} "
                              f"in these results; run `patchbench sweep --preset {preset}` first")
    ref = reference_values()
    ref = ref[(ref["paper"] == spec.paper) & (ref["table"].astype(str) == spec.table)]
    if spec.kind == "ssim":
        return _build_ssim(spec, ours, ref, preset)
    ref_sizes = sorted(int(s) for s in ref["patch_px"].dropna().unique())
    our_sizes = sorted(int(s) for s in ours.loc[ours["condition"] == "attacked", "patch_px"].dropna().unique())
    dataset, model = ours["dataset"].iloc[0], ours["model"].iloc[0]
    same_setting = dataset == spec.dataset and model == spec.model

    groups = [("Clean", None, None)]
    attack_label = ATTACK_LABELS.get(spec.attack, spec.attack)
    for i, s in enumerate(our_sizes):
        paper_px = ref_sizes[i] if i < len(ref_sizes) else None
        label = f"{attack_label} {s}px" if paper_px in (None, s) else f"{attack_label} {s}px (paper {paper_px}px)"
        groups.append((label, s, paper_px))

    rows = []
    for _, k in _ordered_keys(ours, ref, spec.lambdas).iterrows():
        d, lam = k["defense"], k["lam"]

        def lam_ok(series, lam=lam):
            return _lam_match(series, lam)

        row = {"Defense": DEFENSE_LABELS.get(d, d), "λ": "" if pd.isna(lam) else f"{lam:g}"}
        for label, s, paper_px in groups:
            o = ours[(ours["defense"] == d) & lam_ok(ours["lam"])]
            r = ref[(ref["defense"] == d) & lam_ok(ref["lam"])]
            if s is None:
                o = o[o["condition"] == "clean"]
                r = r[r["condition"] == "clean"]
            else:
                o = o[(o["condition"] == "attacked") & (o["patch_px"] == s)]
                r = r[(r["condition"] == "attacked") & (r["patch_px"] == paper_px)] if paper_px else r.iloc[0:0]
            acc = ci = None
            if len(o):
                c = o.iloc[-1]
                acc = 100 * c["accuracy"]
                ci = f"[{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
            paper_val = float(r["value"].iloc[0]) if len(r) else None
            row[f"{label} ours"] = "" if acc is None else f"{acc:.2f} {ci}"
            row[f"{label} paper"] = _fmt_pct(paper_val)
            if same_setting:
                row[f"{label} Δ"] = "" if acc is None or paper_val is None else f"{acc - paper_val:+.2f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    n = int(ours["n"].iloc[0])
    caption = (f"{spec.title}. Top-1 accuracy (%) with Wilson 95% CI; ours: {dataset} / {model}, "
               f"{int(ours['image_size'].iloc[0])} px, {n} {ours['split'].iloc[0]} images (preset {preset}).")
    if not same_setting:
        caption += (f" Paper: {spec.dataset} / {spec.model} at 400 px — a different dataset and model, so "
                    f"compare trends, not values (no Δ column).")
    asr = ours[(ours["condition"] == "attacked") & (ours["defense"] == "none")]
    if len(asr):
        caption += " Targeted success without defense: " + ", ".join(
            f"{int(r.patch_px)}px {100 * r.attack_success_rate:.1f}%" for r in asr.sort_values("patch_px").itertuples()) + "."
    return table, caption


def _build_ssim(spec: TableSpec, ours: pd.DataFrame, ref: pd.DataFrame, preset: str) -> tuple[pd.DataFrame, str]:
    """Mean SSIM between clean input and defended image, per defense and λ (paper: one value
    per method, λ not stated — shown beside each of our λ rows)."""
    ours = ours[(ours["condition"] == "clean") & (ours["defense"] != "none") & ours["ssim"].notna()]
    if ours.empty:
        raise PatchbenchError(f"no SSIM stored for preset {preset!r}; rerun `patchbench sweep --preset {preset}` "
                              "(SSIM is measured on clean cells, data.ssim_n > 0)")
    dataset, model = ours["dataset"].iloc[0], ours["model"].iloc[0]
    same_setting = dataset == spec.dataset and model == spec.model
    rows = []
    for _, k in _ordered_keys(ours, ref.iloc[0:0], spec.lambdas).iterrows():
        o = ours[(ours["defense"] == k["defense"]) & _lam_match(ours["lam"], k["lam"])]
        r = ref[ref["defense"] == k["defense"]]
        paper_val = float(r["value"].iloc[0]) if len(r) else None
        val = float(o["ssim"].iloc[-1]) if len(o) else None
        row = {"Defense": DEFENSE_LABELS.get(k["defense"], k["defense"]), "λ": f"{k['lam']:g}",
               "SSIM ours": "" if val is None else f"{val:.3f}", "SSIM paper": "" if paper_val is None else f"{paper_val:.3f}"}
        if same_setting:
            row["SSIM Δ"] = "" if val is None or paper_val is None else f"{val - paper_val:+.3f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    n = int(ours["ssim_n"].iloc[0])
    caption = (f"{spec.title}. scikit-image structural_similarity, mean over the first {n} clean "
               f"{ours['split'].iloc[0]} images; ours: {dataset} / {model}, {int(ours['image_size'].iloc[0])} px "
               f"(preset {preset}). Paper: one value per method on 1000 ImageNet images, λ not stated.")
    return table, caption


def _column_order(label: str) -> tuple:
    """The papers' column orders: FGSM, PGD-k (k ascending), CW-k, other attacks; then Table 7's
    Iter-StepLL, Iter-StepLL+A3, PGD, PGD+A3."""
    import re

    if label.startswith(TABLE7_PREFIX):
        rank7 = {"Iter-StepLL": 0, "Iter-StepLL+A3": 1, "PGD": 2, "PGD+A3": 3}
        return (1, rank7.get(label.removeprefix(TABLE7_PREFIX), 9), 0, label)
    m = re.fullmatch(r"(FGSM|PGD|CW)(\d*)", label)
    if m:
        return (0, ("FGSM", "PGD", "CW").index(m.group(1)), int(m.group(2) or 0), label)
    return (0, 9, 0, label)


def _build_tomm(spec: TableSpec, cells: pd.DataFrame, preset: str) -> tuple[pd.DataFrame, str]:
    """Rows: training mode × (ours, paper, Δ); columns: Clean and the preset's attack columns."""
    df = cells[(cells["preset"] == preset) & cells["training"].notna()] if "training" in cells else cells.iloc[0:0]
    if df.empty:
        raise PatchbenchError(f"no stored adversarial-training cells for preset {preset!r}; run "
                              f"`patchbench reproduce tomm2022` (or with --preset-scale paper) first")
    df = df.sort_values("created").copy()
    df["column"] = df.apply(lambda r: "Clean" if r["condition"] == "clean" else (r["attack_label"] or r["attack"]), axis=1)
    df = df.drop_duplicates(["training", "column"], keep="last")
    ref = reference_values(f"tomm2022_aad_table{spec.table}")
    dataset, model = df["dataset"].iloc[0], df["model"].iloc[0]
    # the paper's rows for the same dataset; the demo (Fashion-MNIST / LeNet) is shown beside MNIST / LeNet
    paper_dataset = dataset if dataset in set(ref["dataset"]) else ("mnist" if spec.table == "6" else spec.dataset)
    ref = ref[ref["dataset"] == paper_dataset]
    same_setting = dataset == paper_dataset and model in set(ref["model"])
    columns = ["Clean"] + sorted(set(df.loc[df["condition"] != "clean", "column"]), key=_column_order)
    trainings = [t for t in TRAINING_LABELS if t in set(df["training"])]
    # a preset's Table 7 columns are labelled "T7 <attack>"; Table 7 has no clean column, one (raw) model
    if spec.table == "7":
        columns = [c for c in columns if c.startswith(TABLE7_PREFIX)]
        trainings = [t for t in trainings if t == "raw"]
        if not columns:
            raise PatchbenchError(f"preset {preset!r} has no Table 7 attacks (evasion entries labelled "
                                  f"'{TABLE7_PREFIX}...')")
    else:
        columns = [c for c in columns if not c.startswith(TABLE7_PREFIX)]
    rows = []
    for t in trainings:
        ours_row = {"Training": TRAINING_LABELS[t], "": "ours"}
        paper_row = {"Training": TRAINING_LABELS[t], "": f"paper ({paper_dataset})"}
        delta_row = {"Training": TRAINING_LABELS[t], "": "Δ"}
        for col in columns:
            o = df[(df["training"] == t) & (df["column"] == col)]
            ref_attack = "clean" if col == "Clean" else col.removeprefix(TABLE7_PREFIX).lower()
            r = ref[(ref["training"] == t) & (ref["attack"] == ref_attack)]
            acc = 100 * float(o["accuracy"].iloc[-1]) if len(o) else None
            ci = f" [{100 * o['ci_low'].iloc[-1]:.1f}, {100 * o['ci_high'].iloc[-1]:.1f}]" if len(o) else ""
            paper_val = float(r["value"].iloc[0]) if len(r) else None
            ours_row[col] = "" if acc is None else f"{acc:.2f}{ci}"
            paper_row[col] = _fmt_pct(paper_val)
            delta_row[col] = "" if acc is None or paper_val is None else f"{acc - paper_val:+.2f}"
        rows += [ours_row, paper_row] + ([delta_row] if same_setting else [])
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    eps = sorted({json.loads(p)["eps"] for p in df["attack_params"].dropna()})
    n = int(df["n"].iloc[0])
    caption = (f"{spec.title}. Top-1 accuracy (%) with Wilson 95% CI; ours: {dataset} / {model}, {n} "
               f"{df['split'].iloc[0]} images, ε = {', '.join(f'{e:.4g}' for e in eps)} (preset {preset}).")
    if not same_setting:
        caption += (f" Paper: {paper_dataset} / {', '.join(sorted(set(ref['model'])))} — a different setting, so "
                    "compare trends, not values (no Δ row).")
    return table, caption


def render(table: pd.DataFrame, caption: str, fmt: str, notes: list[str] | None = None) -> str | None:
    """Text for markdown/csv/latex; for rich, prints and returns None."""
    notes = notes or []
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "markdown":
        return f"**{caption}**\n\n" + table.to_markdown(index=False) + "".join(f"\n\n_{n}_" for n in notes) + "\n"
    if fmt == "latex":
        return table.to_latex(index=False, caption=caption, escape=True)
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        t = Table(title=caption, title_justify="left", show_lines=False, caption="\n".join(notes) or None)
        for col in table.columns:
            t.add_column(col, justify="left" if col in ("Defense", "λ") else "right",
                         style="bold" if col.endswith("ours") else ("dim" if col.endswith("paper") else None))
        for _, r in table.iterrows():
            t.add_row(*[str(v) for v in r])
        Console(width=max(120, 24 * len(table.columns))).print(t)
        return None
    raise PatchbenchError(f"unknown format {fmt!r}; use rich, markdown, csv or latex")
