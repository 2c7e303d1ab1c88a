"""Training objectives of the one training loop: a registry name -> :class:`Objective`.

``TrainConfig.training`` names an objective, optionally with modifiers joined by ``+``
(``madry+aad``). Per minibatch (x, y), with x_adv = the objective's training attack (PGD, ε =
``cfg.eps``, ``cfg.attack_steps`` steps of ``cfg.attack_step_size``, random start; CE is the
attack's loss as in Madry et al.; it runs with the model in eval mode):

* ``raw``:    L_c(f(x), y)                                                     (ERM)
* ``madry``:  L_c(f(x_adv), y)                                                 (Madry et al. 2018)
* ``alp``:    ½·L_c(f(x), y) + ½·L_c(f(x_adv), y) + λ·mean((z(x) − z(x_adv))²)  (Kannan et al. 2018)
* ``+aad``:   the above + α·L_r + β·L_p (attention-based adversarial defense, TOMM 2022 Eq. 7-10)
* ``lat``:    L_c(f(x_lat), y), x_lat = localized PGD: ε only where ``cfg.lat_region`` allows (a
  centred box kept, or a foreground mask), every image of every batch replaced (AdvML 2019 Alg. 1)
* ``pal``:    Σ_n L_c(f_n(V(x)), y), the patch-aggregate loss of a volumetric model (BMVC 2023 Eq. 10):
  every patch n of the volume has its own output and its own loss against the image's label
* ``cutout``: L_c(f(x_cut), y), x_cut = x with ``cfg.cutout_holes`` Cutout holes of ``cfg.cutout_fraction``
  of the side filled with the normalization mean, every image of every batch (PatchCleanser's fine-tuning,
  :mod:`patchbench.training.cutout`); an augmentation, not an attack, so ``+aad`` does not apply

  - L_r (Eq. 8) = −[‖softmax z(x) − softmax z(x^m)‖₂ + ‖softmax z(x_adv) − softmax z(x_adv^m)‖₂],
    x^m = x ⊙ (1 − Att(x)) (Eq. 7), Att the Grad-CAM attention area at κ (Eq. 3);
  - L_p (Eq. 9) = ‖g(x) − g(x_adv)‖₁ between Grad-CAM maps computed with ``create_graph=True``,
    so the loss reaches the weights through α_k and A^k.

Choices where a paper is silent or loose (all parameters of TrainConfig):

* L_c (``class_loss``): cross-entropy (``"ce"``, the default) or the multi-label soft margin loss
  on one-hot targets that TOMM 2022 Eq. 10 states (``"soft-margin"``; its presets set it). The same
  L_c serves every objective, so rows of one table differ only by their adversarial terms.
* ALP's pairing term is the squared logit difference averaged over the batch *and* the classes,
  with λ = ``alp_weight`` = 0.5 next to the 50/50 clean/adversarial mixing (Kannan et al.).
* Grad-CAM (AAD): class c = the true label; maps normalized per image by their maximum (so L_p
  cannot be lowered by shrinking activations), taken at the CAM layer's grid (before
  upsampling). L_r's norms are averaged over the batch. The mask of Eq. 7 thresholds the map
  bilinearly upsampled to the image size; the hard threshold passes no gradient.
* L_p's reduction over the grid cells (``aad_lp_reduction``): ``"mean"`` (default) or ``"sum"``
  (the literal ℓ1 norm); either is averaged over the batch. Measured on LeNet / Fashion-MNIST
  (one epoch, 5k images, CE, ε = 0.1, PGD-3): with ``"sum"`` and β = 0.01, L_p drives 95 % of
  the Grad-CAM maps to all-zero (a degenerate optimum: equal maps are trivially preserved);
  with ``"mean"`` no map collapses. The displayed term ``cam0`` is the fraction of clean images
  whose map is all zero, so a collapse shows while training.
* PAL (BMVC 2023 Eq. 10) sums the per-patch losses over the N patches of an image ("summing up the
  individual patch-wise losses") and averages that sum over the batch, so its scale grows with N
  (the learning rate of a PAL preset is chosen with that in mind). It needs a model with
  ``per_patch_logits(x) -> (B, N, k)`` (:class:`patchbench.models.wrapper.VolumetricClassifier`).
* Each of x, x_adv, x^m, x_adv^m goes through the network in its own forward pass, so BatchNorm
  statistics are never mixed between clean, adversarial and masked images.

A new objective (e.g. localized adversarial training, a patch-aggregate loss) is one
:class:`Objective` subclass plus one line in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.pgd import PGD
from patchbench.errors import PatchbenchError
from patchbench.models.gradcam import attention_area, masked_image
from patchbench.registry import Registry, own_name
from patchbench.training.cutout import CutoutMasks

# --------------------------------------------------------------------------------------------
# loss terms


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """L_c: cross-entropy, or the multi-label soft margin loss on one-hot targets (TOMM Eq. 10)."""
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.multilabel_soft_margin_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


def logit_pairing_loss(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """ALP's pairing term: mean over batch and classes of (z(x) − z(x_adv))²."""
    return (z - z_adv).pow(2).mean()


def rectification_distance(model: nn.Module, x: torch.Tensor, logits: torch.Tensor, g: torch.Tensor,
                           kappa) -> torch.Tensor:
    """Per image ‖softmax f(x) − softmax f(x^m)‖₂ with x^m = x ⊙ (1 − Att(x)) (TOMM Eq. 7–8).

    ``g`` is the map at the CAM grid; the mask thresholds it upsampled (bilinear) to the image.
    """

    g_img = F.interpolate(g.detach()[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    x_m = masked_image(x, attention_area(g_img, kappa))
    return torch.linalg.vector_norm(logits.softmax(1) - model(x_m).softmax(1), dim=1)


def preservation_loss(g: torch.Tensor, g_adv: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_p (TOMM Eq. 9): |g(x) − g(x_adv)| per image, summed (the ℓ1 norm, ``"sum"``) or averaged
    (``"mean"``) over the grid cells, then averaged over the batch."""
    per_cell = (g - g_adv).abs().flatten(1)
    return (per_cell.sum(1) if reduction == "sum" else per_cell.mean(1)).mean()


# --------------------------------------------------------------------------------------------
# objectives


class Objective(ABC):
    """The loss of one minibatch. ``adversarial``: needs x_adv from :meth:`make_attack`;
    ``uses_clean``: needs the logits of the clean images."""

    name: ClassVar[str] = "objective"
    adversarial: ClassVar[bool] = False
    uses_clean: ClassVar[bool] = True
    augmentation: ClassVar[bool] = False  # x_adv is a random augmentation, not an attack (no +aad)

    def make_attack(self, model: nn.Module, cfg):
        """The attack that makes x_adv while training (None for non-adversarial objectives)."""
        if not self.adversarial:
            return None

        return PGD(model, cfg.eps, cfg.attack_steps, cfg.attack_step_size, random_start=True, seed=cfg.seed,
                   **self.attack_region(cfg))

    def attack_region(self, cfg) -> dict:
        """Where the training attack may change pixels (PGD's region arguments); every pixel by default."""
        return {}

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """What the loss is computed on: the classifier's logits (B, k) unless the objective says otherwise."""
        return model(x)

    @abstractmethod
    def terms(self, z, z_adv, y, cfg) -> dict[str, torch.Tensor]:
        """The named loss terms (``Lc`` and, for ALP, ``pair``) from the clean/adversarial logits."""

    @staticmethod
    def total(terms: dict[str, torch.Tensor], cfg) -> torch.Tensor:
        return terms["Lc"] + (cfg.alp_weight * terms["pair"] if "pair" in terms else 0)


class Raw(Objective):
    name = "raw"

    def terms(self, z, z_adv, y, cfg):
        return {"Lc": classification_loss(z, y, cfg.class_loss)}


class Madry(Objective):
    name = "madry"
    adversarial = True
    uses_clean = False

    def terms(self, z, z_adv, y, cfg):
        return {"Lc": classification_loss(z_adv, y, cfg.class_loss)}


class LocalizedAdversarial(Madry):
    """Localized adversarial training (AdvML 2019 Algorithm 1): Madry's objective on x' from PGD
    whose ε is the per-pixel matrix of ``cfg.lat_region`` (lines 5-9), e.g. the middle pixels kept."""

    name = "lat"

    def attack_region(self, cfg) -> dict:
        return {"region": cfg.lat_region, "keep_box": cfg.lat_keep_box, "mask_threshold": cfg.lat_mask_threshold}


class ALP(Objective):
    name = "alp"
    adversarial = True

    def terms(self, z, z_adv, y, cfg):
        lc = 0.5 * classification_loss(z, y, cfg.class_loss) + 0.5 * classification_loss(z_adv, y, cfg.class_loss)
        return {"Lc": lc, "pair": logit_pairing_loss(z, z_adv)}


class PatchAggregate(Objective):
    """PAL = Σ_{n=0}^{N-1} L_p(y_n, y) (BMVC 2023 Eq. 10), summed over patches, averaged over images."""

    name = "pal"

    def logits(self, model, x):
        per_patch = getattr(model, "per_patch_logits", None)
        if per_patch is None:
            raise PatchbenchError("training 'pal' needs a volumetric model (per-patch outputs, BMVC 2023 Sec. 4.2); "
                                  f"{type(model).__name__} has none")
        return per_patch(x)

    def terms(self, z, z_adv, y, cfg):
        b, n, k = z.shape
        if cfg.class_loss == "ce":
            per_patch = F.cross_entropy(z.reshape(b * n, k), y.repeat_interleave(n), reduction="none")
        else:
            target = F.one_hot(y, k).to(z.dtype).repeat_interleave(n, 0)
            per_patch = F.multilabel_soft_margin_loss(z.reshape(b * n, k), target, reduction="none")
        return {"Lc": per_patch.view(b, n).sum(1).mean()}


class Cutout(Madry):
    """PatchCleanser's fine-tuning (Xiang et al. 2022 Sec. 5.1; the authors' ``train_model.py --cutout``):
    Madry's objective with x_adv = the image with Cutout holes (:class:`~patchbench.training.cutout.CutoutMasks`),
    so the classifier learns to classify masked images as double masking shows them."""

    name = "cutout"
    augmentation = True

    def make_attack(self, model: nn.Module, cfg):
        return CutoutMasks(model, cfg.cutout_holes, cfg.cutout_fraction, seed=cfg.seed)


OBJECTIVES: Registry = Registry("training objective", name_of=own_name).register_all(
    [Raw, Madry, LocalizedAdversarial, ALP, PatchAggregate, Cutout])
MODIFIERS = ("aad",)  # attention-based terms added to an adversarial objective (TOMM Eq. 10)


def check_objective(name, where: str = "training") -> None:
    """``base[+modifier]`` with a registered base; modifiers need an adversarial base."""
    base, _, mod = str(name).partition("+")
    known = objective_names()
    if not isinstance(name, str) or base not in OBJECTIVES or (mod and (mod not in MODIFIERS or not _modifiable(OBJECTIVES[base]))):
        raise PatchbenchError(f"{where}: unknown training objective {name!r}; known: {', '.join(known)}")


def _modifiable(objective) -> bool:
    """AAD's terms compare attention under an attack: an adversarial objective whose x_adv is an attack."""
    return objective.adversarial and not objective.augmentation


def objective_names() -> list[str]:
    return [*OBJECTIVES, *(f"{b}+{m}" for b, c in OBJECTIVES.items() if _modifiable(c) for m in MODIFIERS)]


def minibatch_loss(model: nn.Module, objective: Objective, x: torch.Tensor, y: torch.Tensor, cfg,
                   attack, cam) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one minibatch under ``cfg.training``; returns (loss, terms for display)."""
    aad = cfg.training.endswith("+aad")
    x_adv = attack(x, y) if objective.adversarial else None
    if aad:
        g, z = cam.compute(x, y, create_graph=True, upsample=False)
        g_adv, z_adv = cam.compute(x_adv, y, create_graph=True, upsample=False)
    else:
        z = objective.logits(model, x) if objective.uses_clean else None
        z_adv = objective.logits(model, x_adv) if x_adv is not None else None
    terms = objective.terms(z, z_adv, y, cfg)
    loss = objective.total(terms, cfg)
    if aad:
        terms["Lr"] = -(rectification_distance(model, x, z, g, cfg.kappa)
                        + rectification_distance(model, x_adv, z_adv, g_adv, cfg.kappa)).mean()
        terms["Lp"] = preservation_loss(g, g_adv, cfg.aad_lp_reduction)
        loss = loss + cfg.aad_alpha * terms["Lr"] + cfg.aad_beta * terms["Lp"]
        terms["cam0"] = (g.detach().flatten(1).amax(1) == 0).float().mean()  # diagnostic, not a loss
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def build_objective(name: str) -> Objective:
    check_objective(name)
    return OBJECTIVES[name.partition("+")[0]]()
