"""The N-pixel attack (Su, Vargas and Sakurai, "One pixel attack for fooling deep neural networks",
IEEE TEVC 2019) with differential evolution batched over images *and* population (the operators
and the order of the random draws: :mod:`patchbench.attacks.evolution`; the BMVC 2023 Sec. 5
protocol that confines it to regions: :mod:`patchbench.attacks.regions`).

Untargeted (BMVC 2023 Sec. 3): success is BMVC Eq. 1, argmax f(x') ≠ y with y the true label
(the clean prediction, since images the model already misclassifies are returned unchanged:
Su et al. attack only correctly classified images).

The search (Su et al. Sec. III-B)
---------------------------------
* A candidate is N perturbations, each (row, col, c_1..c_C): positions are continuous and
  rounded *down* (floor) to a pixel of the region, colours lie in [0, 1] (Su et al.'s RGB 0..255
  divided by 255). A candidate replaces the N pixels (it is not added to them). Two of its N
  pixels at the same place: the later one wins, as in a sequential paint.
* Initialisation: positions uniform in the region (Su et al.: U(1, 32) on CIFAR-10); colours
  ~ N(128, 127)/255 clipped to [0, 1] (Su et al.), or uniform on [0, 1] (``init="uniform"``).
* DE/rand/1: x_i' = x_r1 + F (x_r2 - x_r3), r1, r2, r3 distinct and ≠ i, F = ``f`` = 0.5.
  Su et al. use no crossover (``crossover=None``: the child is the mutant); a number CR in
  [0, 1] turns on the binomial crossover of Storn & Price (DE/rand/1/bin) on the flat N·(2+C)
  vector. Children leaving the box (positions outside the region, colours outside [0, 1]; Su et
  al. do not say) are clipped to it (``out_of_bounds="clip"``) or the offending coordinates are
  redrawn uniformly inside it (``"resample"``, scipy's rule).
* Selection: the child replaces its parent (same population index) when its fitness is not
  worse (≤). Fitness: the softmax probability of the true class, lower is better (Su et al.'s
  untargeted fitness).
* Stopping, per image: ``stop_on_success`` stops an image as soon as any evaluated candidate
  is misclassified (Eq. 1); ``early_stop=p`` stops it once its best true-class probability is
  below p (Su et al. use 5 % for their non-targeted attacks; None turns it off). Either one
  stops the image; stopped images are no longer evaluated. Otherwise ``iterations``
  generations run after the initial population (Su et al.: population 400, 100 iterations).
* The returned image carries the best candidate ever evaluated: a misclassified one if there
  was any (the one with the lowest true-class probability among them), else the one with the
  lowest true-class probability. At most N pixels change, all inside the region.

Batching: one generation mutates the population of every still-running image at once (B×P×N×
(2+C) tensors) and evaluates the B×P children in forward passes of at most ``eval_batch``
images, each built by one advanced-indexing scatter of the N pixels into copies of its image.
No Python loop runs over images, individuals or pixels. ``eval_batch`` defaults to 256: on a CPU
the forward's cost per image rises past a few hundred images (activations leave the cache;
small_vgg at 28 px, 1 thread: 0.104 ms at 256, 0.11-0.13 at 1024, 0.15 at 2048); a GPU wants
more.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from patchbench.attacks.base import Attack, register_attack
from patchbench.attacks.evolution import bound, crossover, initial_population, mutate, paint
from patchbench.attacks.regions import Box
from patchbench.errors import PatchbenchError, check, is_int, is_number
from patchbench.util import eval_mode

INITS = ("gaussian", "uniform")
OUT_OF_BOUNDS = ("clip", "resample")


# --------------------------------------------------------------------------------------------
# parameter checks (shared by the constructor and check_config)


def _check_region(region, who: str) -> Box | None:
    if region is None:
        return None
    check(isinstance(region, (list, tuple)) and len(region) == 4 and all(is_int(v) for v in region),
          f"{who}: region must be 4 integers (top, left, height, width), got {region!r}")
    top, left, h, w = (int(v) for v in region)
    check(top >= 0 and left >= 0 and h >= 1 and w >= 1,
          f"{who}: region needs top, left >= 0 and height, width >= 1, got {tuple(region)!r}")
    return top, left, h, w


def check_params(who: str = "npixel", *, pixels=1, population=400, iterations=100, f=0.5, crossover=None,
                 early_stop=0.05, stop_on_success=True, region=None, init="gaussian", out_of_bounds="clip",
                 seed=0, eval_batch=256) -> None:
    """One-line :class:`PatchbenchError` for the first bad parameter of :class:`NPixel`."""
    check(is_int(pixels) and pixels >= 1, f"{who}: pixels must be an integer >= 1, got {pixels!r}")
    check(is_int(population) and population >= 4,
          f"{who}: population must be an integer >= 4 (DE/rand/1 needs 3 others), got {population!r}")
    check(is_int(iterations) and iterations >= 0, f"{who}: iterations must be an integer >= 0, got {iterations!r}")
    check(is_number(f) and 0 < f <= 2, f"{who}: f (mutation scale F) must be a number in (0, 2], got {f!r}")
    check(crossover is None or (is_number(crossover) and 0 <= crossover <= 1),
          f"{who}: crossover must be None (Su et al.: none) or a probability in [0, 1], got {crossover!r}")
    check(early_stop is None or (is_number(early_stop) and 0 < early_stop <= 1),
          f"{who}: early_stop must be None or a true-class probability in (0, 1], got {early_stop!r}")
    check(isinstance(stop_on_success, bool), f"{who}: stop_on_success must be true or false, got {stop_on_success!r}")
    box = _check_region(region, who)
    check(box is None or pixels <= box[2] * box[3],
          f"{who}: pixels ({pixels}) must not exceed the region's {box and box[2] * box[3]} pixels")
    check(init in INITS, f"{who}: init must be one of {', '.join(INITS)}, got {init!r}")
    check(out_of_bounds in OUT_OF_BOUNDS, f"{who}: out_of_bounds must be one of {', '.join(OUT_OF_BOUNDS)}, got {out_of_bounds!r}")
    check(is_int(seed), f"{who}: seed must be an integer, got {seed!r}")
    check(is_int(eval_batch) and eval_batch >= 1, f"{who}: eval_batch must be an integer >= 1, got {eval_batch!r}")


# --------------------------------------------------------------------------------------------
# the attack


@register_attack
class NPixel(Attack):
    r"""N-pixel attack in the paper 'One Pixel Attack for Fooling Deep Neural Networks'
    [https://arxiv.org/abs/1710.08864] (Su, Vargas & Sakurai, IEEE TEVC 2019), untargeted, batched
    DE/rand/1 (module docstring).

    Distance Measure : L0 (N pixels)

    ``forward(images, labels)`` returns the adversarial images and leaves, for that call,
    ``last_success`` (bool, B: the returned image is misclassified, so also True for images
    the model got wrong to begin with), ``last_queries`` (images through the model per image,
    the clean check included) and ``last_generations`` (generations run per image) on the attack.
    Successive calls continue the seeded random stream (a fresh attack repeats a call exactly).

    Arguments:
        model (nn.Module): the classifier, [0, 1] images in, logits out (normalization inside).
        pixels, population, iterations: N, the pixels changed (1); individuals per image (400); generations (100).
        f, crossover: the mutation's scale F (0.5) and the binomial crossover rate CR (None: none, as Su et al.).
        early_stop, stop_on_success: stop an image once its true-class probability is below this (0.05) / it is misclassified.
        region (sequence of int | None): (top, left, height, width) the pixels stay in. (Default: None)
        init, out_of_bounds: the first colours ``gaussian`` (Su et al.) | ``uniform``; coordinates off the image ``clip`` | ``resample``.
        seed, eval_batch: the random stream's seed (0); images per forward pass (256).

    Shape: images :math:`(N, C, H, W)` in [0, 1] and labels :math:`(N)` (class indices) -> adversarial images :math:`(N, C, H, W)`.

    Examples::
        >>> attack = NPixel(model, pixels=3, population=400, iterations=100)
        >>> adv_images = attack(images, labels)
    """

    name = "npixel"

    def __init__(self, model: nn.Module, pixels: int = 1, population: int = 400, iterations: int = 100,
                 f: float = 0.5, crossover: float | None = None, early_stop: float | None = 0.05,
                 stop_on_success: bool = True, region: Sequence[int] | None = None, init: str = "gaussian",
                 out_of_bounds: str = "clip", seed: int = 0, eval_batch: int = 256):
        super().__init__(model)
        check_params(self.name, pixels=pixels, population=population, iterations=iterations, f=f, crossover=crossover,
                     early_stop=early_stop, stop_on_success=stop_on_success, region=region, init=init,
                     out_of_bounds=out_of_bounds, seed=seed, eval_batch=eval_batch)
        self.pixels, self.population, self.iterations = pixels, population, iterations
        self.f, self.crossover = float(f), None if crossover is None else float(crossover)
        self.early_stop = None if early_stop is None else float(early_stop)
        self.stop_on_success = stop_on_success
        self.region = _check_region(region, self.name)
        self.init, self.out_of_bounds = init, out_of_bounds
        self.seed, self.eval_batch = seed, eval_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.last_success = self.last_queries = self.last_generations = None

    # ---- configuration (an L0 attack: no ε; a preset's ``steps`` are the DE iterations)

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        """An :class:`~patchbench.config.EvasionConfig` naming this attack: ``eps`` is ignored (an
        L0 attack has no ε), ``steps`` are the DE ``iterations``, no ``step_size``; ``params`` are
        constructor parameters, each checked as the constructor does, and a ``region`` must fit
        ``image_size`` px images."""
        check(cfg.steps is None or (is_int(cfg.steps) and cfg.steps >= 1), f"{where}.steps must be an integer >= 1, got {cfg.steps!r}")
        check(cfg.step_size is None, f"{where}: attack {cfg.name} takes no step_size (the DE mutation scale is params.f)")
        check(isinstance(cfg.params, dict), f"{where}.params must be a mapping")
        accepted = cls.accepted_params() - {"seed"}
        for key in cfg.params:
            check(key in accepted, f"{where}.params: attack {cfg.name} has no parameter {key!r}")
        check(cfg.steps is None or "iterations" not in cfg.params, f"{where}: give steps or params.iterations, not both")
        kwargs = cls._config_kwargs(cfg)
        check_params(where, **kwargs)
        box = _check_region(kwargs.get("region"), where)
        check(box is None or (box[0] + box[2] <= image_size and box[1] + box[3] <= image_size),
              f"{where}.params.region {box} does not fit {image_size}×{image_size} images")

    @classmethod
    def _config_kwargs(cls, cfg) -> dict:
        kwargs = dict(cfg.params)
        if cfg.steps is not None:
            kwargs["iterations"] = cfg.steps
        kwargs["seed"] = cfg.seed
        return kwargs

    @classmethod
    def from_config(cls, model: nn.Module, cfg, image_size: int, progress: bool = False) -> "NPixel":
        cls.check_config(cfg, image_size, where=f"attack {cfg.name}")
        return cls(model, **cls._config_kwargs(cfg))

    def __repr__(self) -> str:
        return (f"NPixel(pixels={self.pixels}, population={self.population}, iterations={self.iterations}, f={self.f:g}, "
                f"crossover={self.crossover}, region={self.region}, seed={self.seed})")

    # ---- pieces

    def box(self, images: torch.Tensor) -> Box:
        """The region for these images (default: the whole image), checked against their size."""
        _, _, height, width = images.shape
        top, left, h, w = self.region or (0, 0, height, width)
        if top + h > height or left + w > width:
            raise PatchbenchError(f"{self.name}: region {(top, left, h, w)} does not fit {height}×{width} images")
        if self.pixels > h * w:
            raise PatchbenchError(f"{self.name}: pixels ({self.pixels}) must not exceed the region's {h * w} pixels")
        return top, left, h, w

    @torch.no_grad()
    def fitness(self, images: torch.Tensor, labels: torch.Tensor, cand: torch.Tensor, region: Box):
        """(true-class probability, misclassified?) of ``cand`` (A×P×N×D) painted into ``images``
        (A×C×H×W), in forward passes of at most ``eval_batch`` images."""
        a, p = cand.shape[:2]
        flat = cand.reshape(a * p, *cand.shape[2:])
        owner = torch.arange(a, device=images.device).repeat_interleave(p)
        probs, wrong = [], []
        for s in range(0, a * p, self.eval_batch):
            idx = owner[s:s + self.eval_batch]
            logits = self.model(paint(images[idx], flat[s:s + self.eval_batch], region))
            y = labels[idx]
            probs.append(logits.float().softmax(1).gather(1, y[:, None]).squeeze(1))
            wrong.append(logits.argmax(1) != y)
        return torch.cat(probs).view(a, p), torch.cat(wrong).view(a, p)

    # ---- the loop

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        labels = labels.to(x.device)
        region = self.box(x)
        top, left, h, w = region
        b, c = x.shape[:2]
        p, npix, d = self.population, self.pixels, 2 + x.shape[1]
        dev, gen = x.device, self.generator
        lo = torch.tensor([top, left] + [0] * c, dtype=torch.float32, device=dev)
        hi = torch.tensor([top + h, left + w] + [1] * c, dtype=torch.float32, device=dev)

        pop = initial_population(b, p, npix, c, lo, hi, self.init, gen, dev)  # draws 1-2

        with eval_mode(self.model):
            done = self.model(x).argmax(1) != labels  # already misclassified: returned unchanged
            changed = ~done
            queries = torch.ones(b, dtype=torch.long, device=dev)
            generations = torch.zeros(b, dtype=torch.long, device=dev)
            fit = torch.full((b, p), float("inf"), device=dev)
            best = pop[:, 0].clone()
            best_prob = torch.full((b,), float("inf"), device=dev)  # best = (misclassified, then lowest p_y)
            best_wrong = torch.zeros(b, dtype=torch.bool, device=dev)

            def evaluate(act: torch.Tensor, cand: torch.Tensor):
                prob, wrong = self.fitness(x[act], labels[act], cand, region)
                queries[act] += p
                any_wrong = wrong.any(1)
                p_min, k_arg = torch.where(wrong | ~any_wrong[:, None], prob, float("inf")).min(1)  # first on ties
                was_wrong, was_prob = best_wrong[act], best_prob[act]
                better = (any_wrong & ~was_wrong) | ((any_wrong == was_wrong) & (p_min < was_prob))
                upd = act[better]
                best_prob[upd] = p_min[better]
                best_wrong[upd] = any_wrong[better]
                best[upd] = cand[better, k_arg[better]]
                return prob

            def stop(act: torch.Tensor) -> None:
                hit = torch.zeros(len(act), dtype=torch.bool, device=dev)
                if self.stop_on_success:
                    hit |= best_wrong[act]
                if self.early_stop is not None:
                    hit |= fit[act].min(1).values < self.early_stop
                done[act[hit]] = True

            act = (~done).nonzero().squeeze(1)
            if len(act):
                fit[act] = evaluate(act, pop[act])
                stop(act)
            for _ in range(self.iterations):
                u = torch.rand(b, p, 3, generator=gen, dtype=torch.float64)
                cr = jr = fresh = None
                if self.crossover is not None:
                    cr = torch.rand(b, p, npix * d, generator=gen)
                    jr = torch.rand(b, p, generator=gen, dtype=torch.float64)
                if self.out_of_bounds == "resample":
                    fresh = torch.rand(b, p, npix, d, generator=gen)
                act = (~done).nonzero().squeeze(1)
                if not len(act):
                    continue  # keep drawing: the stream does not depend on when images stop
                act_cpu = act.cpu()
                child = mutate(pop[act], u[act_cpu].to(dev), self.f)
                if cr is not None:
                    child = crossover(pop[act], child, cr[act_cpu].to(dev), jr[act_cpu].to(dev), self.crossover)
                child = bound(child, lo, hi, None if fresh is None else fresh[act_cpu].to(dev))
                prob = evaluate(act, child)
                keep = prob <= fit[act]  # Su et al.: the child wins unless it is worse
                pop[act] = torch.where(keep[..., None, None], child, pop[act])
                fit[act] = torch.where(keep, prob, fit[act])
                generations[act] += 1
                stop(act)

            adv = x.clone()
            idx = changed.nonzero().squeeze(1)
            if len(idx):
                adv[idx] = paint(x[idx], best[idx], region)
            self.last_success = (self.model(adv).argmax(1) != labels).cpu()
        self.last_queries, self.last_generations = queries.cpu(), generations.cpu()
        return adv
