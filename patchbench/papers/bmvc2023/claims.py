"""BMVC 2023's headline claims (Table 2 top and bottom, Sec. 5, Fig. 3, Sec. 6) over the volumization presets'
cells. The undefended model f and the volumized model g (MI syllabus) see the same evaluation images; an
N-pixel attack is run against each model itself in each region of the paper's protocol (paired by region), a
patch is trained on f and shown to both (paired by patch and place). The architecture is the one standing
for the paper's network of the numbers quoted (``volumetric.paper_models``), else the preset's first.

Table 2 (bottom) reports the defense success rate α; the per-image statement tested here is the same event
(an attacked image still classified correctly), over all evaluation images of both models.
"""

from __future__ import annotations

from patchbench.api import Cells, Claim, Pick, largest_lambda, largest_size, smallest_size

CIFAR10 = {"demo": "demo-bmvc-fmnist", "paper": "bmvc2023-cifar10"}
IMAGENET = {"demo": "demo-bmvc-fmnist", "paper": "bmvc2023-imagenet"}
PATCH = "adversarial_patch"

# Controlled experiments for the claims that do not hold at demo scale (docs/operating-points/tomm-advml-bmvc.md)
ONE_PIXEL = ("scale, not the volume's order: at the rule's 300 images the claim is contradicted (g 77.2 vs f 82.1 % "
             "under the 1-pixel attack); probes.volume_order there: a random pixel reorders the MI volume in 2.2 % of "
             "the cases, 18 % of the images the attack fools have a reordered volume, and keeping the clean order gives "
             "back 1.6 of the 4.9 pp. The claim's premise is missing at this scale: one pixel costs f 5.2 pp (the "
             "paper's VGG16 63 pp), so there is little to defend, and g is the less accurate model")
G_CLEAN = ("scale (training length): on all 10000 test images g (MI) at the rule's cap (6 epochs, 3x f's image-epochs) "
           "reaches 84.96 % against f's 87.31 % (-2.35 pp, just past the claim's 2 pp) with its loss still falling; "
           "trained 10 epochs it reaches 85.98 % (-1.33 pp, inside the margin), so the rule's cap, not the method, "
           "holds it back, and the 150 evaluation images cannot separate either gap from the margin")
LARGEST, SMALLEST = largest_size(PATCH), smallest_size(PATCH)


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


def model(method: str, paper_model: str, label: str, **where) -> Cells:
    return Cells(label, {"method": method, "model": arch_for(paper_model), **where})


def one_pixel(method: str, paper_model: str, label: str) -> Cells:
    return model(method, paper_model, f"{label}, 1-pixel attack", condition="attacked", attack="single_pixel", defense="none")


def patched(method: str, paper_model: str, label: str, size=None, **where) -> Cells:
    where = {"condition": "attacked", "attack": PATCH, **({"patch_px": size} if size is not None else {}), **where}
    return model(method, paper_model, label, **where)


CLAIMS = (
    Claim("one-pixel-breaks-undefended",
          "The 1-pixel attack lowers the undefended model's accuracy below its clean accuracy",
          "Table 2 (top)", "CIFAR-10 VGG16: 98.9 % clean vs 35.9 % under the 1-pixel attack (EfficientNet-B0 98 vs 44.3 %)",
          one_pixel("undefended", "vgg16", "undefended"),
          model("undefended", "vgg16", "undefended, clean", condition="clean", defense="none"), CIFAR10, direction="less"),
    Claim("volumized-beats-undefended-one-pixel",
          "Under the 1-pixel attack the volumized model (MI syllabus) keeps more accuracy than the undefended model",
          "Table 2 (top); Sec. 5", "CIFAR-10 VGG16: MI 98.6 % vs undefended 35.9 % (EfficientNet-B0 91.3 vs 44.3 %)",
          one_pixel("volumized-mi", "vgg16", "volumized (MI)"), one_pixel("undefended", "vgg16", "undefended"), CIFAR10,
          explained={"demo": ONE_PIXEL}),
    Claim("volumized-keeps-clean",
          "The volumized model's (MI) clean accuracy is not below the undefended model's by more than 2 pp "
          "(\"without sacrificing performance on clean data\")",
          "Table 2 (top); Sec. 6", "CIFAR-10 clean: VGG16 MI 99.0 % vs undefended 98.9 %; EfficientNet-B0 96.3 vs 98.0 %",
          model("volumized-mi", "vgg16", "volumized (MI), clean", condition="clean", defense="none"),
          model("undefended", "vgg16", "undefended, clean", condition="clean", defense="none"), CIFAR10, margin=0.02,
          explained={"demo": G_CLEAN}),
    Claim("volumized-beats-lgs-patch",
          "Under adversarial patches (>= 5 % of the image, trained on the undefended model) the volumized model (MI) "
          "keeps more images correct than LGS on the undefended model",
          "Table 2 (bottom); Sec. 5", "CIFAR-10 α: MI/Ours (ResNet50) 95.6 % vs LGS 93.2 % (CIFAR-100: 95.43 vs 73.7 %)",
          patched("volumized-mi", "resnet50", "volumized (MI), patches", patch_source="undefended", defense="none"),
          patched("undefended", "resnet50", "LGS on the undefended model, patches", defense="lgs", lam=largest_lambda("lgs")),
          CIFAR10),
    Claim("volumized-beats-dw-patch",
          "Under adversarial patches the volumized model (MI) keeps more images correct than Digital Watermarking on "
          "the undefended model",
          "Table 2 (bottom); Sec. 5", "ImageNet α: MI/Ours (ResNet50) 89.1 % vs DW 65.2 % (VGG16) / 66.2 % (Inception-v3)",
          patched("volumized-mi", "resnet50", "volumized (MI), patches", patch_source="undefended", defense="none"),
          patched("undefended", "resnet50", "DW on the undefended model, patches", defense="dw"), IMAGENET),
    Claim("larger-patch-hurts-volumized",
          "The volumized model (MI), like the undefended one, keeps less accuracy under the largest patch than under "
          "the smallest (\"performance degrades as the size of the attack increases\")",
          "Fig. 3 (b, d); Sec. 5", "Fig. 3: δ and β of the defended models fall as the patch grows from 5 to 25 % of the "
          "image (no number in the text)",
          patched("volumized-mi", "vgg16", "volumized (MI), largest patch", LARGEST, patch_source="undefended", defense="none",
                  target=target_of(LARGEST)),
          patched("volumized-mi", "vgg16", "volumized (MI), smallest patch", SMALLEST, patch_source="undefended", defense="none",
                  target=target_of(SMALLEST)),
          CIFAR10, direction="less", pair_by=("placement",)),
)
