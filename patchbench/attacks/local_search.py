"""Foolbox 2's ``LocalSearchAttack`` (Narodytska & Kasiviswanathan, "Simple Black-Box Adversarial
Perturbations for Deep Networks", CVPR-W 2017, Algorithm LocSearchAdv), one of the N-pixel family
BMVC 2023 ran from Foolbox, batched over images in torch. Untargeted, black box (probabilities only).

The algorithm, per image, as Foolbox 2.x writes it (``foolbox/attacks/localsearch.py``,
``LocalSearchAttack.__call__``, defaults r=1.5, p=10, d=5, t=5, R=150; ``rounds`` here is R):

* work in ``I = (x − (min+max)/2) / (max − min)``, bounds LB = −½, UB = ½;
* start from ``n = min(int(0.1·h·w), 128)`` random pixel locations;
* each round: keep a random subset of at most 128 locations; for each, a copy of I with that pixel
  set to ``p · sign(I)`` per channel (far outside the bounds: the model sees it, Foolbox's
  ``strict=False``); score = softmax probability of the true class; the ``t`` lowest scores are the
  round's pixels, each channel of which becomes ``cyclic(r · I)``: r·I, plus (UB − LB) when below
  LB, minus it when above UB;
* if the model now misclassifies I (mapped back to [min, max]): return it;
* the next round's locations are every pixel within ``d`` (a (2d+1)² square) of the round's pixels,
  inside the image.

After ``rounds`` rounds without success the clean image is returned (Foolbox returns no
adversarial). Choices where the text leaves one (each a parameter or stated):

* the round's random subset: the candidate locations ordered by a fresh ``torch.rand(B, h·w)``
  (the first 128), where Foolbox permutes its list; the same uniform subset;
* ties among scores keep the earlier location in that order (a stable sort; numpy's default
  quicksort in Foolbox is not stable);
* ``region`` (top, left, height, width) confines every location to a box (BMVC Sec. 5), as the
  image bounds confine Foolbox's; pixel index ``i`` of the box is ``(top + i // width, left + i % width)``.

Random draws per call on B images (one CPU ``torch.Generator`` seeded at construction):
``torch.rand(B, h·w)`` for the starting locations (the first n of its argsort), then one
``torch.rand(B, h·w)`` per round, drawn for every image whether it is still running or not.
``last_queries``: the clean check, then per round the scored copies plus the check.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.attacks.base import register_attack
from patchbench.attacks.pixel_search import region_of
from patchbench.attacks.single_pixel import PixelAttack
from patchbench.errors import check, is_int, is_number
from patchbench.util import eval_mode

SUBSET = 128  # Foolbox: "random subset for efficiency", at most 128 locations per round


@register_attack
class LocalSearch(PixelAttack):
    r"""LocalSearchAdv in the paper 'Simple Black-Box Adversarial Perturbations for Deep Networks'
    [https://arxiv.org/abs/1612.06299] (Narodytska & Kasiviswanathan, CVPR-W 2017), as Foolbox 2's
    LocalSearchAttack writes it (module docstring).

    Distance Measure : L0 (the pixels of ``rounds`` rounds, ``t`` each)

    Foolbox 2's LocalSearchAttack, batched (see the module docstring).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        r (float): the perturbation factor of a chosen pixel (r · I, cyclic). (Default: 1.5)
        p (float): the probe value p · sign(I) a candidate pixel is scored at. (Default: 10.0)
        d (int): the next round's neighbourhood: pixels within d of the chosen ones. (Default: 5)
        t (int): pixels chosen per round. (Default: 5)
        rounds (int): rounds R. (Default: 150)
        region, seed, eval_batch: the pixels' box (top, left, height, width), the seed of their order, images per forward pass.

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> adv_images = LocalSearch(model, rounds=150)(images, labels)
    """

    name = "local_search"
    steps_param = "rounds"

    @property
    def pixels(self) -> int:
        """At most t pixels per round change: the L0 bound of a run (Foolbox sets none)."""
        return self.rounds * self.t

    def __init__(self, model: nn.Module, r: float = 1.5, p: float = 10.0, d: int = 5, t: int = 5, rounds: int = 150,
                 region: Sequence[int] | None = None, seed: int = 0, eval_batch: int = 256):
        who = self.name
        check(is_number(r) and 0 <= r <= 2, f"{who}: r (cyclic perturbation) must be a number in [0, 2], got {r!r}")
        check(is_number(p) and p > 0, f"{who}: p (pixel sensitivity perturbation) must be a number > 0, got {p!r}")
        check(is_int(d) and d >= 0, f"{who}: d (neighbourhood half side) must be an integer >= 0, got {d!r}")
        check(is_int(t) and t >= 1, f"{who}: t (pixels per round) must be an integer >= 1, got {t!r}")
        check(is_int(rounds) and rounds >= 1, f"{who}: rounds (Foolbox's R) must be an integer >= 1, got {rounds!r}")
        super().__init__(model, region, seed, eval_batch)
        self.r, self.p, self.d, self.t, self.rounds = float(r), float(p), d, t, rounds

    def __repr__(self) -> str:
        return (f"LocalSearch(r={self.r:g}, p={self.p:g}, d={self.d}, t={self.t}, rounds={self.rounds}, "
                f"region={self.region}, seed={self.seed})")

    def scores(self, work: torch.Tensor, labels: torch.Tensor, locs: torch.Tensor, box) -> torch.Tensor:
        """True-class probability of each (image, location) copy with that pixel set to p·sign(I):
        A×S, +inf where ``locs`` is -1 (no location)."""
        top, left, _, w = box
        a, s = locs.shape
        out = torch.full((a, s), float("inf"), device=work.device, dtype=torch.float64)
        img, slot = (locs >= 0).nonzero(as_tuple=True)
        for c in range(0, len(img), self.eval_batch):
            i, j = img[c:c + self.eval_batch], slot[c:c + self.eval_batch]
            loc = locs[i, j]
            copies = work[i].clone()
            n = torch.arange(len(i), device=work.device)
            rows, cols = top + loc // w, left + loc % w
            copies[n, :, rows, cols] = self.p * copies[n, :, rows, cols].sign()
            probs = self.model(copies + 0.5).double().softmax(1)
            out[i, j] = probs.gather(1, labels[i][:, None]).squeeze(1)
        return out

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        labels = labels.to(x.device)
        b, dev, gen = len(x), x.device, self.generator
        box = top, left, h, w = region_of(self.region, x, self.name)
        work = x - 0.5  # bounds [0, 1]: (x - (min + max) / 2) / (max - min)
        start = torch.rand(b, h * w, generator=gen).argsort(1)[:, : min(int(0.1 * h * w), SUBSET)].to(dev)
        cand = torch.zeros(b, h * w, dtype=torch.bool, device=dev).scatter_(1, start, True)
        adv = x.clone()
        with eval_mode(self.model):
            done = self.model(x).argmax(1) != labels  # already misclassified: returned unchanged
            success = done.clone()
            queries = torch.ones(b, dtype=torch.long, device=dev)
            for _ in range(self.rounds):
                keys = torch.rand(b, h * w, generator=gen).to(dev)
                act = (~done).nonzero().squeeze(1)
                if not len(act):
                    continue  # keep drawing: an image's draws do not depend on the others
                keyed = keys[act].masked_fill(~cand[act], float("inf"))
                sel = keyed.argsort(1)[:, :SUBSET]
                locs = torch.where(keyed.gather(1, sel).isfinite(), sel, -1)  # A×S, -1: fewer than S candidates
                prob = self.scores(work[act], labels[act], locs, box)
                queries[act] += (locs >= 0).sum(1)
                order = prob.argsort(dim=1, stable=True)[:, : self.t]
                chosen = torch.where(prob.gather(1, order).isfinite(), locs.gather(1, order), -1)  # A×t
                ok = chosen >= 0
                ai, ti = ok.nonzero(as_tuple=True)  # distinct locations per image: no write collides
                img, loc = act[ai], chosen[ai, ti]
                rows, cols = top + loc // w, left + loc % w
                new = self.r * work[img, :, rows, cols]  # cyclic(r · I), per channel
                work[img, :, rows, cols] = torch.where(new < -0.5, new + 1.0, torch.where(new > 0.5, new - 1.0, new))
                queries[act] += 1
                hit = self.model(work[act] + 0.5).argmax(1) != labels[act]
                adv[act[hit]] = work[act[hit]] + 0.5
                success[act[hit]] = True
                done[act[hit]] = True
                picked = torch.zeros(len(act), h * w, device=dev).scatter_add_(1, chosen.clamp(min=0), ok.float())
                near = F.max_pool2d(picked.view(-1, 1, h, w), 2 * self.d + 1, stride=1, padding=self.d)
                cand[act] = near.view(len(act), -1) > 0
        self.last_success, self.last_queries = success.cpu(), queries.cpu()
        return adv
