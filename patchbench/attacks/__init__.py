"""Attack registry: the class's ``name`` -> class. One file per attack; a new attack is one file +
one entry in the listing below (or :func:`register_attack` from a plugin), and a name is taken once."""

from patchbench.attacks.a3 import IterStepLLA3, PGDA3, StepLLA3
from patchbench.attacks.adaptive_lavan import AdaptiveLaVAN
from patchbench.attacks.adversarial_patch import AdversarialPatch
from patchbench.attacks.base import NO_ATTACK, Attack, check_attack_class  # noqa: F401
from patchbench.attacks.cw import CW
from patchbench.attacks.fgsm import FGSM
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.linf import LinfAttack  # noqa: F401
from patchbench.attacks.local_search import LocalSearch
from patchbench.attacks.multiple_pixels import MultiplePixels
from patchbench.attacks.npixel import NPixel
from patchbench.attacks.patch import Patch, PatchAttack, Placement  # noqa: F401
from patchbench.attacks.patch_rs import PatchRS
from patchbench.attacks.pgd import PGD
from patchbench.attacks.single_pixel import SinglePixel
from patchbench.attacks.stepll import IterStepLL, StepLL
from patchbench.errors import PatchbenchError
from patchbench.registry import Registry, own_name

ATTACKS: Registry = Registry("attack", check_attack_class, own_name).register_all([
    # patch attacks: fit(batches) -> Patch
    LaVAN,
    AdaptiveLaVAN,  # white-box LaVAN through any defense (ICAART Eq. 13)
    AdversarialPatch,
    PatchRS,  # gradient-free random search for a universal patch (Sparse-RS, Croce et al. 2022), LaVAN's queries
    # pixel-space L∞ evasion attacks and their A3 variants (TOMM 2022 Eq. 4, 11-13)
    FGSM, PGD, CW, StepLL, IterStepLL, PGDA3, StepLLA3, IterStepLLA3,
    # L0 black-box: differential evolution on N pixels (Su et al. 2019; BMVC 2023 Sec. 5)
    NPixel,
    # L0 black-box, Foolbox 2's N-pixel family (BMVC 2023 Sec. 4 ran Foolbox's): min/max pixels, local search
    SinglePixel, MultiplePixels, LocalSearch,
])
register_attack = ATTACKS.register  # an attack from outside the listing (a plugin)


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
