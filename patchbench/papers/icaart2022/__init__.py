"""ICAART 2022 — "Enhanced Local Gradient Smoothing: Approaches to Attacked-region Identification
and Defense" (SLGS / WLGS): Tables 1-4, the SSIM comparison, Fig. 5 (accuracy vs λ) and Fig. 10
(white-box adaptive LaVAN through the defense).

Everything ICAART-specific lives in this folder: presets (``presets/``), the published numbers
(``reference/``), the table builders (:mod:`.tables`) and the figures (:mod:`.figures`). The
defenses (LGS, SLGS, WLGS), the attacks (LaVAN, Adversarial Patch) and the adaptive attack's
``adaptive:`` preset section and run (Fig. 10) are generic: registries and :mod:`patchbench.api`.

Fig. 10 at demo scale, earlier defaults (``demo-fmnist``: small_vgg 91 % clean, LaVAN 10 px,
target 0, λ=2.3, 200 steps, ``record_every=25``; success on the 2000-image eval set, non-target
images, at steps 0/25/50/.../200):

* none (plain LaVAN): .01 .56 .59 .58 .59 .58 .59 .58 .58
* LGS:  .04 .15 .20 .27 .33 .32 .34 .33 .34  (plain LaVAN's final patch through LGS: .02)
* SLGS: .01 .11 .27 .25 .28 .23 .24 .18 .25  (plain: .16)
* WLGS: .01 .31 .40 .40 .40 .40 .41 .41 .41  (plain: .29; ``saliency_grad="constant"``: .41)

With the current demo (2-epoch small_vgg, 100 steps, ``record_every=20``, 1000 images) the
success at step 100 is LGS .29, SLGS .15, WLGS .24 (``results/demo/demo-fmnist-adaptive.md``),
so at this scale the adaptive attack does get through all three (unlike Fig. 10).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from patchbench.api import (
    AdaptiveConfig, CertifiedConfig, Figure, OptimalityConfig, Paper, atomic_write, audit_legend, audit_mark, check, check_adaptive,
    check_certified, check_optimality, is_number, load_claims, machine_note, run_adaptive_section, run_certified_section,
    run_optimality_section, spread_note,
)
from patchbench.papers.icaart2022 import figures
from patchbench.papers.icaart2022.tables import TABLES, SanityConfig


def validate(preset) -> None:
    """The ICAART sections: ``adaptive`` (Fig. 10), ``certified`` (the PatchCleanser baseline beside
    the defenses), ``patch-optimality`` (how strong each attack is) and ``sanity`` (table footnotes)."""
    check_adaptive(preset)
    check_certified(preset)
    check_optimality(preset)
    sanity = preset.extra.get("sanity")
    if sanity is not None:
        check(is_number(sanity.min_success) and 0 <= sanity.min_success <= 1,
              f"sanity.min_success must be a fraction in [0, 1], got {sanity.min_success!r}")
        check(isinstance(sanity.monotone, bool), f"sanity.monotone must be true or false, got {sanity.monotone!r}")


def extra_steps(preset, store, device, progress: bool = True) -> None:
    """After the sweep: the adaptive attack (Fig. 10), then the certified baseline (its adaptive
    attack reuses the cached model and patches), then every attack's optimality (reusing all of it)."""
    run_adaptive_section(preset, store, device, progress)
    run_certified_section(preset, store, device, progress)
    run_optimality_section(preset, store, device, progress)


def report(preset, cells, out: Path) -> list[Path]:
    """Fig. 5 for a preset with LGS-family cells; Fig. 10 (PNG + markdown) for one with an
    adaptive section."""
    paths = []
    have = set(cells.loc[cells["preset"] == preset.name, "defense"].dropna())
    if have & set(figures.CURVE_DEFENSES):
        paths.append(figures.lambda_curve(cells, preset.name, out / f"{preset.name}-lambda-curve.png"))
    ad = preset.extra.get("adaptive")
    if ad is not None and ad.defenses:
        paths.append(figures.adaptive_curve(cells, preset.name, out / f"{preset.name}-adaptive.png"))
        table = figures.adaptive_table(cells, preset.name).to_markdown(index=False, floatfmt=".1f") + "\n"
        notes = adaptive_audit(cells, preset.name) + [machine_note(cells[cells["preset"] == preset.name]),
                                                      spread_note(PAPER, preset.name)]
        table += "".join(f"\n_{note}_\n" for note in notes)
        paths.append(atomic_write(out / f"{preset.name}-adaptive.md", table))
    return paths


def adaptive_audit(cells, preset: str) -> list[str]:
    """The audit's verdict on the adaptive attacks' returned patches (their last step), per column."""
    df = cells[(cells["preset"] == preset) & (cells["attack"] == "lavan-adaptive")]
    df = df[df["defense"] == df["attack_through"]]
    last = df[df["attack_step"] == df.groupby(["attack_through", "lam", "patch_px"], dropna=False)["attack_step"].transform("max")]
    marks = [f"† {r.attack_through.upper()}{'' if pd.isna(r.lam) else f' λ={r.lam:g}'} ({int(r.patch_px)}px), "
             f"step {int(r.attack_step)}:{audit_mark(last.loc[[i]])[2:]}"
             for i, r in zip(last.index, last.itertuples()) if audit_mark(last.loc[[i]])]
    return marks + audit_legend(last, preset)


# known deviations from the paper (``patchbench report``), as the presets state them
DEVIATIONS = (
    "Demo: Fashion-MNIST 64 px with small_vgg / mini_inception in the place of ImageNet 400 px with VGG16 / "
    "Inception-v3; patch sizes and LGS window scaled.",
    "Demo: SLGS uses 1 erosion (paper: 2) before its 3 dilations; at 64 px two erosions empty the saliency mask.",
    "Demo: Adversarial Patch trained with EoT over location only (paper: location, rotation, scale).",
    "Paper scale: the EoT rotation (±22.5°) and scale (0.8-1.2) distributions are our choice; the paper gives none.",
    "Demo: patches trained with Adam at a constant lr 0.05, seeds 0-2 (paper: SGD with momentum, lr 1 -> 0.1 -> 0.01).",
    "LaVAN's target class is not stated in the paper; ours is class 0.",
)


PAPER = Paper(
    name="icaart2022",
    title="ICAART 2022 (SLGS / WLGS): Tables 1-4, SSIM, Fig. 5, Fig. 10",
    module=__name__,
    presets={"paper": ("icaart2022-vgg16", "icaart2022-inception_v3"),
             "demo": ("demo-fmnist", "demo-fmnist-inception")},
    tables=TABLES,
    claims=load_claims(Path(__file__).with_name("claims.yaml")),  # the headline claims, as data
    figures={
        "lambda-curve": Figure("lambda-curve", "Fig. 5: top-1 accuracy vs λ (clean, attacked, average) for LGS / SLGS / WLGS "
                               "(params: attack, patch_px)", figures.lambda_curve),
        "adaptive": Figure("adaptive", "Fig. 10: success of the white-box adaptive LaVAN vs training step, per defense",
                           figures.adaptive_curve),
    },
    sections={"adaptive": AdaptiveConfig, "sanity": SanityConfig, "certified": CertifiedConfig,
              "patch-optimality": OptimalityConfig},
    validate=validate,
    extra_steps=extra_steps,
    report=report,
    deviations=DEVIATIONS,
)
