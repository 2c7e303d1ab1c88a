"""PatchCleanser's headline claims (USENIX Security 2022: Table 2, Theorem 1 / Sec. 4, Fig. 6) over the cells
of a preset's ``certified:`` section (at demo scale the ICAART demo's, ``demo-fmnist``). A PatchCleanser cell's
patch side is its defense parameter (``defense_params.patch_px``); the certified side nearest the paper's 2 %-pixel
patch is read from the preset. Certified and clean accuracy of the defense come from the same clean cell (its
per-image certificate and prediction).
"""

from __future__ import annotations

from patchbench.api import Cells, Claim, Pick, certified_size, largest_certified, last, smallest_certified

PRESETS = {"demo": "demo-fmnist", "paper": "patchcleanser-vit_b_16"}
TWO_PCT = certified_size(2.0)


def _adaptive_side(preset, _cells):
    """The side the certified section trains its adaptive LaVAN at (:mod:`patchbench.sections.certified`): the adaptive
    section's size if it is certified, else the largest certified size."""
    cfg = preset.extra["certified"]
    sizes = sorted(set(cfg.sizes or [s for a in preset.attacks for s in a.sizes]))
    ad = preset.extra.get("adaptive")
    return ad.size if ad is not None and ad.size in sizes else max(sizes)


ADAPTIVE_SIDE = Pick("the certified side of the adaptive LaVAN through PatchCleanser", _adaptive_side)

# Why a claim may not hold at demo scale (docs/OPERATING_POINTS.md, PatchCleanser)
FEW_IMAGES = ("budget, not yet tested: certified.n = 200 images (k = 6: 666 masked images per image; the demo's time "
              "budget, preset notes), so the 95 % interval (about ±6 pp certified, ±2.5 pp clean) straddles the claim's "
              "margin; the next step is the same cells on all the preset's evaluation images")


def clean(side, metric: str, label: str) -> Cells:
    return Cells(label, {"condition": "clean", "defense": "patchcleanser", "defense_params.patch_px": side}, metric)


CLAIMS = (
    Claim("certified-close-to-clean",
          "Certified accuracy at the patch nearest 2 % of the image stays within 25 pp of the defense's clean accuracy",
          "Table 2", "ImageNet, ViT-B, 2 %-pixel patch, k = 6: 62.1 % certified vs 83.9 % clean (21.8 pp); ResNet-50 "
          "about 53 % certified",
          clean(TWO_PCT, "certified", "PatchCleanser, certified (≈2 % patch)"),
          clean(TWO_PCT, "correct", "PatchCleanser, clean (≈2 % patch)"), PRESETS, margin=0.25,
          explained={"demo": FEW_IMAGES}),
    Claim("clean-comparable-to-undefended",
          "PatchCleanser's clean accuracy (patch nearest 2 %) is not below the undefended model's by more than 3 pp "
          "(\"clean accuracy comparable to state-of-the-art classifiers\")",
          "Table 2 vs Table 3; abstract", "ImageNet ViT-B: 83.9 % with the defense at a 2 % patch (Table 2) beside the "
          "undefended model's (Table 3), which the paper calls comparable",
          clean(TWO_PCT, "correct", "PatchCleanser, clean (≈2 % patch)"),
          Cells("no defense, clean", {"condition": "clean", "defense": "none"}), PRESETS, margin=0.03,
          explained={"demo": FEW_IMAGES}),
    Claim("certificate-holds-adaptive",
          "Under LaVAN trained through PatchCleanser (white-box), accuracy stays at or above the certified accuracy "
          "for that patch size: a certified image cannot be flipped",
          "Theorem 1; Sec. 4", "Certified robust accuracy is a lower bound on accuracy under any patch of that size "
          "(62.1 % at 2 %, ViT-B); a broken certificate would put attacked accuracy below it",
          Cells("PatchCleanser, adaptive LaVAN (last step)", {"condition": "attacked", "attack": "lavan-adaptive",
                                                              "attack_through": "patchcleanser", "defense": "patchcleanser",
                                                              "attack_step": last("attack_step")}),
          clean(ADAPTIVE_SIDE, "certified", "PatchCleanser, certified (same patch size)"), PRESETS),
    Claim("certified-falls-with-patch-size",
          "Certified accuracy is lower for the largest certified patch than for the smallest",
          "Table 2; Fig. 6", "ImageNet / ImageNette / CIFAR-10: certified accuracy falls as the patch (and its estimated "
          "size) grows, 1 % → 2 % → 3 % pixels (ViT-B 62.1 % at 2 %)",
          clean(largest_certified(), "certified", "PatchCleanser, certified (largest patch)"),
          clean(smallest_certified(), "certified", "PatchCleanser, certified (smallest patch)"), PRESETS, direction="less"),
)
