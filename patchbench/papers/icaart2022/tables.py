"""ICAART 2022 Tables 1-4 (accuracy per defense/λ × clean/patch size) and the SSIM comparison.

Ours and the paper's are matched by defense, λ and column (clean, then patch sizes in increasing
order: at demo scale the three LaVAN sizes stand in for the paper's 42/52/60 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from patchbench.api import (
    PatchbenchError, Table, TableContext, audit_legend, audit_mark, build_optimality, fmt_pct, lam_match, preset_cells,
    split_models,
)

PAPER_KEY = "icaart2022-slgs"  # the `paper` column of the reference CSV
ATTACK_LABELS = {"lavan": "LaVAN", "adversarial_patch": "Adversarial Patch"}
DEFENSE_LABELS = {"none": "No defense", "lgs": "LGS", "slgs": "SLGS", "wlgs": "WLGS"}


def reference_rows(ctx: TableContext, table: str) -> pd.DataFrame:
    ref = ctx.reference("icaart2022_slgs_tables")
    return ref[(ref["paper"] == PAPER_KEY) & (ref["table"].astype(str) == table)]


def select_cells(cells: pd.DataFrame, preset: str, attack: str) -> pd.DataFrame:
    """Cells of ``preset`` for the model used last, the newest cell per (defense, λ, condition,
    size, patch seed) — one row per seed, so tables can average over seeds."""
    df = cells[cells["preset"] == preset]
    if df.empty:
        return df
    df = split_models(df.sort_values("created"))[0]  # the preset's classifier, not the certified section's fine-tuned one
    df = df[df["attack"].isin(["none", attack])]
    # the tables' rows: no defense and the λ defenses (the certified baseline's λ-free cells are table certified's)
    df = df[(df["defense"] == "none") | df["lam"].notna()].copy()
    df["lam_key"] = df["lam"].fillna(-1.0)
    df["px_key"] = df["patch_px"].fillna(-1).astype(int)
    seed = df["attack_seed"] if "attack_seed" in df else pd.Series(None, index=df.index, dtype=float)
    df["seed_key"] = seed.fillna(-1).astype(int)
    return df.drop_duplicates(["defense", "lam_key", "condition", "px_key", "seed_key"], keep="last")


@dataclass(frozen=True)
class SanityConfig:
    """The preset's ``sanity:`` section: when a table's footnote warns about the attack.

    ``min_success``: warn when an attack's targeted success without defense (mean over seeds) is
    below this fraction; ``monotone``: warn when undefended attacked accuracy *rises* with patch
    size by more than the two intervals (a larger patch can always copy a smaller one, so a rise
    means the larger one is under-optimised)."""

    settings_only: ClassVar[bool] = True  # its absence means these defaults: `--set sanity.x=v` may add it
    min_success: float = 0.2
    monotone: bool = True


def seed_summary(rows: pd.DataFrame) -> dict:
    """Accuracy over the seeds of one table cell (rows: one cell per seed, same images).

    One seed: the cell's accuracy with its Wilson 95% interval over images. S >= 2 seeds: the
    mean p̄ of the per-seed accuracies ± t_{0.975, S-1} · sqrt(s²/S + p̄(1-p̄)/n), where s² is the
    seed-to-seed variance and p̄(1-p̄)/n the binomial variance of the n shared images (both in
    the interval; conservative since the images are shared by all seeds)."""
    from scipy.stats import t as student_t  # reason: scipy.stats takes a second to import; only this table needs it

    acc = rows["accuracy"].astype(float)
    if len(rows) == 1:
        c = rows.iloc[0]
        return {"mean": float(c["accuracy"]), "half": None, "low": float(c["ci_low"]), "high": float(c["ci_high"]),
                "seeds": 1, "success": c.get("attack_success_rate")}
    p, n, k = float(acc.mean()), int(rows["n"].iloc[0]), len(rows)
    half = float(student_t.ppf(0.975, k - 1)) * math.sqrt(float(acc.var(ddof=1)) / k + p * (1 - p) / n)
    succ = rows["attack_success_rate"].astype(float).mean() if "attack_success_rate" in rows else None
    return {"mean": p, "half": half, "low": p - half, "high": p + half, "seeds": k, "success": succ}


def fmt_summary(sm: dict) -> str:
    if sm["half"] is None:
        return f"{100 * sm['mean']:.2f} [{100 * sm['low']:.1f}, {100 * sm['high']:.1f}]"
    return f"{100 * sm['mean']:.2f} ± {100 * sm['half']:.2f}"


def sanity_warnings(ours: pd.DataFrame, attack_label: str, sanity: SanityConfig) -> list[str]:
    """Footnotes on the undefended attacked cells (see :class:`SanityConfig`)."""
    und = ours[(ours["condition"] == "attacked") & (ours["defense"] == "none")]
    sizes = sorted(int(s) for s in und["patch_px"].dropna().unique())
    summaries = {s: seed_summary(und[und["patch_px"] == s]) for s in sizes}
    notes = []
    for s in sizes:
        succ = summaries[s]["success"]
        if succ is not None and succ == succ and succ < sanity.min_success:
            notes.append(f"Warning: {attack_label} {s}px reaches only {100 * succ:.1f}% targeted success without a "
                         f"defense (preset threshold {100 * sanity.min_success:.0f}%): little attack to defend against.")
    if sanity.monotone:
        for a, b in zip(sizes, sizes[1:]):
            sa, sb = summaries[a], summaries[b]
            margin = (sa["high"] - sa["mean"]) + (sb["high"] - sb["mean"])
            if sb["mean"] - sa["mean"] > margin:
                notes.append(f"Warning: undefended accuracy under the {b}px {attack_label} ({100 * sb['mean']:.2f}%) is above "
                             f"the {a}px one's ({100 * sa['mean']:.2f}%) beyond their intervals: the larger patch is "
                             "under-optimised.")
    return notes


def area(side: int, image_px: int) -> str:
    """A square patch's share of the image, as the tables print it: ``= 2.4 %``."""
    return f"= {100 * side ** 2 / image_px ** 2:.1f} %"


def _ordered_keys(ours: pd.DataFrame, ref: pd.DataFrame, lambdas) -> pd.DataFrame:
    """(defense, λ) rows: ours ∪ paper's, in the paper's order (none, LGS, SLGS, WLGS; λ high→low)."""
    all_keys = pd.concat([ours[["defense", "lam"]], ref[["defense", "lam"]]]).drop_duplicates()
    if lambdas is not None:
        keep = all_keys["lam"].apply(lambda v: pd.isna(v) or any(abs(v - lam) < 1e-6 for lam in lambdas))
        all_keys = all_keys[keep]
    order = {d: i for i, d in enumerate(DEFENSE_LABELS)}
    return all_keys.assign(o=all_keys["defense"].map(lambda d: order.get(d, 99)),
                           l=-all_keys["lam"].fillna(99)).sort_values(["o", "l"])


def build_patch_table(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    """Columns: Defense, λ, then per column group (clean, each patch size) ours / paper (/ Δ)."""
    preset = ctx.preset
    attack, lambdas = t.option("attack"), t.option("lambdas")
    paper_dataset, paper_model = t.option("dataset"), t.option("model")
    ours = select_cells(cells, preset, attack)
    if ours.empty or not (ours["attack"] == attack).any():
        raise PatchbenchError(f"no stored {attack} cells for preset {preset!r} in these results; "
                              f"run `patchbench sweep --preset {preset}` first")
    ref = reference_rows(ctx, t.option("table"))
    ref_sizes = sorted(int(s) for s in ref["patch_px"].dropna().unique())
    our_sizes = sorted(int(s) for s in ours.loc[ours["condition"] == "attacked", "patch_px"].dropna().unique())
    dataset, model = ours["dataset"].iloc[0], ours["model"].iloc[0]
    same_setting = dataset == paper_dataset and model == paper_model

    groups = [("Clean", None, None)]
    attack_label = ATTACK_LABELS.get(attack, attack)
    image_px = int(ours["image_size"].iloc[0])
    paper_image_px = int(ref["image_px"].dropna().iloc[0]) if "image_px" in ref and ref["image_px"].notna().any() else None
    for i, s in enumerate(our_sizes):
        paper_px = ref_sizes[i] if i < len(ref_sizes) else None
        label = f"{attack_label} {s}px {area(s, image_px)}"
        if paper_px not in (None, s) or (paper_px is not None and paper_image_px not in (None, image_px)):
            label += f" (paper {paper_px}px{'' if paper_image_px is None else ' ' + area(paper_px, paper_image_px)})"
        groups.append((label, s, paper_px))

    rows, seeds, shown = [], 1, []
    for _, k in _ordered_keys(ours, ref, lambdas).iterrows():
        d, lam = k["defense"], k["lam"]
        row = {"Defense": DEFENSE_LABELS.get(d, d), "λ": "" if pd.isna(lam) else f"{lam:g}"}
        o_row = ours[(ours["defense"] == d) & lam_match(ours["lam"], lam)]  # once a row: the groups filter these few
        r_row = ref[(ref["defense"] == d) & lam_match(ref["lam"], lam)]
        for label, s, paper_px in groups:
            if s is None:
                o = o_row[o_row["condition"] == "clean"]
                r = r_row[r_row["condition"] == "clean"]
            else:
                o = o_row[(o_row["condition"] == "attacked") & (o_row["patch_px"] == s)]
                r = r_row[(r_row["condition"] == "attacked") & (r_row["patch_px"] == paper_px)] if paper_px else r_row.iloc[0:0]
            sm = seed_summary(o) if len(o) else None
            acc = None if sm is None else 100 * sm["mean"]
            seeds = max(seeds, sm["seeds"] if sm else 1)
            paper_val = float(r["value"].iloc[0]) if len(r) else None
            row[f"{label} ours"] = "" if sm is None else fmt_summary(sm) + audit_mark(o)
            shown.append(o)
            row[f"{label} paper"] = fmt_pct(paper_val)
            if same_setting:
                row[f"{label} Δ"] = "" if acc is None or paper_val is None else f"{acc - paper_val:+.2f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    n = int(ours["n"].iloc[0])
    if seeds > 1:
        what = (f"Top-1 accuracy (%); attacked columns: mean over {seeds} patch seeds ± 95% t-interval "
                "(seed-to-seed plus image variance, see seed_summary); clean: Wilson 95% CI")
    else:
        what = "Top-1 accuracy (%) with Wilson 95% CI"
    caption = (f"{t.title}. {what}; ours: {dataset} / {model}, "
               f"{int(ours['image_size'].iloc[0])} px, {n} {ours['split'].iloc[0]} images (preset {preset}).")
    if not same_setting:
        caption += (f" Paper: {paper_dataset} / {paper_model} at 400 px — a different dataset and model, so "
                    f"compare trends, not values (no Δ column).")
    asr = ours[(ours["condition"] == "attacked") & (ours["defense"] == "none")]
    if len(asr):
        by_size = asr.groupby("patch_px")["attack_success_rate"].mean().sort_index()
        caption += " Targeted success without defense: " + ", ".join(
            f"{int(px)}px {area(int(px), image_px)} {100 * v:.1f}%" for px, v in by_size.items()) + (
            " (mean over seeds)." if seeds > 1 else ".")
    table.attrs["warnings"] = (sanity_warnings(ours, attack_label, ctx.sections.get("sanity") or SanityConfig())
                               + audit_legend(pd.concat(shown)[lambda d: d["condition"] == "attacked"], preset))
    return table, caption


def build_ssim_table(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    """Mean SSIM between clean input and defended image, per defense and λ (paper: one value
    per method, λ not stated — shown beside each of our λ rows)."""
    preset = ctx.preset
    preset_cells(cells, preset)
    ours = select_cells(cells, preset, "none")
    ours = ours[(ours["condition"] == "clean") & (ours["defense"] != "none") & ours["ssim"].notna()]
    if ours.empty:
        raise PatchbenchError(f"no SSIM stored for preset {preset!r}; rerun `patchbench sweep --preset {preset}` "
                              "(SSIM is measured on clean cells, data.ssim_n > 0)")
    ref = reference_rows(ctx, t.option("table"))
    dataset, model = ours["dataset"].iloc[0], ours["model"].iloc[0]
    same_setting = dataset == t.option("dataset") and model == t.option("model")
    rows = []
    for _, k in _ordered_keys(ours, ref.iloc[0:0], None).iterrows():
        o = ours[(ours["defense"] == k["defense"]) & lam_match(ours["lam"], k["lam"])]
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
    caption = (f"{t.title}. scikit-image structural_similarity, mean over the first {n} clean "
               f"{ours['split'].iloc[0]} images; ours: {dataset} / {model}, {int(ours['image_size'].iloc[0])} px "
               f"(preset {preset}). Paper: one value per method on 1000 ImageNet images, λ not stated.")
    return table, caption


def _table(name, number, title, build, attack, model, paper_preset, demo_preset, lambdas=None) -> Table:
    return Table(name, "icaart2022", title, build, (paper_preset,), demo_preset,
                 (("table", number), ("attack", attack), ("model", model), ("dataset", "imagenet"), ("lambdas", lambdas)))


TABLES = {t.name: t for t in [
    _table("icaart2022-1", "1", "ICAART 2022 Table 1: VGG16 vs LaVAN", build_patch_table, "lavan",
           "vgg16", "icaart2022-vgg16", "demo-fmnist"),
    _table("icaart2022-2", "2", "ICAART 2022 Table 2: Inception-v3 vs LaVAN", build_patch_table, "lavan",
           "inception_v3", "icaart2022-inception_v3", "demo-fmnist-inception"),
    _table("icaart2022-3", "3", "ICAART 2022 Table 3: VGG16 vs Adversarial Patch (λ=3.5)", build_patch_table,
           "adversarial_patch", "vgg16", "icaart2022-vgg16", "demo-fmnist", lambdas=(3.5,)),
    _table("icaart2022-4", "4", "ICAART 2022 Table 4: Inception-v3 vs Adversarial Patch (λ=3.5)", build_patch_table,
           "adversarial_patch", "inception_v3", "icaart2022-inception_v3", "demo-fmnist-inception", lambdas=(3.5,)),
    _table("icaart2022-ssim", "ssim-text", "ICAART 2022 Sec. 4.2: mean SSIM(input, defended)", build_ssim_table,
           "none", "vgg16", "icaart2022-vgg16", "demo-fmnist"),
    # not a table of the paper: how strong its attacks (and ours) are, the patch-optimality: section
    Table("patch-optimality", "icaart2022", "How strong each patch attack is (AttackBench optimality over patch area)",
          build_optimality, (), "demo-fmnist"),
]}
