"""Range checks of a volumetric model's section (``model.volumize``), the key in every message; names are
checked against the registries of the layers they belong to (volumization metrics and pads, the volumetric
nets' aggregations and inflation modes)."""

from __future__ import annotations

from patchbench.config.schema import VolumizeConfig
from patchbench.errors import check, is_int
from patchbench.models.volumetric import AGGREGATIONS, INFLATE
from patchbench.volumization import METRICS, PADS


def validate_volumize(v: VolumizeConfig, image_size: int, where: str = "model.volumize") -> None:
    """Range checks of a volumetric model's section (names against the volumization registries)."""
    check(is_int(v.patch) and 2 <= v.patch <= image_size, f"{where}.patch must be an integer in 2..{image_size}, got {v.patch!r}")
    check(v.metric in METRICS, f"{where}.metric must be one of {', '.join(METRICS)}, got {v.metric!r}")
    check(v.order in ("ascending", "descending"), f"{where}.order must be ascending or descending, got {v.order!r}")
    check(v.pad in PADS, f"{where}.pad must be one of {', '.join(PADS)}, got {v.pad!r}")
    check(v.pad != "none" or image_size % v.patch == 0,
          f"{where}: patch {v.patch} px does not divide the {image_size} px image and pad is none; "
          f"choose pad: zero, reflect or replicate, or another patch size")
    check(is_int(v.bins) and v.bins >= 2, f"{where}.bins must be an integer >= 2, got {v.bins!r}")
    check(v.reference == "lowest-entropy", f"{where}.reference must be lowest-entropy (a tensor only through the API), got {v.reference!r}")
    check(is_int(v.depth_kernel) and v.depth_kernel >= 1, f"{where}.depth_kernel must be an integer >= 1, got {v.depth_kernel!r}")
    check(is_int(v.depth_pool) and v.depth_pool >= 1 and v.depth_pool % 2 == 1,
          f"{where}.depth_pool must be an odd integer >= 1, got {v.depth_pool!r}")
    check(is_int(v.min_spatial) and v.min_spatial >= 1, f"{where}.min_spatial must be an integer >= 1, got {v.min_spatial!r}")
    check(v.inflate in INFLATE, f"{where}.inflate must be one of {', '.join(INFLATE)}, got {v.inflate!r}")
    check(v.aggregation in AGGREGATIONS, f"{where}.aggregation must be one of {', '.join(AGGREGATIONS)}, got {v.aggregation!r}")
