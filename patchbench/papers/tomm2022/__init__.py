"""TOMM 2022 — "Attention-based adversarial defense" (AAD): Table 6 (RAW / Madry / Madry+AAD / ALP /
ALP+AAD against FGSM, PGD-k, CW-k) and Table 7 (attention-augmented attacks, A3).

Everything TOMM-specific lives in this folder: presets, the published numbers and the table
builders. The training objectives (Madry, ALP, +AAD) and attacks (FGSM, PGD, CW, StepLL, A3) are
generic and live in their registries; the presets are ``evasion`` experiments.
"""

from __future__ import annotations

from patchbench.api import Paper
from patchbench.papers.tomm2022.tables import TABLES

PAPER = Paper(
    name="tomm2022",
    title="TOMM 2022 (AAD): Table 6 (five trainings x ten attacks), Table 7 (A3 attacks)",
    module=__name__,
    presets={"paper": ("tomm2022-mnist", "tomm2022-cifar10", "tomm2022-imagenet"),
             "demo": ("demo-tomm-fmnist",)},
    tables=TABLES,
)
