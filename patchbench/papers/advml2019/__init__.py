"""AdvML 2019 — "Localized Adversarial Training for Increased Accuracy and Robustness in Image
Classification" (LAT): Fig. 2 (losses of natural, standard and background models under natural
inputs and the standard / background PGD).

Everything AdvML-specific lives in this folder: presets, the published numbers and the Fig. 2
table. The generic pieces are in their layers: localized PGD (``region`` of
:class:`patchbench.attacks.pgd.PGD`, Algorithm 1 lines 5-9), the ``lat`` training objective
(Algorithm 1) and the per-cell loss. The presets are ``evasion`` experiments.
"""

from __future__ import annotations

from pathlib import Path

from patchbench.api import Paper, load_claims
from patchbench.papers.advml2019.tables import TABLES

# known deviations from the paper (``patchbench report``), as the presets and the code state them
DEVIATIONS = (
    "Paper-scale presets: the background attack and LAT keep a centred box of half the image side; the paper's "
    "'middle pixels unaltered' gives no size.",
    "Demo: the background is the black background around the object (region mask, pixels at most 0.1), for LAT "
    "and the background attack alike; a centred box would leave a third of the attacked pixels on Fashion-MNIST's "
    "larger objects.",
    "Localized PGD projects onto a per-pixel ε (ε on allowed pixels, 0 on kept ones) at the random start "
    "and every step; Algorithm 1 read literally (lines 5-9) runs a whole PGD attack and then clips once to "
    "x ± epmatrix, a weaker attack whose last steps are partly thrown away. Projecting every step is the "
    "usual reading of a constrained PGD and the stronger one.",
    "Batch 50, Adam 1e-4 and the PGD step (MNIST 0.01, CIFAR-10 2/255) are our choices where the paper is "
    "silent.",
    "Demo: Fashion-MNIST, ε = 0.1, 4 epochs (the stopping rule) on 5000 images (the budget's third of the "
    "rule's 15000), 5-step training PGD, 20-step attacks (paper: ε = 0.3, 100,000 steps, 100-step PGD).",
)

PAPER = Paper(
    name="advml2019",
    title="AdvML 2019 (localized adversarial training): Fig. 2",
    module=__name__,
    presets={"paper": ("advml2019-mnist", "advml2019-cifar10"), "demo": ("demo-advml-fmnist",)},
    tables=TABLES,
    claims=load_claims(Path(__file__).with_name("claims.yaml")),  # the headline claims, as data
    deviations=DEVIATIONS,
)
