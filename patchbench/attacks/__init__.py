"""Attack registry: the class's ``name`` -> class. One file per attack, its class registered where it is
defined (``@register_attack`` above it, timm's pattern; a name is taken once), and one import below,
which sets the listing's order (``patchbench list attacks``). A plugin outside the package declares its
classes instead (``ATTACKS = [...]``; :mod:`patchbench.plugins` registers them the same way)."""

from patchbench.attacks.base import ATTACKS, NO_ATTACK, Attack, check_attack_class, register_attack  # noqa: F401
from patchbench.attacks.linf import LinfAttack  # noqa: F401
from patchbench.attacks.patch import Patch, PatchAttack, Placement  # noqa: F401
from patchbench.errors import PatchbenchError

# the listing, in order (each module registers its classes when imported)
# patch attacks: fit(batches) -> Patch
from patchbench.attacks.lavan import LaVAN  # noqa: F401
# white-box LaVAN through any defense (ICAART Eq. 13)
from patchbench.attacks.adaptive_lavan import AdaptiveLaVAN  # noqa: F401
from patchbench.attacks.adversarial_patch import AdversarialPatch  # noqa: F401
# gradient-free random search for a universal patch (Sparse-RS, Croce et al. 2022), LaVAN's queries
from patchbench.attacks.patch_rs import PatchRS  # noqa: F401
# pixel-space L∞ evasion attacks and their A3 variants (TOMM 2022 Eq. 4, 11-13)
from patchbench.attacks.fgsm import FGSM  # noqa: F401
from patchbench.attacks.pgd import PGD  # noqa: F401
from patchbench.attacks.cw import CW  # noqa: F401
from patchbench.attacks.stepll import IterStepLL, StepLL  # noqa: F401
from patchbench.attacks.a3 import IterStepLLA3, PGDA3, StepLLA3  # noqa: F401
# L0 black-box: differential evolution on N pixels (Su et al. 2019; BMVC 2023 Sec. 5)
from patchbench.attacks.npixel import NPixel  # noqa: F401
# L0 black-box, Foolbox 2's N-pixel family (BMVC 2023 Sec. 4 ran Foolbox's): min/max pixels, local search
from patchbench.attacks.single_pixel import SinglePixel  # noqa: F401
from patchbench.attacks.multiple_pixels import MultiplePixels  # noqa: F401
from patchbench.attacks.local_search import LocalSearch  # noqa: F401


def attack_class(name: str, patch: bool) -> type[Attack]:
    """The registered patch attack (``patch=True``) or evasion attack named ``name``."""
    names = [n for n, c in ATTACKS.items() if issubclass(c, PatchAttack) == patch]
    if name not in names:
        kind = "patch attack" if patch else "evasion attack"
        raise PatchbenchError(f"unknown {kind} {name!r}; known: {', '.join(names)}")
    return ATTACKS[name]


def evasion_label(cfg) -> str:
    """The table column of an :class:`~patchbench.config.EvasionConfig`: its ``column``, else its attack's
    :meth:`~patchbench.attacks.base.Attack.column_label` at its steps (``PGD10``, ``CW100``, ``FGSM``)."""
    if cfg.column:
        return cfg.column
    cls = ATTACKS.get(cfg.name)
    return cfg.name if cls is None else cls.column_label(cfg.steps)
