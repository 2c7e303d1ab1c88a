"""BMVC 2023's headline claims: declared as data in ``claims.yaml`` beside this module; here only the two picks
of its own that the file names (``arch_for``, ``target_of``), given to :func:`load_claims` by name."""

from __future__ import annotations

from pathlib import Path

from patchbench.api import Pick, load_claims

PATCH = "adversarial_patch"


def arch_for(paper_model: str) -> Pick:
    """The preset's architecture that stands for the paper's ``paper_model`` (else its first architecture)."""
    def value(preset, _cells):
        sec = preset.extra["volumetric"]
        archs = list(sec.architectures) or [preset.model.arch]
        mapped = dict(getattr(sec, "paper_models", None) or {})
        return next((a for a in archs if mapped.get(a) == paper_model), archs[0])
    return Pick(f"the architecture standing for the paper's {paper_model} (else the first)", value)


def target_of(size: Pick) -> Pick:
    """The target of the preset's first patch entry that has the patch side ``size`` picks (one patch per side)."""
    def value(preset, cells):
        side = size(preset, cells)
        return next(a.target for a in preset.attacks if a.name == PATCH and side in a.sizes)
    return Pick(f"the target of the first patch entry of {size.text}", value)


CLAIMS = load_claims(Path(__file__).with_name("claims.yaml"), picks={"arch_for": arch_for, "target_of": target_of})
