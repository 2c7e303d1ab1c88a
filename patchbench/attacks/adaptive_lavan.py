"""White-box adaptive LaVAN through any defense (ICAART 2022 Sec. 4.3, Eq. 13, Fig. 10).

Eq. 13: x' = (1 - m) ⊙ x + m ⊙ δ and δ = argmax_δ [M(ȳ|T(x')) - M(ŷ|T(x'))], with M the pre-softmax
logits, ȳ the target, ŷ the source (true) class and T the defense at a fixed λ. It is LaVAN's
Eq. 3 with the defense inserted between the patched image and the classifier, so this class is
:class:`~patchbench.attacks.lavan.LaVAN` with its ``transform`` hook set to the defense's own
differentiable forward, :meth:`patchbench.defenses.base.Defense.differentiable`. How T is
differentiated is declared by each defense (``gradient``: exact, BPDA, or partial with
``grad_options``); ``grad_options`` here picks among a defense's declared choices, e.g.
``{"keep_grad": "straight-through", "saliency_grad": "constant"}`` (options a defense does not
declare are ignored). The forward value of T is always the defense's exactly.

Measured at demo scale (small_vgg, 64 px, batch 64, 1 CPU thread, per step): no defense 33 ms,
LGS 57 ms, SLGS 100 ms, WLGS constant 93 ms, WLGS second-order 214 ms; the two WLGS modes gave
the same curve (final success through WLGS λ=2.3: 40.5 % vs 41.3 %).

:class:`AdaptiveLaVAN` records, every ``record_every`` steps, a snapshot of δ and its success
rate through the *real* defense (``defense.maps`` + ``apply``, no gradient tricks) at the test
placement on a fixed held-out batch, counting target hits on non-target images (Fig. 10's
"success rate vs training step").
"""

from __future__ import annotations

import time
from typing import Iterable

import torch

from patchbench.attacks.base import register_attack
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch, Placement, paste
from patchbench.defenses.base import Defense, NoDefense
from patchbench.errors import PatchbenchError


@register_attack
class AdaptiveLaVAN(LaVAN):
    r"""Adaptive LaVAN, the white-box attack of ICAART 2022 on its defenses (SLGS, WLGS; Sec. 4.3,
    Eq. 13, Fig. 10): LaVAN optimized through the defense T at a fixed λ, logits M(·|T(x')).

    Distance Measure : L0 (a square patch)

    Same optimizer, initialization (seeded uniform δ), loss (Eq. 3) and placements as
    :class:`LaVAN`; only the logits are ``model(T(paste(x, δ)))``. ``defense=None`` means no
    defense (plain LaVAN, the reference). ``fit`` keeps ``self.history`` (one dict per recorded
    step) and ``self.snapshots`` (one :class:`Patch` per recorded step, meta with ``step``).
    Recorded steps: 0 (the initial δ), every ``record_every`` steps, and the last step.

    Arguments:
        model, size, target, placement, image_size: as :class:`~patchbench.attacks.lavan.LaVAN`'s.
        defense (Defense | None): the defense T trained through, differentiated as it declares
            (``gradient``); None: plain LaVAN, the reference. (Default: None)
        lam (float | None): T's λ (None for a defense without one). (Default: None)
        grad_options (dict | None): choices among the gradients T declares, e.g.
            ``{"keep_grad": "straight-through"}``. (Default: None)
        record_every (int | None): steps between snapshots of δ (None: step 0 and the last). (Default: 25)
        eval_chunk (int): images per forward pass of the held-out success rate. (Default: 256)
        **lavan_kwargs: :class:`LaVAN`'s optimizer settings (``steps``, ``lr``, ...).

    Shape: ``fit``: batches of (:math:`(B, C, H, W)`, :math:`(B)`) -> a Patch of :math:`(C, s, s)` pixels; ``forward``: :math:`(N, C, H, W)` kept.

    Examples::
        >>> attack = AdaptiveLaVAN(model, 8, 0, Placement("top-right", 2), 64, defense=LGS(), lam=2.3, steps=10)
        >>> patch = attack.fit(itertools.repeat((images, labels)), channels=images.shape[1])
        >>> adv_images = attack(images, labels)  # the patch pasted at its placement
    """

    name = "lavan-adaptive"

    def __init__(self, model, size: int, target: int, placement: Placement, image_size: int, *,
                 defense: Defense | None = None, lam: float | None = None,
                 grad_options: dict[str, str] | None = None,
                 record_every: int | None = 25, eval_chunk: int = 256, **lavan_kwargs):
        super().__init__(model, size, target, placement, image_size, **lavan_kwargs)
        self.defense = defense if defense is not None else NoDefense()
        if self.defense.uses_lambda and lam is None:
            raise PatchbenchError(f"adaptive attack through {self.defense.name} needs a λ")
        self.lam = float(lam) if (lam is not None and self.defense.uses_lambda) else None
        self.grad_options = self.defense.resolve_grad_options(grad_options)
        if record_every is not None and (not isinstance(record_every, int) or record_every < 1):
            raise PatchbenchError(f"record_every must be an integer >= 1, got {record_every!r}")
        self.record_every = record_every
        self.eval_chunk = eval_chunk
        self.history: list[dict] = []
        self.snapshots: list[Patch] = []
        self._holdout: tuple[torch.Tensor, torch.Tensor] | None = None

    def record_steps(self) -> list[int]:
        every = self.record_every or self.steps
        return sorted({0, *range(every, self.steps + 1, every), self.steps})

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable T (Eq. 13), as the defense declares it."""
        return self.defense.differentiable(x, self.lam, self.model, self.grad_options)

    def defended_predictions(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predictions for x with δ at the test placement through the real defense at λ."""
        top, left = self.placement.offset(self.image_size, self.size)
        preds = []
        for start in range(0, len(x), self.eval_chunk):
            xa = paste(x[start:start + self.eval_chunk], delta, mask, top, left)
            maps = self.defense.maps(xa, self.model)
            with torch.no_grad():
                preds.append(self.model(self.defense.apply(xa, maps, self.lam)).argmax(1))
        return torch.cat(preds)

    def progress_label(self) -> str:
        return f"{self.name}/{self.defense.name} {self.size}px"

    def extra_meta(self) -> dict:
        return {"adaptive_defense": self.defense.name, "lam": self.lam, "defense_params": self.defense.params(),
                "record_every": self.record_every, "grad_options": dict(self.grad_options)}

    # ---- LaVAN's hooks -----------------------------------------------------------------------

    def begin(self, it, delta, mask) -> None:
        if self._holdout is None:
            self._holdout = next(it)
        hx, hy = self._holdout
        keep = hy != self.target
        if not bool(keep.any()):
            raise PatchbenchError("the held-out batch has no non-target images")
        self._hx, self._hy = hx[keep].to(self.device), hy[keep].to(self.device)
        self._record = set(self.record_steps())
        self.history, self.snapshots = [], []
        self._t_start, self._record_s, self._loss = time.perf_counter(), 0.0, None
        self._snapshot(0, delta, mask)

    def after_step(self, step, delta, mask, logits, labels, loss):
        self._loss = float(loss.detach())
        if step not in self._record:
            return None
        self._snapshot(step, delta, mask)
        return {"loss": f"{self._loss:.3f}", "success": f"{self.history[-1]['success_rate']:.2f}"}

    def _snapshot(self, step: int, delta: torch.Tensor, mask: torch.Tensor) -> None:
        t = time.perf_counter()
        d = delta.detach().clone()
        hits = int((self.defended_predictions(self._hx, d, mask) == self.target).sum())
        rate = hits / len(self._hy)
        self._record_s += time.perf_counter() - t
        train_s = round(time.perf_counter() - self._t_start - self._record_s, 3)
        self.history.append({"step": step, "success_rate": rate, "hits": hits, "n": len(self._hy),
                             "train_loss": self._loss, "train_seconds": train_s})
        meta = {**self.base_meta(), **self.extra_meta(), "step": step, "train_seconds": train_s,
                "attack_step": step, "attack_through": self.defense.name,
                "holdout_success_rate": rate, "holdout_n": len(self._hy)}
        self.snapshots.append(Patch(d.cpu(), mask.cpu(), meta))

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None,
            holdout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
        """Optimize δ through T for ``steps`` batches; record history and snapshots.

        ``holdout``: the fixed (images, labels) batch the history's success rate is measured on
        (only its non-target images count); None sets the first batch of ``batches`` aside.
        Returns the final patch (the last snapshot).
        """
        self._holdout = holdout
        traced = super().fit(batches, channels)
        for p in self.snapshots:
            p.meta["record_seconds"] = round(self._record_s, 2)
        self.snapshots[-1].meta.update(loss_trace=traced.meta["loss_trace"], hit_trace=traced.meta["hit_trace"])
        self.patch = self.snapshots[-1]
        return self.patch


def settings_entry(entries: list):
    """The preset attack entry (``attacks:``) whose settings the adaptive attack takes: the first entry of
    the attack it extends (LaVAN), else the first entry (None: no entry)."""
    return next((a for a in entries if a.name == LaVAN.name), entries[0] if entries else None)
