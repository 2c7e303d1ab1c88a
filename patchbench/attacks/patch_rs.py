"""Patch-RS: a gradient-free random search for a universal patch, the universal-patch attack of
Sparse-RS (Croce, Andriushchenko, Singh, Flammarion & Hein, "Sparse-RS: a versatile framework for
query-efficient sparse black-box adversarial attacks", AAAI 2022; reference code fra31/sparse-rs,
``rs_attacks.py``, ``RSAttack.attack_single_run``, branch ``norm == 'patches_universal'``).

What it follows of the reference:

* the start: every channel of every patch column set at random to 0 or 1 (vertical stripes; the
  reference's ``random_choice([1, c, 1, s]).clamp(0., 1.)``);
* a candidate: a square window of side ``s_it = max(int(sqrt(p_it) · s), 1)`` at a uniform position
  inside the patch, each channel of the whole window shifted by a random ±1 and clipped to [0, 1]
  (``patch_new[..., window] += random_choice([c, 1, 1])``, ``clamp_(0., 1.)``): pixels stay 0 or 1,
  the window becomes one random corner of the colour cube;
* ``p_it``, the share of the patch a candidate changes: ``p_init`` = 0.8, divided by 2, 4, 8, 16, 32,
  32, 64, 64, 128 once the iteration, rescaled to 10 000 (``resc_schedule``: ``int(it / n_queries ·
  10000)``), passes 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (``p_selection``, its patch branch);
* the acceptance: the candidate replaces the patch when its loss summed over a fixed batch of images
  is lower and it fools at least as many of them (``loss_new < loss_batch and n_succs_new >= n_succs``;
  the start is never scored: ``loss_batch`` starts at 1e10, so the first candidate is always taken);
* with ``random_placement``, each image of the batch keeps one random location for the whole run (the
  reference's ``loc``, drawn once); otherwise every image has the patch at the attack's test placement.

Where ours differs: the loss is LaVAN's (Eq. 3's margin, target logit − true logit; the reference's
targeted loss is the cross-entropy to the target), so that LaVAN and Patch-RS optimise one objective
and differ only in how (gradients vs random search); the reference triples its batch (three random
locations per image), ours uses each image once. The budget is counted in queries, one query being
one image through the model. Built from a preset's attack entry (:meth:`from_config`, the LaVAN
entry's settings) it spends LaVAN's number of queries with that entry: ``steps`` iterations, each one
forward pass of a fixed batch of ``batch_size × restarts`` training images (the first ``restarts``
batches of the stream, the images LaVAN's k restarts see at one step), forward only: no gradient.
Carlini et al. 2019's checklist asks for such a search beside the gradient attack, at equal queries
(:func:`patchbench.audit.comparisons.random_beats_gradient`).
"""

from __future__ import annotations

import math
import time
from typing import Iterable

import torch

from patchbench.attacks.base import register_attack
from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch, paste
from patchbench.util import progress_bar

# the reference's p_selection for patches: (rescaled iteration past which, divisor of p_init)
P_SCHEDULE = ((8000, 128), (6000, 64), (4000, 64), (2000, 32), (1000, 32), (500, 16), (200, 8), (50, 4), (10, 2))


def window_share(it: int, iterations: int, p_init: float = 0.8) -> float:
    """``p_it``: the share of the patch the candidate of iteration ``it`` (0-based) of ``iterations``
    changes (Sparse-RS ``p_selection`` with ``resc_schedule``, patch branch)."""
    scaled = int(it / iterations * 10000)
    return next((p_init / div for past, div in P_SCHEDULE if scaled > past), p_init)


@register_attack
class PatchRS(LaVAN):
    r"""Patch-RS, the universal-patch attack of the paper 'Sparse-RS: a versatile framework for
    query-efficient sparse black-box adversarial attacks' [https://arxiv.org/abs/2006.12834]
    (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022): random search, no gradient.

    Distance Measure : L0 (a square patch)

    Universal targeted patch by random search (see the module docstring); LaVAN's loss, success
    criterion, placement and metadata, with the optimisation loop replaced.

    Arguments:
        model, size, target, placement, image_size: as :class:`~patchbench.attacks.lavan.LaVAN`'s.
        p_init (float): the share of the patch the first candidates change (then halved on
            Sparse-RS's schedule). (Default: 0.8)
        **lavan_kwargs: :class:`LaVAN`'s settings (``steps`` = iterations, ``random_placement``, ``seed``).

    Shape: ``fit``: batches of (:math:`(B, C, H, W)`, :math:`(B)`) -> a Patch of :math:`(C, s, s)` pixels; ``forward``: :math:`(N, C, H, W)` kept.

    Examples::
        >>> attack = PatchRS(model, 8, 0, Placement("top-right", 2), 64, steps=40)
        >>> patch = attack.fit(itertools.repeat((images, labels)), channels=images.shape[1])
        >>> adv_images = attack(images, labels)  # the patch pasted at its placement
    """

    name = "patch_rs"

    def __init__(self, model, size: int, target: int, placement, image_size: int, *, p_init: float = 0.8, **lavan_kwargs):
        super().__init__(model, size, target, placement, image_size, **lavan_kwargs)
        self.p_init = p_init
        self.queries = 0

    def progress_label(self) -> str:
        return f"{self.name} {self.size}px"

    def base_meta(self) -> dict:
        meta = super().base_meta()
        for key in ("lr", "momentum", "lr_milestones", "optimizer", "schedule"):  # no optimiser: not its settings
            meta.pop(key)
        return meta

    def extra_meta(self) -> dict:
        return {"queries": self.queries, "p_init": self.p_init, "search": "sparse-rs patches_universal"}

    @torch.no_grad()
    def _score(self, x: torch.Tensor, y: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor, top, left):
        """Per-image loss (LaVAN's, not averaged) and hits of ``pixels`` pasted on the fixed batch."""
        logits = self.model(paste(x, pixels, mask, top, left))
        z_source = logits.gather(1, y[:, None]).squeeze(1)
        if self.target is None:
            margin = z_source - logits.scatter(1, y[:, None], float("-inf")).amax(1)
        else:
            margin = z_source - logits[:, self.target]
        return margin, self.hits(logits.argmax(1), y)

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None,
            holdout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
        """``steps`` iterations of the search on one fixed batch: the first ``restarts`` batches of
        ``batches`` (``holdout`` is not used: there is one search, nothing to choose among)."""
        device = self.device
        gen = torch.Generator().manual_seed(self.seed)
        c, s = channels or 3, self.size
        it = iter(batches)
        parts = [next(it) for _ in range(self.restarts)]
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).to(device)
        if self.random_placement:  # one location per image for the whole run, as the reference's loc
            hi = self.image_size - s + 1
            top, left = (torch.randint(0, hi, (len(x),), generator=gen).to(device) for _ in range(2))
        else:
            top, left = self.placement.offset(self.image_size, s)
        mask = torch.ones(1, s, s, device=device)
        stripes = (torch.randint(0, 2, (c, 1, s), generator=gen) * 2 - 1).clamp(0, 1).float()
        best = stripes.expand(c, s, s).clone().to(device)
        self.model.eval()
        t0 = time.perf_counter()
        best_loss, best_hits = math.inf, 0  # as the reference: the start is never scored, the first candidate taken
        losses, hit_rates = [], []
        bar = progress_bar(range(self.steps), self.progress, desc=self.progress_label())
        for step in bar:
            side = max(int(math.sqrt(window_share(step, self.steps, self.p_init)) * s), 1)
            r, q = (int(v) for v in torch.randint(0, s - side + 1, (2,), generator=gen))
            shift = (torch.randint(0, 2, (c, 1, 1), generator=gen) * 2 - 1).float().to(device)
            cand = best.clone()
            cand[:, r:r + side, q:q + side] = (cand[:, r:r + side, q:q + side] + shift).clamp(0, 1)
            margin, hit = self._score(x, y, cand, mask, top, left)
            loss, hits = float(margin.sum()), int(hit.sum())
            if loss < best_loss and hits >= best_hits:
                best, best_loss, best_hits = cand, loss, hits
            losses.append(best_loss / len(x))
            hit_rates.append(best_hits / len(x))
            bar.set_postfix({"loss": f"{losses[-1]:.3f}", "hit": f"{hit_rates[-1]:.2f}"}, refresh=False)
        self.queries = self.steps * len(x)  # one forward of the batch per candidate
        self.patch = Patch(best.cpu(), mask.cpu(), {
            **self.base_meta(), "train_seconds": round(time.perf_counter() - t0, 2), **self.extra_meta(),
            "loss_trace": [round(v, 6) for v in losses], "hit_trace": [round(v, 4) for v in hit_rates]})
        return self.patch
