"""Attack registry: name -> class. One file per attack; a new attack is one file + one line here."""

from patchbench.attacks.base import Attack  # noqa: F401
from patchbench.attacks.a3 import IterStepLLA3, PGDA3, StepLLA3
from patchbench.attacks.adaptive import AdaptiveLaVAN
from patchbench.attacks.adversarial_patch import AdversarialPatch
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch, PatchAttack, Placement  # noqa: F401
from patchbench.attacks.pgd import CW, FGSM, PGD, IterStepLL, LinfAttack, StepLL  # noqa: F401

ATTACKS: dict[str, type[PatchAttack]] = {
    "lavan": LaVAN,
    "lavan-adaptive": AdaptiveLaVAN,  # white-box LaVAN through the defense (ICAART Eq. 13)
    "adversarial_patch": AdversarialPatch,
    # pixel-space L∞ attacks (TOMM 2022 Table 6) and their A3 variants (Eq. 11-13); plain Attacks
    "fgsm": FGSM,
    "pgd": PGD,
    "cw": CW,
    "stepll": StepLL,
    "iter-stepll": IterStepLL,
    "pgd+a3": PGDA3,
    "stepll+a3": StepLLA3,
    "iter-stepll+a3": IterStepLLA3,
}
