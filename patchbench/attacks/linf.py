"""The base of the pixel-space L∞ attacks (TOMM 2022 Table 6): :mod:`~patchbench.attacks.fgsm`,
:mod:`~patchbench.attacks.pgd`, :mod:`~patchbench.attacks.cw` and :mod:`~patchbench.attacks.stepll`.

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

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.base import Attack
from patchbench.errors import PatchbenchError, is_number
from patchbench.util import eval_mode

# J(x_adv, targets) -> scalar to ascend (summed over the batch)
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# parameter checks (ART style: one line naming the parameter)


def check_eps(eps, who: str) -> float:
    if not is_number(eps) or not 0 < eps <= 1:
        raise PatchbenchError(f"{who}: eps must be a finite number in (0, 1] on the [0, 1] pixel scale "
                              f"(e.g. 0.3, or 8/255 for 8 levels), got {eps!r}")
    return float(eps)


def check_steps(steps, who: str) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise PatchbenchError(f"{who}: steps must be an integer >= 1, got {steps!r}")
    return steps


def check_step_size(step_size, who: str) -> float:
    if not is_number(step_size) or step_size <= 0:
        raise PatchbenchError(f"{who}: step_size must be a finite number > 0, got {step_size!r}")
    return float(step_size)


def check_nonnegative(value, name: str, who: str) -> float:
    if not is_number(value) or value < 0:
        raise PatchbenchError(f"{who}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def default_step_size(eps: float, steps: int) -> float:
    """2.5·ε/steps: enough to cross the whole ε-ball from any start (see the module docstring)."""
    return 2.5 * eps / steps

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
