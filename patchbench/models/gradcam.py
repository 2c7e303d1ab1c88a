"""Grad-CAM (Selvaraju et al. 2017; TOMM 2022 Eq. 1–2), differentiable, plus Eq. 3 and Eq. 7.

``g(x) = ReLU(Σ_k α_k^c A^k)`` with ``A^k`` the k-th channel of a chosen layer's output and
``α_k^c = mean_{i,j} ∂y^c/∂A^k_{ij}``, ``y^c`` the class-c logit (pre-softmax). ``α`` is computed
with ``torch.autograd.grad(..., create_graph=True)``, so ``g`` is a differentiable function of the
input *and* of the weights and can sit inside a training loss (AAD's L_p, Eq. 9) or an attack
objective (A3, Eq. 11–13).

Choices where the paper is silent:

* class c: the label given, else the model's prediction;
* the map is computed at the layer's grid (e.g. 8×8 for Inception-v3's Mixed_7c, the paper's
  "8×8 grid") and, with ``upsample=True``, resized bilinearly (``align_corners=False``) to the
  image size;
* ``normalize=True`` divides each image's map by its own maximum plus 1e-8, so maps lie in [0, 1]
  and are comparable between images and models (a map that is all zero stays zero). Without it,
  a loss on raw maps could be lowered by merely shrinking the activations' scale.
* Batch coupling: ``y^c`` is summed over the batch before differentiating; in eval mode each image
  only reaches its own logits, so this equals per-image Grad-CAM. In train mode, BatchNorm after
  the layer couples the images of a batch and the maps include those cross terms.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError
from patchbench.models.registry import MODELS

NORMALIZE_EPS = 1e-8


class GradCAM:
    """Grad-CAM maps of ``model`` at ``layer`` (a module of ``model``, or its dotted name).

    ``cam(x, labels)`` returns N×H×W maps; :meth:`compute` also returns the logits of the same
    forward pass (training reuses them for its classification loss).
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str, *, normalize: bool = True, upsample: bool = True):
        self.model = model
        if isinstance(layer, str):
            try:
                layer = model.get_submodule(layer)
            except AttributeError:
                raise PatchbenchError(f"Grad-CAM: the model has no layer {layer!r}") from None
        self.layer = layer
        self.normalize = normalize
        self.upsample = upsample

    def compute(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, create_graph: bool = True,
                upsample: bool | None = None, normalize: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, logits)``: g is N×h×w at the layer's grid, or N×H×W with ``upsample``.

        ``create_graph=True``: g is differentiable through A^k *and* through α_k (second-order
        terms; what a loss on g needs to reach the layers above the CAM layer).
        ``create_graph=False``: α_k is a constant, g stays differentiable through A^k only
        (cheaper; enough for display and for the hard masks of Eq. 3). Called with gradients
        disabled (``torch.no_grad()``), the outputs are detached.
        """
        upsample = self.upsample if upsample is None else upsample
        normalize = self.normalize if normalize is None else normalize
        grad_wanted = torch.is_grad_enabled()
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _inp, out: captured.append(out))
        if not x.requires_grad:
            # a frozen model (requires_grad False, as evaluation loads it) needs a leaf to give
            # the activations a graph; x itself had none, so nothing outside is affected
            x = x.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                logits = self.model(x)
        finally:
            handle.remove()
        if not captured:
            raise PatchbenchError("Grad-CAM: the chosen layer was not used in the forward pass")
        A = captured[-1]  # N×K×h×w
        if A.ndim != 4:
            raise PatchbenchError(f"Grad-CAM needs a convolutional layer (N×K×h×w output), got shape {tuple(A.shape)}")
        with torch.enable_grad():
            c = logits.argmax(1) if labels is None else labels
            y_c = logits.gather(1, c[:, None]).sum()
            # retain_graph: the returned logits stay usable in a loss
            (dy_dA,) = torch.autograd.grad(y_c, A, create_graph=create_graph and grad_wanted, retain_graph=grad_wanted)
            alpha = dy_dA.mean((2, 3), keepdim=True)  # α_k^c (Eq. 2)
            g = F.relu((alpha * A).sum(1))  # ReLU(Σ_k α_k^c A^k), N×h×w
        if not grad_wanted:
            g, logits = g.detach(), logits.detach()
        if upsample:
            g = F.interpolate(g[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if normalize:
            g = g / (g.flatten(1).amax(1).view(-1, 1, 1) + NORMALIZE_EPS)
        return g, logits

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return self.compute(x, labels, **kwargs)[0]


def gradcam_for(model: nn.Module, **kwargs) -> GradCAM:
    """Grad-CAM at the registered ``cam_layer`` of a :class:`~patchbench.models.Classifier`
    (the layer name is relative to ``model.net``, the registry's network)."""
    name = getattr(model, "name", None)
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None or spec.cam_layer is None or not hasattr(model, "net"):
        raise PatchbenchError(f"no Grad-CAM layer registered for model {name!r}; pass GradCAM(model, layer) explicitly")
    try:
        layer = model.net.get_submodule(spec.cam_layer)
    except AttributeError:
        raise PatchbenchError(f"model {name!r} has no layer {spec.cam_layer!r} (its registered cam_layer)") from None
    return GradCAM(model, layer, **kwargs)


def attention_area(g: torch.Tensor, kappa: str | float = "mean") -> torch.Tensor:
    """Eq. 3: Att(x) = [g(x) >= κ] and [g(x) > 0], a {0, 1} float mask shaped like ``g``
    (N×H×W or N×1×H×W).

    ``kappa="mean"``: κ is each image's own mean of g (the paper's default); a float: a fixed κ.
    A hard threshold has no gradient: the mask is returned detached.

    Pixels with zero attention are never in the area (the text: "contribution value *above* a
    threshold"). This changes nothing for a map with any positive value and κ = mean > 0, but an
    all-zero map (ReLU in Eq. 2 can zero the whole map) gets an empty area instead of the whole
    image. Otherwise AAD would reward killing the map: a zero map would make x^m (Eq. 7) a black
    image, which maximizes the rectification distance of Eq. 8.
    """
    g = g.detach()
    if kappa == "mean":
        k = g.flatten(1).mean(1).view(-1, *([1] * (g.ndim - 1)))
    elif isinstance(kappa, (int, float)) and not isinstance(kappa, bool):
        k = float(kappa)
    else:
        raise PatchbenchError(f"kappa must be 'mean' or a number, got {kappa!r}")
    return ((g >= k) & (g > 0)).to(g.dtype)


def masked_image(x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """Eq. 7: x^m = x ⊙ (1 − Att(x)), the image with its attention area blacked out.

    ``att`` is N×H×W or N×1×H×W; a mask at a coarser grid is resized to the image (nearest).
    """
    if att.ndim == 3:
        att = att[:, None]
    if att.shape[-2:] != x.shape[-2:]:
        att = F.interpolate(att, size=x.shape[-2:], mode="nearest")
    return x * (1 - att)
