"""Paper tables rebuilt from stored cells, with the published numbers beside ours.

Ours and the paper's are matched by defense, λ and column (clean, then patch sizes in increasing
order: at demo scale the three LaVAN sizes stand in for the paper's 42/52/60 px). Δ (ours - paper,
percentage points) is shown only when dataset and model are the paper's; otherwise the caption
names both settings and Δ is left out, since the numbers measure different things.
"""

from __future__ import annotations

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
    attack: str
    model: str
    dataset: str
    paper_preset: str
    demo_preset: str


TABLES: dict[str, TableSpec] = {
    "icaart2022-1": TableSpec("icaart2022-slgs", "1", "ICAART 2022 Table 1: VGG16 vs LaVAN", "lavan",
                              "vgg16", "imagenet", "icaart2022-vgg16", "demo-fmnist"),
    "icaart2022-2": TableSpec("icaart2022-slgs", "2", "ICAART 2022 Table 2: Inception-v3 vs LaVAN", "lavan",
                              "inception_v3", "imagenet", "icaart2022-inception_v3", "demo-fmnist"),
}

DEFENSE_LABELS = {"none": "No defense", "lgs": "LGS", "slgs": "SLGS", "wlgs": "WLGS"}


def reference_values() -> pd.DataFrame:
    with resources.files("patchbench").joinpath("reference/icaart2022_slgs_tables.csv").open() as f:
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


def build_table(name: str, cells: pd.DataFrame, preset: str | None = None) -> tuple[pd.DataFrame, str]:
    """Return (table, caption). Columns: Defense, λ, then per column group ours / paper (/ Δ)."""
    if name not in TABLES:
        raise PatchbenchError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    spec = TABLES[name]
    if preset is None:
        have = set(cells["preset"].dropna()) if len(cells) else set()
        preset = spec.paper_preset if spec.paper_preset in have else spec.demo_preset
    ours = select_cells(cells, preset, spec.attack)
    if ours.empty:
        raise PatchbenchError(f"no stored cells for preset {preset!r} in these results; run "
                              f"`patchbench sweep --preset {preset}` first")
    ref = reference_values()
    ref = ref[(ref["paper"] == spec.paper) & (ref["table"].astype(str) == spec.table)]
    ref_sizes = sorted(int(s) for s in ref["patch_px"].dropna().unique())
    our_sizes = sorted(int(s) for s in ours.loc[ours["condition"] == "attacked", "patch_px"].dropna().unique())
    dataset, model = ours["dataset"].iloc[0], ours["model"].iloc[0]
    same_setting = dataset == spec.dataset and model == spec.model

    groups = [("Clean", None, None)]
    for i, s in enumerate(our_sizes):
        paper_px = ref_sizes[i] if i < len(ref_sizes) else None
        label = f"LaVAN {s}px" if paper_px in (None, s) else f"LaVAN {s}px (paper {paper_px}px)"
        groups.append((label, s, paper_px))

    keys = ours[["defense", "lam"]].drop_duplicates()
    ref_keys = ref[["defense", "lam"]].drop_duplicates()
    all_keys = pd.concat([keys, ref_keys]).drop_duplicates()
    order = {d: i for i, d in enumerate(DEFENSE_LABELS)}
    all_keys = all_keys.assign(o=all_keys["defense"].map(lambda d: order.get(d, 99)),
                               l=-all_keys["lam"].fillna(99)).sort_values(["o", "l"])

    rows = []
    for _, k in all_keys.iterrows():
        d, lam = k["defense"], k["lam"]
        lam_ok = (lambda s: s.isna()) if pd.isna(lam) else (lambda s: (s - lam).abs() < 1e-6)
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
