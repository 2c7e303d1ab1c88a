"""AdvML 2019's headline claims (Fig. 2 and Sec. 5.1) over the LAT presets' cells: the three models' per-image
cross-entropy on the same evaluation images (natural, under the standard PGD, under the background PGD),
paired by image. The paper states its results as losses (Fig. 2; scaled ×1000 on natural MNIST inputs), so the
claims compare losses; the numbers quoted are MNIST's (the demo's Fashion-MNIST stands in for it).
"""

from __future__ import annotations

from patchbench.api import Cells, Claim

FIG2 = {"demo": "demo-advml-fmnist", "paper": "advml2019-mnist"}
NAMES = {"raw": "natural model", "madry": "standard model", "lat": "background (LAT) model"}
INPUTS = {None: "natural inputs", "Standard attack": "standard PGD", "Background attack": "background PGD"}

# Controlled experiment for the claim that does not hold at demo scale (docs/operating-points/tomm-advml-bmvc.md)
NATURAL_LOSS = ("not budget: at the rule's length (4 epochs on 15000 images, 3x the budget's) the LAT model's loss on "
                "natural inputs is +14.0 % above the natural model's (budget point: +7.9 %; paper, MNIST: -4.35 %, "
                "CIFAR-10: -1.63 %). LAT perturbs Fashion-MNIST's black background, 54 % of the pixels; whether the "
                "paper's small gain is MNIST's (its background carries no signal) or absent is open: MNIST is not "
                "on this machine")


def loss(training: str, column: str | None = None) -> Cells:
    where = {"training": training, "condition": "clean"} if column is None else \
        {"training": training, "condition": "attacked", "attack_label": column}
    return Cells(f"{NAMES[training]}, {INPUTS[column]}", where, metric="loss")


CLAIMS = (
    Claim("lat-lower-natural-loss",
          "On natural inputs the background (LAT) model has a lower loss than the natural model",
          "Fig. 2; Sec. 5.1", "MNIST: 39.6 vs 41.4 (×10⁻³), −4.35 % (CIFAR-10: 21.09 vs 21.44 ×10⁻², −1.63 %)",
          loss("lat"), loss("raw"), FIG2, direction="less", explained={"demo": NATURAL_LOSS}),
    Claim("lat-lower-standard-attack-loss",
          "Under the standard PGD the background (LAT) model has a lower loss than the natural model",
          "Fig. 2; Sec. 5.1", "MNIST: 0.55 vs 68.19, \"at least 99 %\" lower (CIFAR-10: 45.37 vs 54.0, −15.98 %)",
          loss("lat", "Standard attack"), loss("raw", "Standard attack"), FIG2, direction="less"),
    Claim("lat-lower-background-attack-loss",
          "Under the background PGD the background (LAT) model has a lower loss than the natural model",
          "Fig. 2; Sec. 5.1", "MNIST: 0.23 vs 61.8 (CIFAR-10: 0.23 vs 2.96)",
          loss("lat", "Background attack"), loss("raw", "Background attack"), FIG2, direction="less"),
    Claim("standard-training-costs-natural-loss",
          "Standard adversarial training raises the loss on natural inputs above the natural model's (the trade-off)",
          "Fig. 2; Sec. 5.1", "MNIST: 57.9 vs 41.4 (×10⁻³), +39.9 % (CIFAR-10: 40.49 vs 21.44 ×10⁻², +88.9 %)",
          loss("madry"), loss("raw"), FIG2, direction="greater"),
    Claim("lat-lower-natural-loss-than-standard",
          "On natural inputs the background (LAT) model has a lower loss than the standard adversarially trained model",
          "Fig. 2; Sec. 4-5", "MNIST: 39.6 vs 57.9 (×10⁻³) (CIFAR-10: 21.09 vs 40.49 ×10⁻²)",
          loss("lat"), loss("madry"), FIG2, direction="less"),
)
