"""Pixel-space L∞ attacks: FGSM, PGD, CW-margin PGD, StepLL and Iter-StepLL (TOMM 2022 Table 6).

Every attack here works on images in [0, 1] (normalization lives in the Classifier), keeps the
result in [0, 1] and in the ε-ball ``|x_adv - x|∞ <= ε`` around the clean image, and is batched.

Conventions
-----------
* Each attack *ascends* an objective ``J(x_adv, targets)`` (a scalar, the sum over the batch, so
  an image's gradient does not depend on the batch size). Untargeted attacks ascend a loss of the
  true label; StepLL ascends ``-CE(f(x), y_LL)``, which is the paper's descent step Eq. 4. This
  single sign convention is what lets :mod:`patchbench.attacks.a3` add its attention term to any
  attack (see there).
* Gradients are taken with ``torch.autograd.grad`` w.r.t. the input only: no ``.grad`` is
  accumulated on the model's parameters. The model runs in eval mode during the attack (dropout
  off, BatchNorm on running statistics) and is put back in the mode it was in.
* ``seed``: PGD's random start draws from a ``torch.Generator`` created from ``seed`` when the
  attack is constructed (on the CPU, then moved to the device, so a seed gives the same start on
  any device). Successive calls continue that stream: a fresh attack with the same seed fed the
  same batches in the same order reproduces its outputs exactly. The random start is therefore
  *not* batch-invariant (an image's start depends on its position in the batch sequence); all
  other steps are per-image (the model is in eval mode, so images do not interact).
* ``share = (r, K)`` (set by data-parallel training, :mod:`patchbench.training.distributed`): the
  batch is rank r's rows r, r + K, r + 2K, ... of a K times larger global batch; the random start
  is drawn for the global batch and those rows kept, so K ranks start where one process would.
* Default step size of the iterative attacks: ``2.5 * eps / steps`` (the rule of Madry et al.'s
  ``robustness`` library): every k can cross the ε-ball from the random start, which Madry et
  al.'s fixed steps do not guarantee for small k (0.01 at ε = 0.3 with 40 steps on MNIST; 2/255
  at ε = 8/255 with 7 steps on CIFAR-10). Pass ``step_size`` to use theirs.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.base import Attack
from patchbench.errors import PatchbenchError
from patchbench.util import eval_mode

# J(x_adv, targets) -> scalar to ascend (summed over the batch)
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# parameter checks (ART style: one line naming the parameter)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_eps(eps, who: str) -> float:
    if not _is_number(eps) or not math.isfinite(eps) or not 0 < eps <= 1:
        raise PatchbenchError(f"{who}: eps must be a finite number in (0, 1] on the [0, 1] pixel scale "
                              f"(e.g. 0.3, or 8/255 for 8 levels), got {eps!r}")
    return float(eps)


def check_steps(steps, who: str) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise PatchbenchError(f"{who}: steps must be an integer >= 1, got {steps!r}")
    return steps


def check_step_size(step_size, who: str) -> float:
    if not _is_number(step_size) or not math.isfinite(step_size) or step_size <= 0:
        raise PatchbenchError(f"{who}: step_size must be a finite number > 0, got {step_size!r}")
    return float(step_size)


def check_nonnegative(value, name: str, who: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise PatchbenchError(f"{who}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def default_step_size(eps: float, steps: int) -> float:
    """2.5·ε/steps: enough to cross the whole ε-ball from any start (see the module docstring)."""
    return 2.5 * eps / steps


# --------------------------------------------------------------------------------------------
# losses


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


def least_likely_class(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """y_LL of Eq. 4: the class with the lowest logit on the clean image."""
    with torch.no_grad(), eval_mode(model):
        return model(images).argmin(1)


# --------------------------------------------------------------------------------------------
# the shared base


class LinfAttack(Attack):
    """Base of the L∞ attacks: parameter checks, the input gradient and the projection."""

    name = "linf"

    def __init__(self, model: nn.Module, eps: float, steps: int = 1, step_size: float | None = None):
        super().__init__(model)
        self.eps = check_eps(eps, self.name)
        self.steps = check_steps(steps, self.name)
        self.step_size = (default_step_size(self.eps, self.steps) if step_size is None
                          else check_step_size(step_size, self.name))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The per-image loss to *ascend* (overridden per attack)."""
        return F.cross_entropy(logits, targets, reduction="none")

    def objective(self, x_adv: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """J(x_adv) = Σ_i loss(f(x_adv_i), t_i): one forward pass, summed over the batch."""
        return self.loss(self.model(x_adv), targets).sum()

    def input_gradient(self, objective: Objective, x_adv: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """∇_x J at ``x_adv``, w.r.t. the input only (no parameter .grad is touched)."""
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(x_adv, targets), x_adv)
        return grad

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Clip to the ε-ball around ``x`` and to [0, 1]."""
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0, 1).detach()

    def sign_ascent(self, x: torch.Tensor, x_start: torch.Tensor, targets: torch.Tensor,
                    objective: Objective, steps: int, step_size: float) -> torch.Tensor:
        """``steps`` of x ← Π_{ε, [0,1]}(x + step_size · sign ∇_x J(x)) from ``x_start``."""
        x_adv = x_start
        with eval_mode(self.model):
            for _ in range(steps):
                grad = self.input_gradient(objective, x_adv, targets)
                x_adv = self.project(x_adv + step_size * grad.sign(), x)
        return x_adv

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:.4g}, steps={self.steps}, step_size={self.step_size:.4g})"


# --------------------------------------------------------------------------------------------
# the attacks


class FGSM(LinfAttack):
    """Goodfellow et al. 2015: x_adv = x + ε · sign ∇_x CE(f(x), y)."""

    name = "fgsm"

    def __init__(self, model: nn.Module, eps: float):
        super().__init__(model, eps, steps=1, step_size=eps)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        return self.sign_ascent(x, x, labels, objective or self.objective, 1, self.eps)


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
    if not _is_number(keep_box) or not 0 < keep_box < 1:
        raise PatchbenchError(f"{who}: keep_box must be a fraction of the image side in (0, 1) (the kept centred box "
                              f"must leave some pixels to attack), got {keep_box!r}")
    if not _is_number(mask_threshold) or not 0 <= mask_threshold < 1:
        raise PatchbenchError(f"{who}: mask_threshold must be in [0, 1), got {mask_threshold!r}")


class PGD(LinfAttack):
    """Madry et al. 2018: a uniform random start in the ε-ball, then ``steps`` sign-gradient
    ascent steps on CE(f(x_adv), y), each projected back onto the ε-ball and [0, 1].

    Localized PGD (AdvML 2019 Algorithm 1, lines 5-9): ``region`` other than ``all`` makes ε a
    per-pixel matrix, epmatrix = ε · :func:`allowed_pixels` (ε where a pixel may change, 0 where it
    may not); the random start and every projection use it, so a pixel with ε = 0 never changes.
    """

    name = "pgd"

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
    def check_config(cls, cfg, where: str = "evasion") -> None:
        """The base checks, plus the values of the localized-PGD parameters (before any work)."""
        super().check_config(cfg, where)
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


class CW(PGD):
    """CW-k of Table 6: PGD under the same ε-ball on the Carlini–Wagner margin loss
    (:func:`cw_margin_loss`, descended, i.e. its negative ascended) instead of CE."""

    name = "cw"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, seed: int = 0, kappa: float = 50.0, region: str = "all",
                 keep_box: float = 0.5, mask_threshold: float = 0.1):
        super().__init__(model, eps, steps, step_size, random_start, seed, region, keep_box, mask_threshold)
        self.kappa = check_nonnegative(kappa, "kappa", self.name)

    def loss(self, logits, targets):
        return -cw_margin_loss(logits, targets, self.kappa)


class StepLL(LinfAttack):
    """Eq. 4 (Kurakin et al. 2017; Tramèr et al. 2018): x_adv = x − ε · sign ∇_x CE(f(x), y_LL),
    y_LL the least-likely class of the clean image; ascends ``-CE(·, y_LL)``. ``labels`` unused
    (an A3 wrapper uses them for its attention maps)."""

    name = "stepll"

    def __init__(self, model: nn.Module, eps: float):
        super().__init__(model, eps, steps=1, step_size=eps)

    def loss(self, logits, targets):
        return -F.cross_entropy(logits, targets, reduction="none")

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        y_ll = least_likely_class(self.model, x)
        return self.sign_ascent(x, x, y_ll, objective or self.objective, 1, self.eps)


class IterStepLL(StepLL):
    """Iterative StepLL (Kurakin et al. 2017): ``steps`` steps of Eq. 4 of size ``step_size``
    toward the clean image's least-likely class, each projected onto the ε-ball and [0, 1]; no
    random start. Default step size 2.5·ε/steps as for PGD."""

    name = "iter-stepll"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None):
        LinfAttack.__init__(self, model, eps, steps, step_size)

    def forward(self, images, labels, objective: Objective | None = None):
        x = images.detach()
        y_ll = least_likely_class(self.model, x)
        return self.sign_ascent(x, x, y_ll, objective or self.objective, self.steps, self.step_size)
