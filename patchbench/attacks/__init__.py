"""Attack registry: name -> class. One file per attack; a new attack is one file + one line here."""

from patchbench.attacks.base import Attack  # noqa: F401
from patchbench.attacks.adversarial_patch import AdversarialPatch
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch, PatchAttack, Placement  # noqa: F401

ATTACKS: dict[str, type[PatchAttack]] = {
    "lavan": LaVAN,
    "adversarial_patch": AdversarialPatch,
}
