"""ICAART 2022 — "Enhanced Local Gradient Smoothing: Approaches to Attacked-region Identification
and Defense" (SLGS / WLGS): Tables 1-4, the SSIM comparison, Fig. 5 (accuracy vs λ) and Fig. 10
(white-box adaptive LaVAN through the defense).

Everything ICAART-specific lives in this folder: presets (``presets/``), the published numbers
(``reference/``), the table builders (:mod:`.tables`), the figures (:mod:`.figures`) and the
adaptive attack's preset section and run (:mod:`.adaptive`). The defenses (LGS, SLGS, WLGS) and
attacks (LaVAN, Adversarial Patch) are generic and live in the registries.
"""

from __future__ import annotations

from pathlib import Path

from patchbench.api import Figure, Paper, atomic_write, check, is_number
from patchbench.papers.icaart2022 import adaptive, figures
from patchbench.papers.icaart2022.tables import TABLES, SanityConfig


def validate(preset) -> None:
    """The ICAART sections: ``adaptive`` (Fig. 10) and ``sanity`` (table footnotes)."""
    adaptive.check_section(preset)
    sanity = preset.extra.get("sanity")
    if sanity is not None:
        check(is_number(sanity.min_success) and 0 <= sanity.min_success <= 1,
              f"sanity.min_success must be a fraction in [0, 1], got {sanity.min_success!r}")
        check(isinstance(sanity.monotone, bool), f"sanity.monotone must be true or false, got {sanity.monotone!r}")


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
        paths.append(atomic_write(out / f"{preset.name}-adaptive.md", table))
    return paths


PAPER = Paper(
    name="icaart2022",
    title="ICAART 2022 (SLGS / WLGS): Tables 1-4, SSIM, Fig. 5, Fig. 10",
    module=__name__,
    presets={"paper": ("icaart2022-vgg16", "icaart2022-inception_v3"),
             "demo": ("demo-fmnist", "demo-fmnist-inception")},
    tables=TABLES,
    figures={
        "lambda-curve": Figure("lambda-curve", "Fig. 5: top-1 accuracy vs λ (clean, attacked, average) for LGS / SLGS / WLGS "
                               "(params: attack, patch_px)", figures.lambda_curve),
        "adaptive": Figure("adaptive", "Fig. 10: success of the white-box adaptive LaVAN vs training step, per defense",
                           figures.adaptive_curve),
    },
    sections={"adaptive": adaptive.AdaptiveConfig, "sanity": SanityConfig},
    validate=validate,
    extra_steps=adaptive.run_section,
    report=report,
)
