"""PatchCleanser's headline claims: declared as data in ``claims.yaml`` beside this module; here only the pick of
its own that the file names (``adaptive_side``), given to :func:`load_claims` by name."""

from __future__ import annotations

from pathlib import Path

from patchbench.api import Pick, load_claims


def _adaptive_side(preset, _cells):
    """The side the certified section trains its adaptive LaVAN at (:mod:`patchbench.sections.certified`): the adaptive
    section's size if it is certified, else the largest certified size."""
    cfg = preset.extra["certified"]
    sizes = sorted(set(cfg.sizes or [s for a in preset.attacks for s in a.sizes]))
    ad = preset.extra.get("adaptive")
    return ad.size if ad is not None and ad.size in sizes else max(sizes)


def adaptive_side() -> Pick:
    return Pick("the certified side of the adaptive LaVAN through PatchCleanser", _adaptive_side)


CLAIMS = load_claims(Path(__file__).with_name("claims.yaml"), picks={"adaptive_side": adaptive_side})
