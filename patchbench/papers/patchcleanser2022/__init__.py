"""PatchCleanser (Xiang et al., USENIX Security 2022): a prediction certified against *any* patch
of a given size by double masking, beside the empirical defenses under our strongest attacks.

The defense is ``patchbench/defenses/patchcleanser.py``, the ``certified:`` preset section and the
``certified`` table are generic (:mod:`patchbench.sections.certified`, through :mod:`patchbench.api`). Here:
the paper-scale presets (ImageNet 224 px, ResNet-50 and ViT-B/16 through the torchvision weights
API, a 32 px patch = 2 % of the image, k = 6 masks per axis, the paper's headline setting), so that
``patchbench reproduce patchcleanser2022 --preset-scale paper`` runs them on a GPU. At demo scale
the certified table is the ICAART demo's (``demo-fmnist`` has a ``certified:`` section, ``make
demo``), so this paper has no demo preset of its own.
"""

from __future__ import annotations

from patchbench.api import (
    AdaptiveConfig, CertifiedConfig, Paper, Table, build_certified, check_adaptive, check_certified, run_adaptive_section,
    run_certified_section,
)
from patchbench.papers.patchcleanser2022.claims import CLAIMS

TABLES = {"certified": Table(
    "certified", "patchcleanser2022", "Certified baseline (PatchCleanser) beside the empirical defenses", build_certified,
    ("patchcleanser-vit_b_16", "patchcleanser-resnet50"), "demo-fmnist")}


def validate(preset) -> None:
    check_adaptive(preset)
    check_certified(preset)


def extra_steps(preset, store, device, progress: bool = True) -> None:
    """After the sweep: the adaptive attack through the empirical defenses, then the certified baseline."""
    run_adaptive_section(preset, store, device, progress)
    run_certified_section(preset, store, device, progress)


DEVIATIONS = (
    "The models are torchvision's ImageNet weights as published (ResNet-50 IMAGENET1K_V2, ViT-B/16 IMAGENET1K_V1), "
    "not fine-tuned on masked images as the paper's are: expect lower clean accuracy under masks and a lower certified "
    "accuracy than the paper's 62.1 % (ViT-B) / 53 % (ResNet-50).",
    "Certified on a seeded 5000-image subset of ImageNet val (the paper: all 50000).",
    "A majority tie in the second round goes to the smallest label (the paper leaves ties open).",
)

PAPER = Paper(
    name="patchcleanser2022",
    title="PatchCleanser (USENIX Security 2022): certified accuracy beside the empirical defenses",
    module=__name__,
    presets={"paper": ("patchcleanser-resnet50", "patchcleanser-vit_b_16"), "demo": ()},  # demo: the ICAART demo's certified table
    tables=TABLES,
    claims=CLAIMS,
    sections={"adaptive": AdaptiveConfig, "certified": CertifiedConfig},
    validate=validate,
    extra_steps=extra_steps,
    deviations=DEVIATIONS,
)
