"""AdvML 2019 — "Localized Adversarial Training for Increased Accuracy and Robustness in Image
Classification" (LAT): Fig. 2 (losses of natural, standard and background models under natural
inputs and the standard / background PGD).

Everything AdvML-specific lives in this folder: presets, the published numbers and the Fig. 2
table. The generic pieces are in their layers: localized PGD (``region`` of
:class:`patchbench.attacks.pgd.PGD`, Algorithm 1 lines 5-9), the ``lat`` training objective
(Algorithm 1) and the per-cell loss. The presets are ``evasion`` experiments.
"""

from __future__ import annotations

from patchbench.api import Paper
from patchbench.papers.advml2019.tables import TABLES

PAPER = Paper(
    name="advml2019",
    title="AdvML 2019 (localized adversarial training): Fig. 2",
    module=__name__,
    presets={"paper": ("advml2019-mnist", "advml2019-cifar10"), "demo": ("demo-advml-fmnist",)},
    tables=TABLES,
)
