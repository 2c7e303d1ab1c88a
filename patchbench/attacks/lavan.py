"""LaVAN: Localized and Visible Adversarial Noise (Karmon et al., ICML 2018).

ICAART 2022 Eq. 3: x' = (1 - m) ⊙ x + m ⊙ δ, and δ maximizes M(ȳ|x') - M(ŷ|x'), the target
logit minus the source (true-class) logit, pre-softmax. δ is optimized by SGD with momentum and
kept in [0, 1]; the patch is trained at the placement it is tested at (or at random locations,
``random_placement=True``).
"""

from __future__ import annotations

import time
from typing import Iterable

import torch
from tqdm.auto import tqdm

from patchbench.attacks.patch import Patch, PatchAttack, Placement, paste


class LaVAN(PatchAttack):
    name = "lavan"

    def __init__(self, model, size: int, target: int, placement: Placement, image_size: int, *,
                 steps: int = 200, lr: float = 0.05, momentum: float = 0.9,
                 lr_milestones: Iterable[int] = (), lr_gamma: float = 0.1,
                 random_placement: bool = False, seed: int = 0, progress: bool = True):
        super().__init__(model, size, target, placement, image_size)
        self.steps, self.lr, self.momentum = steps, lr, momentum
        self.lr_milestones, self.lr_gamma = list(lr_milestones), lr_gamma
        self.random_placement = random_placement
        self.seed = seed
        self.progress = progress

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative of Eq. 3's objective: -(z_target - z_source), averaged over the batch."""
        z_target = logits[:, self.target]
        z_source = logits.gather(1, labels[:, None]).squeeze(1)
        return -(z_target - z_source).mean()

    def _offsets(self, n: int, gen: torch.Generator, device: torch.device):
        if not self.random_placement:
            return self.placement.offset(self.image_size, self.size)
        hi = self.image_size - self.size + 1
        top = torch.randint(0, hi, (n,), generator=gen).to(device)
        left = torch.randint(0, hi, (n,), generator=gen).to(device)
        return top, left

    def training_images(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor,
                        gen: torch.Generator) -> torch.Tensor:
        """x' of Eq. 3 for one training batch (the fixed or a random placement per image)."""
        top, left = self._offsets(len(x), gen, x.device)
        return paste(x, delta, mask, top, left)

    @classmethod
    def from_config(cls, model, cfg, size: int, image_size: int, progress: bool = True) -> "LaVAN":
        """Build from an :class:`~patchbench.config.AttackConfig` (the preset's attack entry)."""
        return cls(model, size, cfg.target, Placement(cfg.placement, cfg.margin), image_size,
                   steps=cfg.steps, lr=cfg.lr, momentum=cfg.momentum, lr_milestones=cfg.lr_milestones,
                   lr_gamma=cfg.lr_gamma, random_placement=cfg.random_placement, seed=cfg.seed,
                   progress=progress)

    # ---- hooks: what a variant changes without copying the loop ----------------------------

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """What the classifier sees of a patched training batch (identity; an adaptive attack
        puts the defense here, ICAART Eq. 13)."""
        return x

    def begin(self, it, delta: torch.Tensor, mask: torch.Tensor) -> None:
        """Called once before the first step with the batch iterator (e.g. to record step 0)."""

    def after_step(self, step: int, delta: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor,
                   labels: torch.Tensor, loss: torch.Tensor) -> dict | None:
        """Called after every step (1-based) with δ already clamped; returns the progress-bar postfix."""
        hits = int((logits.argmax(1) == self.target).sum())
        return {"loss": f"{loss.item():.3f}", "hit": f"{hits / max(len(labels), 1):.2f}"}

    def progress_label(self) -> str:
        return f"{self.name} {self.size}px"

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None) -> Patch:
        """Optimize δ over ``steps`` batches of (images, labels) drawn from ``batches``."""
        device = self.device
        gen = torch.Generator().manual_seed(self.seed)
        channels = channels or 3
        delta = torch.rand(channels, self.size, self.size, generator=gen).to(device).requires_grad_(True)
        mask = torch.ones(1, self.size, self.size, device=device)
        opt = torch.optim.SGD([delta], lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.lr_milestones, self.lr_gamma)
        self.model.eval()
        t0 = time.perf_counter()
        it = iter(batches)
        self.begin(it, delta, mask)
        bar = tqdm(range(1, self.steps + 1), desc=self.progress_label(), disable=not self.progress, leave=False)
        for step in bar:
            x, y = next(it)
            logits = self.model(self.transform(self.training_images(x, delta, mask, gen)))
            loss = self.loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(0, 1)
            postfix = self.after_step(step, delta, mask, logits, y, loss)
            if postfix:
                bar.set_postfix(postfix)
        self.patch = Patch(delta.detach().cpu(), mask.cpu(), {
            **self.base_meta(), "train_seconds": round(time.perf_counter() - t0, 2), **self.extra_meta()})
        return self.patch

    def base_meta(self) -> dict:
        return {
            "attack": self.name, "size_px": self.size, "target": self.target,
            "placement": self.placement.kind, "margin": self.placement.margin,
            "random_placement": self.random_placement, "steps": self.steps, "lr": self.lr,
            "momentum": self.momentum, "lr_milestones": self.lr_milestones, "seed": self.seed,
            "image_size": self.image_size, "area_pct": round(100 * self.size ** 2 / self.image_size ** 2, 3),
        }

    def extra_meta(self) -> dict:
        """Attack-specific fields for the patch's metadata (subclasses add theirs)."""
        return {}

    @torch.no_grad()
    def success_rate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Fraction of images classified as the target with the patch at the test placement."""
        hits = total = 0
        for x, _ in batches:
            pred = self.model(self.apply(x, self.patch)).argmax(1)
            hits += int((pred == self.target).sum())
            total += len(x)
        return hits / max(total, 1)
