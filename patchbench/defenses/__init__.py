"""Defense registry: name -> class. One file per defense, its class registered where it is defined
(``@register_defense`` above its ``@dataclass``, timm's pattern: the registry checks the class against
the contract of :mod:`patchbench.defenses.base` and takes its ``name`` once), and one import below,
which sets the listing's order (``patchbench list defenses``). A plugin outside the package declares
its classes instead (``DEFENSES = [...]``; :mod:`patchbench.plugins` registers them the same way)."""

# the listing, in order (each module registers its class when imported)
from patchbench.defenses.base import (  # noqa: F401
    DEFENSES, GRADIENTS, UNDEFENDED, Defense, NoDefense, check_defense_class, is_undefended, register_defense)
from patchbench.defenses.lgs import LGS  # noqa: F401
from patchbench.defenses.slgs import SLGS  # noqa: F401
from patchbench.defenses.wlgs import WLGS  # noqa: F401
from patchbench.defenses.jpeg import JPEG  # noqa: F401
from patchbench.defenses.gaussian import GaussianFilter  # noqa: F401
from patchbench.defenses.median import MedianFilter  # noqa: F401
from patchbench.defenses.bilateral import BilateralFilter  # noqa: F401
from patchbench.defenses.tvm import TVM  # noqa: F401
from patchbench.defenses.dw import DigitalWatermarking  # noqa: F401
from patchbench.defenses.patchcleanser import PatchCleanser  # noqa: F401
from patchbench.defenses.gradcheck import probe_at_build


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
