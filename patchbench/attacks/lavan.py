"""LaVAN: Localized and Visible Adversarial Noise (Karmon et al., ICML 2018).

ICAART 2022 Eq. 3: x' = (1 - m) ⊙ x + m ⊙ δ, and δ maximizes M(ȳ|x') - M(ŷ|x'), the target
logit minus the source (true-class) logit, pre-softmax. δ is kept in [0, 1]; the patch is
trained at the placement it is tested at (or at random locations, ``random_placement=True``).

Optimizer (``optimizer``, ``schedule``; an attack's number is only as good as its optimisation):

* ``"sgd"``: SGD with momentum, the ICAART presets' setting (Sec. 4.1: lr 1 → 0.1 → 0.01 at
  fixed epochs, ``schedule="multistep"`` with ``lr_milestones``);
* ``"adam"``: Adam on δ (the optimiser of ART's AdversarialPatchPyTorch and of most patch code);
* ``"sign"``: signed-gradient ascent, δ ← clip(δ − lr·sign(∇loss)), the L∞ steepest step of PGD.

``schedule="cosine"`` decays the step from ``lr`` to ``lr/100`` over the run (``multistep``
multiplies it by ``lr_gamma`` at each milestone). Which combination is strongest is measured,
not assumed: ``benchmarks/bench_patch_attacks.py`` compares them and an independent plain loop
at equal budget on the demo model (numbers in the demo presets' notes).

Restarts (``restarts=k``): k patches from k random starts are optimised *together* — every
training batch is pasted with each of the k patches (one k·B batch, one forward and backward),
so k restarts cost about one run on a device with room — and the patch with the highest
targeted success on a held-out batch of *training* images (``fit(..., holdout=...)``) is kept.
``k=1`` is exactly the single-start attack (same random numbers).
"""

from __future__ import annotations

import time
from typing import Iterable

import torch

from patchbench.attacks.base import register_attack
from patchbench.attacks.optimizers import OPTIMIZERS, SCHEDULES, patch_optimizer
from patchbench.attacks.patch import Patch, PatchAttack, Placement, paste
from patchbench.errors import PatchbenchError
from patchbench.util import progress_bar


@register_attack
class LaVAN(PatchAttack):
    r"""LaVAN in the paper 'LaVAN: Localized and Visible Adversarial Noise'
    [https://arxiv.org/abs/1801.02608] (Karmon, Zoran & Goldberg, ICML 2018), as ICAART 2022 Eq. 3
    writes it: x' = (1 − m) ⊙ x + m ⊙ δ, δ maximizing M(ȳ|x') − M(ŷ|x') (pre-softmax logits).

    Distance Measure : L0 (a square patch of ``size`` × ``size`` pixels, any values in [0, 1])

    The one patch-optimisation loop every patch attack of patchbench derives from: a variant
    overrides ``loss``, ``training_images``, ``transform``, ``begin`` or ``after_step`` (module
    docstring: optimizers, schedules, restarts).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        size (int): the patch's side s in pixels.
        target (int | None): the target class ȳ (None: untargeted, any wrong class).
        placement (Placement): where the patch is tested (a corner with a margin, ``center``, ``random``).
        image_size (int): the images' side H = W.
        steps (int): optimizer steps, one batch each. (Default: 200)
        lr (float): step size. (Default: 0.05)
        momentum (float): SGD momentum. (Default: 0.9)
        lr_milestones (iterable of int): steps at which lr is multiplied by ``lr_gamma``. (Default: ())
        lr_gamma (float): the multistep factor. (Default: 0.1)
        random_placement (bool): train at random locations (tested at ``placement``). (Default: False)
        seed (int): seed of the initial δ and of the random locations. (Default: 0)
        progress (bool): show a progress bar. (Default: True)
        optimizer (str): ``sgd`` | ``adam`` | ``sign``. (Default: ``sgd``)
        schedule (str): ``multistep`` | ``cosine``. (Default: ``multistep``)
        restarts (int): random starts optimised together, the best kept on ``fit``'s holdout. (Default: 1)

    Shape: ``fit``: batches of (:math:`(B, C, H, W)`, :math:`(B)`) -> a Patch of :math:`(C, s, s)` pixels; ``forward``: :math:`(N, C, H, W)` kept.

    Examples::
        >>> attack = LaVAN(model, size=8, target=0, placement=Placement("top-right", 2), image_size=64, steps=20)
        >>> patch = attack.fit(itertools.repeat((images, labels)), channels=images.shape[1])
        >>> adv_images = attack(images, labels)  # the patch pasted at its placement
    """
    name = "lavan"

    def __init__(self, model, size: int, target: int, placement: Placement, image_size: int, *,
                 steps: int = 200, lr: float = 0.05, momentum: float = 0.9,
                 lr_milestones: Iterable[int] = (), lr_gamma: float = 0.1,
                 random_placement: bool = False, seed: int = 0, progress: bool = True,
                 optimizer: str = "sgd", schedule: str = "multistep", restarts: int = 1):
        super().__init__(model, size, target, placement, image_size)
        if optimizer not in OPTIMIZERS or schedule not in SCHEDULES:
            raise PatchbenchError(f"{self.name}: optimizer must be one of {OPTIMIZERS} and schedule one of {SCHEDULES}")
        if not (isinstance(restarts, int) and restarts >= 1):
            raise PatchbenchError(f"{self.name}: restarts must be an integer >= 1, got {restarts!r}")
        self.steps, self.lr, self.momentum = steps, lr, momentum
        self.lr_milestones, self.lr_gamma = list(lr_milestones), lr_gamma
        self.random_placement = random_placement
        self.seed = seed
        self.progress = progress
        self.optimizer, self.schedule, self.restarts = optimizer, schedule, restarts
        self.restart_success: list[float] = []

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative of Eq. 3's objective: -(z_target - z_source), averaged over the batch; untargeted
        (``target=None``): z_source - max_{j≠source} z_j (push the true class below the runner-up)."""
        z_source = logits.gather(1, labels[:, None]).squeeze(1)
        if self.target is None:
            others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
            return (z_source - others).mean()
        return -(logits[:, self.target] - z_source).mean()

    def hits(self, pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Success per image: the target class, or (untargeted) any class but the true one."""
        return pred != labels if self.target is None else pred == self.target

    def _offsets(self, n: int, gen: torch.Generator, device: torch.device):
        if self.placement.fixed and not self.random_placement:
            return self.placement.offset(self.image_size, self.size)
        if self.placement.region is not None:  # uniform over the positions inside the placement mask
            return self.placement.sample(n, self.image_size, self.size, gen, device)
        hi = self.image_size - self.size + 1
        top = torch.randint(0, hi, (n,), generator=gen).to(device)
        left = torch.randint(0, hi, (n,), generator=gen).to(device)
        return top, left

    def training_images(self, x: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor,
                        gen: torch.Generator) -> torch.Tensor:
        """x' of Eq. 3 for one training batch and each of the k patches ``delta`` (k×C×s×s):
        k·B images, restart-major (the fixed or a random placement per image)."""
        k = delta.shape[0]
        xk = x.repeat(k, 1, 1, 1) if k > 1 else x
        top, left = self._offsets(len(xk), gen, x.device)
        return paste(xk, delta.repeat_interleave(len(x), 0) if k > 1 else delta[0], mask, top, left)

    @classmethod
    def from_config(cls, model, cfg, image_size: int, progress: bool = False) -> "LaVAN":
        """Build from an :class:`~patchbench.config.AttackConfig` (the preset's attack entry, one size)."""
        size = cls.config_size(cfg, image_size)
        return cls(model, size, cfg.target, cls.config_placement(cfg), image_size, progress=progress,
                   **cls.config_kwargs(cfg))

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        """The constructor's keyword arguments read from an AttackConfig (a variant adds its own)."""
        return dict(steps=cfg.steps, lr=cfg.lr, momentum=cfg.momentum, lr_milestones=cfg.lr_milestones,
                    lr_gamma=cfg.lr_gamma, random_placement=cfg.random_placement, seed=cfg.seed,
                    optimizer=cfg.optimizer, schedule=cfg.schedule, restarts=cfg.restarts)

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
        hits = int(self.hits(logits.argmax(1), labels.repeat(len(logits) // len(labels))).sum())
        return {"loss": f"{loss.item():.3f}", "hit": f"{hits / max(len(logits), 1):.2f}"}

    def progress_label(self) -> str:
        return f"{self.name} {self.size}px" + (f" ×{self.restarts}" if self.restarts > 1 else "")

    # ---- the loop ---------------------------------------------------------------------------

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None,
            holdout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
        """Optimize δ over ``steps`` batches of (images, labels) drawn from ``batches``.

        With ``restarts > 1`` the k patches are trained together and the one with the highest
        targeted success on ``holdout`` (training images, never evaluation images) is kept.
        """
        device = self.device
        gen = torch.Generator().manual_seed(self.seed)
        channels = channels or 3
        k = self.restarts
        if k > 1 and holdout is None:
            raise PatchbenchError(f"{self.name}: {k} restarts need a held-out batch of training images to choose from")
        delta = torch.rand(k, channels, self.size, self.size, generator=gen).to(device).requires_grad_(True)
        mask = torch.ones(1, self.size, self.size, device=device)
        opt, sched = patch_optimizer(delta, self.optimizer, self.schedule, lr=self.lr, momentum=self.momentum, steps=self.steps,
                                     lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma)
        self.model.eval()
        t0 = time.perf_counter()
        it = iter(batches)
        self.begin(it, delta[0], mask)
        bar = progress_bar(range(1, self.steps + 1), self.progress, desc=self.progress_label())
        losses, hit_rates = [], []  # per step and restart: the attack's path, for the audit (Pintor et al. 2022)
        for step in bar:
            x, y = next(it)
            logits = self.model(self.transform(self.training_images(x, delta, mask, gen)))
            loss = self.loss(logits, y.repeat(k) if k > 1 else y) * k  # a sum over the k independent restarts
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.optimizer == "sign":
                delta.grad.sign_()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(0, 1)
                per = logits.detach().view(k, len(y), -1)  # restart-major
                losses.append(torch.stack([self.loss(per[i], y) for i in range(k)]))
                hit_rates.append(torch.stack([self.hits(per[i].argmax(1), y).float().mean() for i in range(k)]))
            postfix = self.after_step(step, delta[0], mask, logits, y, loss)
            if postfix:
                bar.set_postfix(postfix, refresh=False)
        best = 0
        if k > 1:
            self.restart_success = [self.holdout_success(holdout, delta[i].detach()) for i in range(k)]
            best = max(range(k), key=lambda i: self.restart_success[i])
        self.patch = Patch(delta[best].detach().cpu(), mask.cpu(), {
            **self.base_meta(), "train_seconds": round(time.perf_counter() - t0, 2), **self.extra_meta(),
            "restart_success": self.restart_success, "restart_chosen": best, **self.traces(losses, hit_rates, best)})
        return self.patch

    @staticmethod
    def traces(losses: list[torch.Tensor], hit_rates: list[torch.Tensor], best: int) -> dict:
        """The kept restart's path: its loss and its success on the training batch at every step
        (before the step's update: the patch that produced the step's logits)."""
        if not losses:
            return {"loss_trace": [], "hit_trace": []}
        return {"loss_trace": [round(v, 6) for v in torch.stack(losses)[:, best].tolist()],
                "hit_trace": [round(v, 4) for v in torch.stack(hit_rates)[:, best].tolist()]}

    @torch.no_grad()
    def holdout_success(self, holdout: tuple[torch.Tensor, torch.Tensor], pixels: torch.Tensor, chunk: int = 256) -> float:
        """Success of ``pixels`` at the test placement on ``holdout``: targeted on its non-target images,
        untargeted on all of them."""
        x, y = holdout
        keep = y != self.target if self.target is not None else torch.ones_like(y, dtype=torch.bool)
        x, y = x[keep].to(self.device), y[keep].to(self.device)
        mask = torch.ones(1, self.size, self.size, device=self.device)
        place = self.placement.paste  # the test placement (a random one: image i's position from its index)
        hits = sum(int(self.hits(self.model(place(x[i:i + chunk], pixels, mask, torch.arange(i, i + len(x[i:i + chunk]))))
                                 .argmax(1), y[i:i + chunk]).sum())
                   for i in range(0, len(x), chunk))
        return hits / max(len(x), 1)

    def base_meta(self) -> dict:
        return {
            "attack": self.name, "size_px": self.size, "target": self.target,
            **self.placement.meta(),
            "random_placement": self.random_placement, "steps": self.steps, "lr": self.lr,
            "momentum": self.momentum, "lr_milestones": self.lr_milestones, "seed": self.seed,
            "optimizer": self.optimizer, "schedule": self.schedule, "restarts": self.restarts,
            "image_size": self.image_size, "area_pct": round(100 * self.size ** 2 / self.image_size ** 2, 3),
        }

    def extra_meta(self) -> dict:
        """Attack-specific fields for the patch's metadata (subclasses add theirs)."""
        return {}

    @torch.no_grad()
    def success_rate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Fraction of images classified as the target (untargeted: misclassified) with the patch at the
        test placement."""
        hits = total = 0
        for x, y in batches:
            pred = self.model(self.apply(x, self.patch, indices=torch.arange(total, total + len(x)))).argmax(1)
            hits += int(self.hits(pred, y.to(pred.device)).sum())
            total += len(x)
        return hits / max(total, 1)
