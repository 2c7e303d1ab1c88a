"""CW-k of TOMM 2022 Table 6: PGD on the Carlini–Wagner margin loss."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.base import register_attack
from patchbench.attacks.linf import check_nonnegative
from patchbench.attacks.pgd import PGD


def cw_margin_loss(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Carlini–Wagner's f6 (untargeted), per image: ``max(z_y - max_{j≠y} z_j, -κ)``.

    The attack *minimizes* it: it is positive while the true class wins and bottoms out at -κ once
    some other class leads by κ. (Written as the quantity to maximize, this is
    ``min(max_{j≠y} z_j - z_y, κ)``; clipping at κ is what stops the push. κ = 50 follows Madry
    et al.'s CW-loss PGD.)
    """
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return torch.clamp(z_y - others.amax(1), min=-kappa)


@register_attack
class CW(PGD):
    r"""CW-k: PGD on the margin loss of the paper 'Towards Evaluating the Robustness of Neural
    Networks' [https://arxiv.org/abs/1608.04644] (Carlini & Wagner, IEEE S&P 2017), as TOMM 2022
    Table 6 runs it: the L∞ ball of PGD, the loss Carlini and Wagner's.

    Distance Measure : Linf

    CW-k of Table 6: PGD under the same ε-ball on the Carlini–Wagner margin loss
    (:func:`cw_margin_loss`, descended, i.e. its negative ascended) instead of CE.

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps, steps, step_size, random_start, seed: the ε-ball and the steps, as :class:`~patchbench.attacks.pgd.PGD`'s.
        kappa (float): the margin's confidence κ. (Default: 50.0)
        region, keep_box, mask_threshold: as :class:`PGD`'s.

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> adv_images = CW(model, eps=8/255, steps=10, kappa=50)(images, labels)
    """

    name = "cw"
    display_name = "CW"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, seed: int = 0, kappa: float = 50.0, region: str = "all",
                 keep_box: float = 0.5, mask_threshold: float = 0.1):
        super().__init__(model, eps, steps, step_size, random_start, seed, region, keep_box, mask_threshold)
        self.kappa = check_nonnegative(kappa, "kappa", self.name)

    def loss(self, logits, targets):
        return -cw_margin_loss(logits, targets, self.kappa)
