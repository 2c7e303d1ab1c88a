"""TOMM 2022's headline claims (Table 6, Sec. 5.3; Table 7, Sec. 5.6) over the evasion presets' cells. Two
trainings are compared on the same evaluation images (paired by image: different models, the same images);
the attack columns are read from the preset (its longest PGD-k / CW-k), so the claims follow its steps. The
demo stands in for MNIST (Fashion-MNIST, LeNet), so the paper's numbers quoted are MNIST's.
"""

from __future__ import annotations

from patchbench.api import Cells, Claim, longest_evasion, shortest_evasion

TABLE6 = {"demo": "demo-tomm-fmnist", "paper": "tomm2022-mnist"}
LONGEST_PGD, LONGEST_CW = longest_evasion("pgd"), longest_evasion("cw")
NAMES = {"raw": "RAW", "madry": "Madry", "madry+aad": "Madry+AAD", "alp": "ALP", "alp+aad": "ALP+AAD"}


def under(training: str, column, what: str) -> Cells:
    return Cells(f"{NAMES[training]}, {what}", {"training": training, "condition": "attacked", "attack_label": column})


def clean(training: str) -> Cells:
    return Cells(f"{NAMES[training]}, clean", {"training": training, "condition": "clean"})


def keeps_more(claim_id: str, statement: str, source: str, paper_numbers: str, better: str, worse: str, column,
               what: str) -> Claim:
    """Table 6's comparison of two trainings: ``better`` keeps more accuracy than ``worse`` under the same attack
    column, on the same images."""
    return Claim(claim_id, statement, source, paper_numbers, under(better, column, what), under(worse, column, what), TABLE6)


CLAIMS = (
    keeps_more("madry-beats-raw-pgd",
               "Madry adversarial training keeps more accuracy than the raw model under the longest PGD",
               "Table 6", "MNIST, PGD-100: Madry 92.49 % vs RAW 0.53 %", "madry", "raw", LONGEST_PGD, "longest PGD"),
    keeps_more("aad-beats-madry-cw",
               "Madry+AAD keeps more accuracy than Madry under the longest CW-k",
               "Table 6; Sec. 5.3", "MNIST, CW-100: Madry+AAD 89.77 % vs Madry 85.17 % (CIFAR-10: 39.64 vs 35.79 %)",
               "madry+aad", "madry", LONGEST_CW, "longest CW"),
    keeps_more("aad-beats-madry-pgd",
               "Madry+AAD keeps more accuracy than Madry under the longest PGD (\"1 % better than Madry's method under "
               "multiple attacks\")",
               "Table 6; Sec. 5.3", "MNIST, PGD-100: Madry+AAD 93.02 % vs Madry 92.49 % (CIFAR-10: 48.49 vs 44.72 %)",
               "madry+aad", "madry", LONGEST_PGD, "longest PGD"),
    keeps_more("aad-beats-alp-cw",
               "ALP+AAD keeps more accuracy than ALP under the longest CW-k (\"slightly better\")",
               "Table 6; Sec. 5.3", "MNIST, CW-100: ALP+AAD 92.72 % vs ALP 92.39 % (CIFAR-10: 42.34 vs 40.00 %)",
               "alp+aad", "alp", LONGEST_CW, "longest CW"),
    Claim("aad-keeps-clean",
          "Madry+AAD's clean accuracy is not below Madry's by more than 1 pp",
          "Table 6", "MNIST clean: Madry+AAD 99.20 % vs Madry 99.00 % (CIFAR-10: 83.62 vs 83.36 %)",
          clean("madry+aad"), clean("madry"), TABLE6, margin=0.01),
    Claim("longer-pgd-stronger",
          "The longest PGD leaves Madry less accuracy than the shortest PGD (more iterations, a stronger attack)",
          "Table 6", "MNIST, Madry: PGD-100 92.49 % vs PGD-10 95.69 %; CW-100 85.17 % vs CW-10 95.69 %",
          under("madry", LONGEST_PGD, "longest PGD"), under("madry", shortest_evasion("pgd"), "shortest PGD"), TABLE6,
          direction="less"),
    Claim("a3-strengthens-pgd",
          "Adding the attention term (A3) to PGD leaves the raw ResNet-50 less accuracy than PGD alone",
          "Table 7; Sec. 5.6", "ImageNet I_att, ε 4/255, 3 iterations: PGD+A3 10.8 % vs PGD 13.6 % (Iter-StepLL+A3 3.3 vs 3.8 %)",
          under("raw", "T7 PGD+A3", "PGD+A3"), under("raw", "T7 PGD", "PGD"), {"paper": "tomm2022-imagenet"},
          direction="less"),
)
