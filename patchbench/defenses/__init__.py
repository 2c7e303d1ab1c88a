"""Defense registry: name -> class. One file per family; a new defense is one file + one line."""

from patchbench.defenses.base import Defense, NoDefense  # noqa: F401
from patchbench.defenses.dw import DigitalWatermarking
from patchbench.defenses.filters import JPEG, BilateralFilter, GaussianFilter, MedianFilter
from patchbench.defenses.lgs import LGS, SLGS, WLGS
from patchbench.defenses.tvm import TVM

DEFENSES: dict[str, type[Defense]] = {
    "none": NoDefense,
    "lgs": LGS,
    "slgs": SLGS,
    "wlgs": WLGS,
    "jpeg": JPEG,
    "gaussian": GaussianFilter,
    "median": MedianFilter,
    "bilateral": BilateralFilter,
    "tvm": TVM,
    "dw": DigitalWatermarking,
}


def build_defense(name: str, params: dict | None = None, model=None) -> Defense:
    """Instantiate a registered defense; ``model`` supplies normalization where a defense needs it."""
    from patchbench.errors import PatchbenchError

    if name not in DEFENSES:
        raise PatchbenchError(f"unknown defense {name!r}; known: {', '.join(DEFENSES)}")
    cls = DEFENSES[name]
    cls.check_params(params or {})
    return cls.from_params(params or {}, model=model)
