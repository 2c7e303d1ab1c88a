"""BMVC 2023 — "Proactive Defense Against Localized Universal Adversary Attacks" (volumization +
curriculum): Table 2 (top and bottom; the bottom spans the paper presets, a column group per
dataset), Fig. 2 (training curves per syllabus) and Fig. 3 (robustness against attack size), both
with a row of panels per architecture.

Everything BMVC-specific lives in this folder: presets, the published numbers, the
``volumization`` experiment (:mod:`.experiment`), the tables (:mod:`.tables`, :mod:`.bottom`, on
:mod:`.cells`) and the figures. The generic pieces are in their layers: the volumizer and metrics
(:mod:`patchbench.volumization`), the 3-D counterparts of 2-D nets
(:mod:`patchbench.models.volumetric`, ``model.volumize`` in a preset), the patch-aggregate loss
(``training: pal``) and the curriculum syllabus (``model.train.syllabus``), and the N-pixel attack
(:mod:`patchbench.attacks.npixel`).
"""

from __future__ import annotations

from pathlib import Path

from patchbench.api import Experiment, Figure, Paper
from patchbench.papers.bmvc2023 import experiment, figures
from patchbench.papers.bmvc2023.tables import TABLES
from patchbench.papers.bmvc2023.claims import CLAIMS


def report(preset, cells, out: Path) -> list[Path]:
    """Fig. 2 and Fig. 3 of a preset with volumization cells (a row of panels per architecture)."""
    if "method" not in cells or cells.loc[cells["preset"] == preset.name, "method"].isna().all():
        return []
    sec = preset.extra.get("volumetric")
    paper_models = dict(getattr(sec, "paper_models", None) or {})  # titles name the paper's net each stands for
    return [figures.training_curves(cells, preset.name, out / f"{preset.name}-fig2.png", paper_models),
            figures.robustness(cells, preset.name, out / f"{preset.name}-fig3.png", paper_models)]


# known deviations from the paper (``patchbench report``), as the presets and the code state them
DEVIATIONS = (
    "N-pixel: Foolbox 2's SinglePixelAttack (N = 1) and MultiplePixelsAttack (N > 1) with Foolbox's defaults, "
    "re-implemented batched in torch (the paper ran Foolbox, in TensorFlow; which Foolbox version and which "
    "attack for N > 1 it does not say). Su et al.'s differential evolution is shown beside them (paper "
    "scale 400 / 100 generations, demo 40 / 10).",
    "Fig. 2's per-epoch 1-pixel validation attack is the DE at a small budget (validation_population / "
    "validation_iterations), not Foolbox's.",
    "Patches: targeted Adversarial Patch (Brown et al., EoT over location) where the paper synthesized its toaster / "
    "school-bus / lipstick / pineapple patches with A-ADS; ImageNet uses those four classes, CIFAR-10 truck for the "
    "school bus and airplane / cat / frog (no counterparts), CIFAR-100 television / bottle / orange / bus, the demo one "
    "Fashion-MNIST target per size (T-shirt/top 8 px, Sneaker 12 px, Bag 16 px).",
    "α / β of a targeted patch: defended = still classified correctly (Sec. 3's untargeted success criterion), "
    "images of the target class left out; the paper does not say.",
    "3-D pooling with depth_pool: 3: each pooling window spans a patch and its two neighbours in the ranked volume "
    "(Eq. 9 does not give the window's depth); EfficientNet-B0 has no fixed-window pooling, so there only the "
    "3-D convolutions span patches.",
    "3-D convolutions span 3 patches in depth (depth_kernel: 3) where the paper writes 3×3×N.",
    "Table 2 (bottom): LGS's published α names no architecture, so it has its own row and is not set beside "
    "our LGS; a published number stands beside ours only for the same dataset and the architecture our net "
    "maps to (volumetric.paper_models).",
    "Optimizer, learning rate, batch size and the 1000-image evaluation subset are our choices where the "
    "paper is silent.",
    "Demo: Fashion-MNIST 32 px, small_vgg and its 3-D counterpart, MI and H syllabi only, 150 test images (the "
    "60-minute budget's; the operating points were set on 300).",
    "Demo: no single pixel costs the undefended model 30 pp at this scale (the paper's VGG lost 63 pp), so beside the "
    "paper's 1-pixel attack Foolbox's multiple-pixels attack runs at N = 128, the smallest N that does; Su et al.'s "
    "DE is left out of the demo (the 60-minute budget; the paper-scale presets run it at N = 1).",
    "Demo: DW runs at threshold 1.5 without Hayes' erosion, which removes every salient pixel of a 32 px saliency map; "
    "the mask then covers the patch hardly more than the rest of the image, so DW's row measures inpainting about "
    "half of every image rather than a patch detector.",
    "Demo: the volumized models train 3x the undefended model's image-epochs (the operating-point rule's cap).",
)


VOLUMIZATION = Experiment(
    "volumization", "undefended 2-D model and one volumetric model per syllabus × (clean, N-pixel, patches) × regions",
    experiment.check_preset, experiment.sweep_volumization)


PAPER = Paper(
    name="bmvc2023",
    title="BMVC 2023 (volumization + curriculum): Table 2 top and bottom, Fig. 2, Fig. 3",
    module=__name__,
    presets={"paper": ("bmvc2023-cifar10", "bmvc2023-cifar100", "bmvc2023-imagenet"), "demo": ("demo-bmvc-fmnist",)},
    tables=TABLES,
    claims=CLAIMS,
    figures={
        "bmvc2023-fig2": Figure("bmvc2023-fig2", "Fig. 2: training loss and 1-pixel defense success per epoch, per syllabus, "
                                "per architecture", figures.training_curves),
        "bmvc2023-fig3": Figure("bmvc2023-fig3", "Fig. 3: δ and β against N-pixel count and patch size, per model, "
                                "per architecture", figures.robustness),
    },
    sections={"volumetric": experiment.VolumetricSection},
    experiments={"volumization": VOLUMIZATION},
    report=report,
    deviations=DEVIATIONS,
)
