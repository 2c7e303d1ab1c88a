"""Defense registry: name -> class. One file per defense; a new defense is one file plus one entry
in the listing below (its name is the class's ``name``; see :mod:`patchbench.defenses.base`), or,
from a plugin outside the package, :func:`register_defense` (:mod:`patchbench.plugins` calls it)."""

from patchbench.defenses.base import (  # noqa: F401
    GRADIENTS, UNDEFENDED, Defense, NoDefense, check_defense_class, is_undefended)
from patchbench.defenses.bilateral import BilateralFilter
from patchbench.defenses.dw import DigitalWatermarking
from patchbench.defenses.gradcheck import probe_at_build
from patchbench.defenses.gaussian import GaussianFilter
from patchbench.defenses.jpeg import JPEG
from patchbench.defenses.lgs import LGS
from patchbench.defenses.median import MedianFilter
from patchbench.defenses.patchcleanser import PatchCleanser
from patchbench.defenses.slgs import SLGS
from patchbench.defenses.tvm import TVM
from patchbench.defenses.wlgs import WLGS
from patchbench.registry import Registry, own_name

DEFENSES: Registry = Registry("defense", check_defense_class, own_name).register_all([
    NoDefense,
    LGS,
    SLGS,
    WLGS,
    JPEG,
    GaussianFilter,
    MedianFilter,
    BilateralFilter,
    TVM,
    DigitalWatermarking,
    PatchCleanser,
])
register_defense = DEFENSES.register  # a defense from outside the listing (a plugin), checked the same way


def build_defense(name: str, params: dict | None = None, model=None) -> Defense:
    """Instantiate a registered defense; ``model`` supplies normalization where a defense needs it."""
    cls = DEFENSES.lookup(name)
    cls.check_params(params or {})
    defense = cls.from_params(params or {}, model=model)
    probe_at_build(defense)  # a registered class its registration could not probe (no defaults)
    return defense


def certifies(name: str) -> bool:
    """Whether the registered defense ``name`` certifies (``Defense.certifies``); a name not registered
    now (a stored cell of a plugin not loaded) does not."""
    cls = DEFENSES.get(name)
    return cls is not None and cls.certifies
