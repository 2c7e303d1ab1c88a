"""How large a patch is against the papers' own: the plain word a user gets before training one.

A patch size means nothing without its image size: ICAART 2022's 52 px LaVAN patch covers 1.7% of
a 400 px ImageNet image, while the same 52 px on the demo's 64 px Fashion-MNIST covers 66% and
wins every time. :func:`size_advice` says so when a patch is larger than the largest patch (by
area) of any shipped paper-scale preset, and names the preset where that pixel size is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

from patchbench.config import Preset
from patchbench.papers import PAPERS
from patchbench.presets import load_preset


@dataclass(frozen=True)
class PaperPatch:
    preset: str
    attack: str
    size: int
    image_size: int

    @property
    def area(self) -> float:
        return (self.size / self.image_size) ** 2


def paper_patches() -> list[PaperPatch]:
    """Every patch size of every paper-scale preset of the registered papers."""

    found = []
    for paper in PAPERS.values():
        for name in paper.presets.get("paper", ()):
            p = load_preset(name)
            found += [PaperPatch(name, a.name, s, p.data.image_size) for a in p.attacks for s in a.sizes]
    return found


def size_advice(preset: Preset, attack: str, size: int) -> str | None:
    """A warning when a ``size`` px patch on ``preset``'s images covers more than the papers' largest
    patch; None otherwise."""
    patches = paper_patches()
    if not patches:
        return None
    area = (size / preset.data.image_size) ** 2
    largest = max(patches, key=lambda q: q.area)
    if area <= largest.area:
        return None
    text = (f"warning: a {size} px patch covers {100 * area:.1f}% of preset {preset.name}'s {preset.data.image_size} px "
            f"images, more than the largest patch of any paper preset ({largest.size} px of {largest.image_size} px, "
            f"{100 * largest.area:.1f}%, {largest.preset}); expect it to win almost always.")
    same = [q for q in patches if q.size == size and q.attack == attack] or [q for q in patches if q.size == size]
    if same:
        q = same[0]
        scaled = max(1, round(size * preset.data.image_size / q.image_size))
        text += (f" {size} px is the paper's size on {q.image_size} px images: --preset {q.preset}; on "
                 f"{preset.data.image_size} px images the same {100 * q.area:.1f}% area is --size {scaled}.")
    return text
