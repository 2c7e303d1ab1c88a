"""The optimisers and step schedules a patch attack can train δ with (names checked by
:meth:`~patchbench.attacks.patch.PatchAttack.check_config`, built by
:class:`~patchbench.attacks.lavan.LaVAN`; what each does: :mod:`patchbench.attacks.lavan`)."""

from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "adam", "sign")
SCHEDULES = ("multistep", "cosine")


def patch_optimizer(delta: torch.Tensor, optimizer: str, schedule: str, *, lr: float, momentum: float, steps: int,
                    lr_milestones: list[int], lr_gamma: float):
    """``(optimizer, scheduler)`` for the patch tensor ``delta``: Adam, SGD with ``momentum``
    (``"sgd"``) or plain SGD (``"sign"``: the caller takes the sign of the gradient); a cosine
    decay to ``lr/100`` over ``steps`` or ×``lr_gamma`` at each milestone."""
    if optimizer == "adam":
        opt = torch.optim.Adam([delta], lr=lr)
    else:  # sgd with momentum; sign = plain SGD on sign(∇)
        opt = torch.optim.SGD([delta], lr=lr, momentum=momentum if optimizer == "sgd" else 0.0)
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr / 100)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, lr_milestones, lr_gamma)
    return opt, sched
