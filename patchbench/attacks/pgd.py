"""PGD (Madry et al. 2018) and localized PGD (AdvML 2019 Algorithm 1), TOMM 2022 Table 6's
iterative L∞ attack (conventions, seeds and the default step size: :mod:`patchbench.attacks.linf`)."""

from __future__ import annotations

import torch
import torch.nn as nn

from patchbench.attacks.base import register_attack
from patchbench.attacks.linf import LinfAttack, Objective
from patchbench.errors import PatchbenchError, is_number
from patchbench.util import eval_mode

REGIONS = ("all", "background", "mask")


def allowed_pixels(x: torch.Tensor, region: str = "all", keep_box: float = 0.5, mask_threshold: float = 0.1) -> torch.Tensor:
    """Where a localized attack may change pixels (AdvML 2019 Sec. 3-4): (B, 1, H, W) in {0, 1}.

    * ``all``: every pixel (standard PGD);
    * ``background``: all but a centred box of ``keep_box`` × the image side ("the middle pixels
      unaltered", Sec. 4; the paper gives no size, 0.5 keeps the middle quarter of the area);
    * ``mask``: pixels whose brightest channel is at most ``mask_threshold`` (the "inexpensive
      segmentation" of a dark-background dataset such as MNIST, Sec. 6): the object is kept.
    """
    b, _, h, w = x.shape
    if region == "all":
        return torch.ones(b, 1, h, w, dtype=x.dtype, device=x.device)
    if region == "background":
        kh, kw = round(keep_box * h), round(keep_box * w)
        allowed = torch.ones(b, 1, h, w, dtype=x.dtype, device=x.device)
        top, left = (h - kh) // 2, (w - kw) // 2
        allowed[:, :, top:top + kh, left:left + kw] = 0
        return allowed
    return (x.amax(1, keepdim=True) <= mask_threshold).to(x.dtype)


def check_region(region, keep_box, mask_threshold, who: str) -> None:
    """The localized-PGD parameters (one-line PatchbenchError naming the parameter)."""
    if region not in REGIONS:
        raise PatchbenchError(f"{who}: region must be one of {', '.join(REGIONS)}, got {region!r}")
    if not is_number(keep_box) or not 0 < keep_box < 1:
        raise PatchbenchError(f"{who}: keep_box must be a fraction of the image side in (0, 1) (the kept centred box "
                              f"must leave some pixels to attack), got {keep_box!r}")
    if not is_number(mask_threshold) or not 0 <= mask_threshold < 1:
        raise PatchbenchError(f"{who}: mask_threshold must be in [0, 1), got {mask_threshold!r}")


@register_attack
class PGD(LinfAttack):
    r"""PGD in the paper 'Towards Deep Learning Models Resistant to Adversarial Attacks'
    [https://arxiv.org/abs/1706.06083] (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018).

    Distance Measure : Linf

    Madry et al. 2018: a uniform random start in the ε-ball, then ``steps`` sign-gradient
    ascent steps on CE(f(x_adv), y), each projected back onto the ε-ball and [0, 1].

    Localized PGD (AdvML 2019 Algorithm 1, lines 5-9): ``region`` other than ``all`` makes ε a
    per-pixel matrix, epmatrix = ε · :func:`allowed_pixels` (ε where a pixel may change, 0 where it
    may not); the random start and every projection use it, so a pixel with ε = 0 never changes.

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        eps (float): maximum perturbation ε, in [0, 1] pixel units.
        steps (int): number of steps. (Default: 10)
        step_size (float | None): step size α (None: 2.5 · ε / steps). (Default: None)
        random_start (bool): start at a uniform point of the ε-ball. (Default: True)
        seed (int): seed of the random start. (Default: 0)
        region (str): where pixels may change: ``all`` | ``background`` | ``mask`` (AdvML 2019). (Default: ``all``)
        keep_box (float): ``background``: side of the kept centred box, a fraction of the image side. (Default: 0.5)
        mask_threshold (float): ``mask``: pixels brighter than this are the object, kept. (Default: 0.1)

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = PGD(model, eps=8/255, steps=10, random_start=True)
        >>> adv_images = attack(images, labels)
    """

    name = "pgd"
    display_name = "PGD"
    steps_in_label = True  # PGD10, PGD100: the columns differ by k
    shares_trajectory_across_steps = True  # forward_at

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, seed: int = 0, region: str = "all", keep_box: float = 0.5,
                 mask_threshold: float = 0.1):
        super().__init__(model, eps, steps, step_size)
        check_region(region, keep_box, mask_threshold, self.name)
        self.random_start = bool(random_start)
        self.seed = seed
        self.region, self.keep_box, self.mask_threshold = region, float(keep_box), float(mask_threshold)
        self.generator = torch.Generator().manual_seed(seed)
        self.share: tuple[int, int] | None = None  # (rank, K): see the module docstring

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        """The base checks, plus the values of the localized-PGD parameters (before any work)."""
        super().check_config(cfg, image_size, where)
        p = cfg.params
        check_region(p.get("region", "all"), p.get("keep_box", 0.5), p.get("mask_threshold", 0.1), where)

    _given: torch.Tensor | None = None  # an ``allowed`` mask passed to forward (e.g. from detector boxes)

    def epmatrix(self, x: torch.Tensor):
        """ε per pixel (a tensor broadcast over channels), or the number ε for ``region="all"``."""
        if self._given is not None:
            return self.eps * self._given
        if self.region == "all":
            return self.eps
        return self.eps * allowed_pixels(x, self.region, self.keep_box, self.mask_threshold)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.region == "all" and self._given is None:
            return super().project(x_adv, x)
        epm = self.epmatrix(x)
        return torch.min(torch.max(x_adv, x - epm), x + epm).clamp_(0, 1).detach()

    def start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        if self.share is None:
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-self.eps, self.eps, generator=self.generator)
        else:  # the global batch's draw (every rank's generator advances alike), this rank's rows
            r, k = self.share
            noise = torch.empty((x.shape[0] * k, *x.shape[1:]), dtype=x.dtype).uniform_(
                -self.eps, self.eps, generator=self.generator)[r::k]
        if self.region != "all" or self._given is not None:
            noise = noise * (self.epmatrix(x) / self.eps).cpu()
        return (x + noise.to(x.device)).clamp_(0, 1)

    def forward(self, images, labels, objective: Objective | None = None, allowed: torch.Tensor | None = None):
        """``allowed`` (B, 1, H, W) in {0, 1}: where pixels may change for this call (e.g. outside
        per-image detector boxes, AdvML 2019 Sec. 3), overriding ``region``."""
        x = images.detach()
        self._given = None if allowed is None else allowed.to(x.device, x.dtype)
        try:
            return self.sign_ascent(x, self.start(x), labels, objective or self.objective, self.steps, self.step_size)
        finally:
            self._given = None

    def forward_at(self, images: torch.Tensor, labels: torch.Tensor, at) -> dict[int, torch.Tensor]:
        """PGD-k for several k from one run: ``{k: iterate after k steps}`` for k in ``at``.

        Equal to separate PGD-k attacks with the same seed *and the same step size*, so pass
        ``step_size`` explicitly (the default 2.5·ε/steps rule depends on ``steps``): e.g. one
        100-step run with Madry et al.'s 0.01 gives PGD-10/20/40/100 for 100 steps of work
        instead of 170.
        """
        ks = sorted({int(k) for k in at})
        if not ks or ks[0] < 1 or ks[-1] > self.steps:
            raise PatchbenchError(f"{self.name}: forward_at needs step counts in 1..{self.steps}, got {list(at)!r}")
        x = images.detach()
        x_adv, out = self.start(x), {}
        with eval_mode(self.model):
            for t in range(1, ks[-1] + 1):
                grad = self.input_gradient(self.objective, x_adv, labels)
                x_adv = self.project(x_adv + self.step_size * grad.sign(), x)
                if t in ks:
                    out[t] = x_adv
        return out
