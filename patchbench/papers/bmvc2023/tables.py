"""BMVC 2023 Table 2: (top) clean and N-pixel-attacked accuracy, undefended vs volumized models;
(bottom) defense success rate α against adversarial patches ≥ 5 % of the image.

Definitions (Sec. 5, stated in the captions):

* Acc_attack of an attack: the accuracy averaged over the protocol's regions (the 4 quadrants and
  the centre, "the average of the five attacked classifications"); its interval is the Wilson
  95 % interval of the pooled counts (the regions share the images, so it is a little narrow).
* δ = Acc_attack − Acc_clean.
* α (and Fig. 3's β): "percentage of successfully defended attacks" — of the images the model
  classifies correctly when clean (without any defense), the share still classified correctly
  under the attack (and the defense, for LGS / DW), pooled over regions and patch sizes.

Layout, as the paper's (the bottom half: :mod:`.bottom`). A published number stands beside ours
only for the architecture the paper reports it on: our net maps to the paper's through the
preset's ``volumetric.paper_models`` (``small_vgg: vgg16``); labels read ``arch = paper's X``
(the same net) or ``arch ≈ paper's X`` (a stand-in). Published numbers no row of ours matches
keep their own columns (top) or rows (bottom), so the paper's table is always complete.

Top: one column group per architecture of ours: Acc_clean, then one Acc_attack column per N-pixel
attack name in the cells (the cells' ``attack``), at its smallest N — the paper's attack,
Foolbox's ``single_pixel``, first when present, then Su et al.'s DE ``npixel``, then any other
(``local_search`` ...) — each of Acc_clean and the first Acc_attack followed by the paper's column
of the architecture our net maps to; the paper's architectures no net of ours maps to follow. The
paper's top half is CIFAR-10 only, which the caption states beside our dataset; the caption also
says the paper ran Foolbox's N-pixel attacks. Rows the paper reports for methods patchbench does
not run (PSD, Liu et al.) keep their published numbers and are marked "reported in the paper,
not run".
"""

from __future__ import annotations

import pandas as pd

from patchbench.api import PatchbenchError, Table, TableContext, fmt_pct
from patchbench.papers.bmvc2023.bottom import build_bottom
from patchbench.papers.bmvc2023.cells import (
    ATTACK_NAMES, NA, PAPER_ARCHS, PAPER_ATTACK, REFERENCE, REPORTED_ONLY, TOP_ARCHS, arch_label, archs_of, attack_title,
    fmt_rate, method_label, paper_models, pixel_attacks, pixel_cells, pooled, volumization_cells,
)


def build_top(t: Table, cells: pd.DataFrame, ctx: TableContext) -> tuple[pd.DataFrame, str]:
    """Rows: undefended, each volumized syllabus, then the paper's reported-only methods; columns per
    architecture: Acc_clean and Acc_attack per N-pixel attack (its smallest N) ours, each beside the
    paper's column of the architecture it maps to; then the paper's architectures none of ours maps
    to (CIFAR-10)."""
    preset = ctx.preset
    df = volumization_cells(cells, preset)
    df = df[df["defense"] == "none"]
    ref = ctx.reference(REFERENCE)
    ref = ref[ref["table"] == "2-top"]
    att = pixel_cells(df)
    if att.empty:
        raise PatchbenchError(f"preset {preset!r} has no N-pixel cells (Table 2 top)")
    attacks = pixel_attacks(att)
    archs, pms = archs_of(df), paper_models(ctx, preset)
    shown = {a: pms.get(a) if pms.get(a) in TOP_ARCHS else None for a in archs}
    shared = {pm for pm in shown.values() if pm and list(shown.values()).count(pm) > 1}

    def paper(method: str, pm: str, metric: str) -> str:
        v = ref[(ref["method"] == method) & (ref["model"] == pm) & (ref["metric"] == metric)]["value"]
        return fmt_pct(float(v.iloc[0])) if len(v) else NA

    def pcol(col: str, pm: str, arch: str = "") -> str:  # two of our nets standing for one of the paper's: one column each
        return f"{col} paper ({PAPER_ARCHS[pm]})" + (f" [{arch}]" if pm in shared else "")

    def row_of(method: str, label: str) -> dict:
        row = {"Method": label}
        for arch in archs:
            pm, tag = shown[arch], arch_label(arch, pms.get(arch))
            sub = df[(df["method"] == method) & (df["model"] == arch)]
            row[f"Acc_clean ours ({tag})"] = fmt_rate(pooled(sub[sub["condition"] == "clean"], "correct", "n"))
            if pm:
                row[pcol("Acc_clean", pm, arch)] = paper(method, pm, "acc_clean_pct")
            for i, (a, n) in enumerate(attacks):
                at = att[(att["method"] == method) & (att["model"] == arch) & (att["attack"] == a)]
                at = at if n is None else at[at["pixels"] == n]
                row[f"Acc_attack ({attack_title(a, n)}) ours ({tag})"] = fmt_rate(pooled(at, "correct", "n"))
                if i == 0 and pm:  # beside the paper's attack when we ran it (first), else beside ours
                    row[pcol("Acc_attack", pm, arch)] = paper(method, pm, "acc_attack_pct")
        for pm in (p for p in TOP_ARCHS if p not in shown.values()):
            row[pcol("Acc_clean", pm)] = paper(method, pm, "acc_clean_pct")
            row[pcol("Acc_attack", pm)] = paper(method, pm, "acc_attack_pct")
        return row

    methods = ["undefended"] + sorted(m for m in df["method"].dropna().unique() if m != "undefended")
    rows = [row_of(m, method_label(m)) for m in methods]
    rows += [row_of(m, f"{method_label(m)}: {REPORTED_ONLY}") for m in ("psd", "liu2020")]
    dataset = df["dataset"].iloc[0]
    ran = "; ".join(attack_title(a, n) for a, n in attacks)
    foolbox = (f"ours: {ATTACK_NAMES[PAPER_ATTACK]} ({PAPER_ATTACK}), the paper's attack, first" if attacks[0][0] == PAPER_ATTACK
               else f"ours: {attack_title(*attacks[0])}, a different attack, beside the paper's Acc_attack")
    same = dataset == "cifar10" and all(pms.get(a) == a for a in archs)
    caption = (f"BMVC 2023 Table 2 (top): top-1 accuracy (%) clean and under N-pixel attacks ({ran}; untargeted, the "
               "smallest N of each, averaged over the 4 quadrants and the centre; Wilson 95% interval of the pooled counts). "
               f"Ours: {dataset} / {', '.join(arch_label(a, pms.get(a)) for a in archs)}, {int(df['eval_n'].iloc[0])} test "
               f"images (preset {preset}); paper: CIFAR-10, every test image, Foolbox's N-pixel attacks ({foolbox}). A paper "
               "column stands beside ours only for the architecture it reports ('=' the same net, '≈' a stand-in); the "
               "paper's other architectures follow ours. "
               + ("Same dataset and nets, a different test subset." if same else
                  "A different dataset or model: compare trends, not values."))
    table = pd.DataFrame(rows)
    table.attrs["preset"] = preset
    return table, caption


TABLES = {
    "bmvc2023-2-top": Table("bmvc2023-2-top", "bmvc2023", "Table 2 (top): clean and 1-pixel accuracy, undefended vs volumized",
                            build_top, ("bmvc2023-cifar10",), "demo-bmvc-fmnist"),
    "bmvc2023-2-bottom": Table("bmvc2023-2-bottom", "bmvc2023", "Table 2 (bottom): defense success rate α against patches ≥ 5%",
                               build_bottom, ("bmvc2023-cifar10", "bmvc2023-cifar100", "bmvc2023-imagenet"), "demo-bmvc-fmnist"),
}
