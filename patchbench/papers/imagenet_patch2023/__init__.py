"""ImageNet-Patch (Pintor, Angioni, Sotgiu, Demetrio, Demontis, Biggio, Roli; Pattern Recognition 134,
2023; ``pralab/ImageNet-Patch``): ten universal, targeted 50 px patches for 224 px ImageNet images,
applied with a random rotation (±45°), translation (±0.2) and scale (0.5-1) per image — the field's
shared patch set, here against every patchbench defense (it has no defended columns of its own).

Everything ImageNet-Patch-specific lives in this folder: the ``imagenet-patch-transfer`` experiment
and its ``imagenet_patch:`` section (:mod:`.experiment`), its tables (:mod:`.tables`), the paper-scale
preset and the repository's published numbers. The generic pieces are in their layers: the reader
that unpickles the published file without running code (``patchbench/data/imagenet_patch.py``) and
the published placement (``patchbench/attacks/affine_placement.py``).
"""

from __future__ import annotations

from patchbench.api import IMAGENET_PATCH_URL, Experiment, Paper, Preset, imagenet_patch_candidates
from patchbench.papers.imagenet_patch2023.experiment import (
    ImageNetPatchSection, architectures, check_section, for_arch, section, sweep_transfer,
)
from patchbench.papers.imagenet_patch2023.tables import TABLES


def variants(preset: Preset) -> list[Preset]:
    """What the preflight checks: the preset once per model (each torchvision weight file)."""
    return [for_arch(preset, arch) for arch in architectures(preset)]


def requires(preset: Preset) -> list[tuple[str, str, str]]:
    """The published patch file, beside the models and the dataset the preflight checks itself."""
    places = imagenet_patch_candidates(section(preset).file)
    if any(p.is_file() for p in places):
        return []
    return [("ImageNet-Patch file", f"imagenet_patch.gz is not in {', '.join(map(str, places))}",
             f"download {IMAGENET_PATCH_URL} to {places[-1]} (or set $PATCHBENCH_IMAGENET_PATCH, "
             "or --set imagenet_patch.file=PATH)")]


DEVIATIONS = (
    "The paper's per-model numbers (its tables over 127 models) are not shipped: the reference CSV holds the one result "
    "the ImageNet-Patch repository prints (AlexNet, patch 1, its 50 sample images, scale 0.7-1), in another setting "
    "than the preset's, so no Δ is computed.",
    "Images: ImageNet val resized to 224×224 (patchbench's ImageNet reader); the repository's preprocessing is Resize(256) "
    "then CenterCrop(224).",
    "Each image draws its own transform from (seed, image index); the repository's README draws one per image from torch's "
    "global generator, its example and notebook one per batch.",
    "Success rate on the images whose class is not the target (patchbench's attack_success_rate); the repository's "
    "notebook divides by all images.",
)

PAPER = Paper(
    name="imagenet_patch2023",
    title="ImageNet-Patch (Pattern Recognition 2023): the published patches against every defense",
    module=__name__,
    presets={"paper": ("imagenet-patch-transfer",), "demo": ()},  # the patches are ImageNet's: no Fashion-MNIST demo
    tables=TABLES,
    sections={"imagenet_patch": ImageNetPatchSection},
    experiments={"imagenet-patch-transfer": Experiment(
        "imagenet-patch-transfer", "ImageNet-Patch's published patches (random affine placement) × torchvision models × "
        "defenses", check_section, sweep_transfer)},
    validate=check_section,
    deviations=DEVIATIONS,
    variants=variants,
    requires=requires,
)
