"""BMVC 2023 Table 2 (bottom) laid out as the paper's: defense success rate α per method and
architecture (rows) and per dataset (column groups).

The table spans presets, one dataset each: built for a paper preset it shows every paper preset
with stored cells (CIFAR-10, CIFAR-100, ImageNet); for any other preset (the demo) that preset
alone. Per dataset present: α ours, α ours white-box, the paper's α, and Δ = ours − paper.

* A row of ours is (method, our net, the paper's net it maps to): each volumized syllabus and the
  undefended model f, then LGS and DW measured on f, per architecture.
* α ours: the patches trained on f — transfer patches for each g, f's own for f and for LGS / DW
  on f (not trained through the defense) — the setting of the paper's fixed, published patches.
  White-box: patches trained on the model itself (each g; f's own for f).
* The paper's α stands in a row only when the paper reports that method on the architecture the
  row's net maps to (``volumetric.paper_models``), in that dataset's column; Δ only where our net
  is the paper's own (``=``, not a stand-in ``≈``) and both numbers exist. LGS's published α names
  no architecture, so it is never set beside ours.
* Every published row no row of ours takes keeps its own row with its architecture ("H/Ours
  (Effn)", "DW (Inception)"), marked "reported in the paper, not run" (or "not run on this
  architecture" for a method we run elsewhere), and a dataset the paper reports but no preset of
  ours ran keeps its paper column, so the paper's table is always complete.
* masked %: for a defense whose maps hold a mask (DW: the saliency mask it inpaints), the share of
  the image's pixels it covered, mean over the row's images (the cells' ``masked_pct``); "0
  (nothing masked)" says the defense left every image as it was, so its α is the undefended
  model's. Shown only when some row has it.
"""

from __future__ import annotations

import pandas as pd

from patchbench.api import PatchbenchError, Table, TableContext, fmt_delta, fmt_pct, get_dataset_info
from patchbench.papers.bmvc2023.cells import (
    DATASETS, NA, PAPER_ARCHS, REFERENCE, REPORTED_ONLY, arch_label, archs_of, fmt_rate, method_label, paper_models,
    pooled, volumization_cells,
)

DEFENSE_ORDER = ("lgs", "dw")  # the paper's order; any other defense follows, by name


def spanned_presets(t: Table, cells: pd.DataFrame, ctx: TableContext) -> list[str]:
    """``ctx.preset`` and, when it is one of the table's paper presets, every other one with cells."""
    if ctx.preset not in t.paper_presets:
        return [ctx.preset]
    have = set(cells.loc[cells["method"].notna(), "preset"]) if "method" in cells else set()
    return [p for p in t.paper_presets if p == ctx.preset or p in have]


def _rows(groups: dict) -> list[tuple]:
    """(kind, method, arch, paper model) of every row of ours, per architecture: syllabi, f, defenses."""
    keys, order = set(), {}
    for _, patches, pms in groups.values():
        for arch in archs_of(patches):
            order.setdefault(arch, len(order))
            at = patches[patches["model"] == arch]
            keys |= {("model", m, arch, pms.get(arch)) for m in at["method"].dropna().unique()}
            f = at[at["method"] == "undefended"]
            keys |= {("defense", d, arch, pms.get(arch)) for d in f["defense"].dropna().unique() if d != "none"}

    def rank(k):  # syllabi by name, then f, then f's defenses in the paper's order
        kind, m, arch, pm = k
        place = (m == "undefended") if kind == "model" else 2 + (DEFENSE_ORDER.index(m) if m in DEFENSE_ORDER else 9)
        return order[arch], pm or "", place, m

    return sorted(keys, key=rank)


def _ours(key: tuple, patches: pd.DataFrame) -> tuple:
    """(α ours, α white-box, λ, masked %) of a row in one dataset's patch cells (None where there are none)."""
    kind, method, arch, _ = key
    at = patches[patches["model"] == arch]
    if kind == "model":
        sub = at[(at["method"] == method) & (at["defense"] == "none")]
        own = pooled(sub[sub["patch_source"] == "self"], "kept_correct", "n_clean_correct")
        return (own if method == "undefended" else
                pooled(sub[sub["patch_source"] == "undefended"], "kept_correct", "n_clean_correct")), own, None, None
    sub = at[(at["method"] == "undefended") & (at["defense"] == method)]
    lams = sorted(sub["lam"].dropna().unique())
    if lams:  # the preset's largest λ (LGS's paper value, 2.3, in the shipped presets)
        sub = sub[sub["lam"] == lams[-1]]
    return pooled(sub, "kept_correct", "n_clean_correct"), None, lams[-1] if lams else None, _masked(sub)


def _masked(sub: pd.DataFrame) -> float | None:
    """The cells' masked share (%), weighted by their images; None where no cell measured one."""
    if "masked_pct" not in sub:
        return None
    have = sub[sub["masked_pct"].notna()]
    return float((have["masked_pct"] * have["n"]).sum() / have["n"].sum()) if len(have) else None


def fmt_masked(v: float | None) -> str:
    return NA if v is None else "0 (nothing masked)" if v == 0 else f"{v:.2f}"


def build_bottom(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    ref = ctx.reference(REFERENCE)
    ref = ref[ref["table"] == "2-bottom"]
    groups: dict[str, tuple] = {}  # dataset -> (preset, its patch cells, its paper_models)
    for p in spanned_presets(t, cells, ctx):
        df = volumization_cells(cells, p)
        patches = df[(df["condition"] == "attacked") & df["patch_px"].notna()]
        if patches.empty and p == ctx.preset:
            raise PatchbenchError(f"preset {p!r} has no adversarial-patch cells (Table 2 bottom)")
        if len(patches):
            groups.setdefault(df["dataset"].iloc[0], (p, patches, paper_models(ctx, p)))
    paper_only = [d for d in DATASETS if d not in groups and (ref["dataset"] == d).any()]

    def paper(method: str, pm, ds: str) -> float | None:  # pm None: the paper's row that names no architecture
        model = ref["model"].isna() if pm is None else ref["model"] == pm
        v = ref[(ref["method"] == method) & model & (ref["dataset"] == ds)]["value"]
        return float(v.iloc[0]) if len(v) else None

    def name(ds: str) -> str:
        return DATASETS.get(ds, ds)

    rows, keys = [], _rows(groups)
    for key in keys:
        kind, method, arch, pm = key
        row, lams = {"Method": ""}, set()
        for ds, (_, patches, pms) in groups.items():
            main, white, lam, masked = _ours(key, patches) if pms.get(arch) == pm else (None, None, None, None)
            lams |= {lam} - {None}
            v = paper(method, pm, ds) if pm else None  # a net of ours mapped to none of the paper's: no number
            row[f"{name(ds)} α ours"], row[f"{name(ds)} α ours, white-box"] = fmt_rate(main), fmt_rate(white)
            row[f"{name(ds)} masked %"] = fmt_masked(masked)
            if (ref["dataset"] == ds).any():
                row[f"{name(ds)} α paper"] = fmt_pct(v) or NA
                row[f"{name(ds)} Δ"] = fmt_delta(main[0], v) if main and v is not None and pm == arch else NA
        row.update({f"{name(ds)} α paper": (fmt_pct(paper(method, pm, ds)) if pm else "") or NA for ds in paper_only})
        lam = f" (λ={'/'.join(f'{x:g}' for x in sorted(lams))})" if lams else ""
        label = method_label(method) + (f"{lam} on undefended" if kind == "defense" else "")
        row["Method"] = f"{label} ({arch_label(arch, pm)})"
        rows.append(row)
    ran = {k[1] for k in keys}
    taken = {(k[1], k[3]) for k in keys if k[3]}
    for method, pm in ref[["method", "model"]].drop_duplicates().itertuples(index=False):
        pm = pm if isinstance(pm, str) else None
        if (method, pm) in taken:
            continue
        arch = PAPER_ARCHS.get(pm, pm) if pm else "architecture not stated"
        why = REPORTED_ONLY if method not in ran else ("reported in the paper, not run on this architecture" if pm else
                                                       "reported in the paper")
        row = {"Method": f"{method_label(method)} ({arch}): {why}"}
        for ds in groups:
            row.update({f"{name(ds)} α ours": NA, f"{name(ds)} α ours, white-box": NA, f"{name(ds)} masked %": NA})
            if (ref["dataset"] == ds).any():
                row.update({f"{name(ds)} α paper": fmt_pct(paper(method, pm, ds)) or NA, f"{name(ds)} Δ": NA})
        row.update({f"{name(ds)} α paper": fmt_pct(paper(method, pm, ds)) or NA for ds in paper_only})
        rows.append(row)
    table = pd.DataFrame(rows)
    # column groups: a dataset of ours the paper has not, then the paper's in its order (paper only where not run)
    order = [d for d in groups if d not in DATASETS] + [d for d in DATASETS if d in groups or d in paper_only]
    table = table[["Method"] + [c for d in order for c in table.columns if c.startswith(name(d) + " ")]]
    # a column with nothing in it (no white-box patches; no net of the paper's own) says nothing
    empty = [c for c in table.columns if c.endswith((", white-box", " Δ", " masked %")) and (table[c] == NA).all()]
    table = table.drop(columns=empty)
    table.attrs["preset"] = ctx.preset
    return table, _caption(groups, any(c.endswith(" masked %") for c in table.columns))


def _targets(dataset: str, patches) -> str:
    """The patches' targets by name (``target`` null: untargeted)."""
    try:
        names = get_dataset_info(dataset).classes
    except PatchbenchError:  # a dataset without a registry entry: indices only
        names = []
    target = patches["target"] if "target" in patches else pd.Series(None, index=patches.index, dtype=float)
    found = sorted({int(t) for t in target.dropna()})
    named = [f"{names[t]} ({t})" if t < len(names) else str(t) for t in found]
    untargeted = target.isna().any()
    return "targets " + ", ".join(named + (["untargeted"] if untargeted else [])) if named else "untargeted"


def _caption(groups: dict, masked: bool = False) -> str:
    parts = []
    for ds, (p, patches, pms) in groups.items():
        image = int(patches["image_size"].iloc[0])
        areas = ", ".join(f"{s} px ({100 * s * s / image ** 2:.1f}%)" for s in sorted(int(s) for s in patches["patch_px"].unique()))
        nets = ", ".join(arch_label(a, pms.get(a)) for a in archs_of(patches))
        parts.append(f"{DATASETS.get(ds, ds)}: preset {p}, {nets}, {int(patches['eval_n'].iloc[0])} test images, "
                     f"patches of {areas}, {_targets(ds, patches)}")
    return ("BMVC 2023 Table 2 (bottom): defense success rate α (%) against adversarial patches (one per named "
            "target, or untargeted, as the preset lists them): of the test images a model classifies correctly when "
            "clean (a targeted patch: those not of its target class), the share still correct with the patch (and the "
            "defense), pooled over targets, patch sizes and the 5 regions (Wilson 95% interval). α ours: patches trained on the undefended "
            "model f (transfer patches for each volumized g; f's own for f and for LGS / DW on f), the setting of the "
            "paper's fixed patches; white-box: patches trained on the model itself. A paper number stands in a row only "
            "where the paper reports that method on the architecture the row's net maps to ('=' the same net, '≈' a "
            "stand-in), under the same dataset; Δ = ours − paper only for the paper's own net. "
            + ("masked %: the share of the image's pixels a defense's mask covered (DW: the saliency mask it inpaints), "
               "mean over the row's images; 0: the defense changed no image. " if masked else "") +
            f"Ours: {'; '.join(parts)}. Paper: toaster / school-bus / lipstick / pineapple patches (A-ADS).")
