"""White-box adaptive LaVAN through the defense (ICAART 2022 Sec. 4.3, Eq. 13, Fig. 10).

Eq. 13: x' = (1 - m) ⊙ x + m ⊙ δ and δ = argmax_δ [M(ȳ|T(x')) - M(ŷ|T(x'))], with M the pre-softmax
logits, ȳ the target, ŷ the source (true) class and T ∈ {LGS, SLGS, WLGS} the defense at a fixed
λ. It is LaVAN's Eq. 3 with the defense inserted between the patched image and the classifier,
so δ is optimized by SGD with momentum on the gradient of ``model(T(paste(x, δ)))``.

T(x) = x ⊙ clip(1 - λ·g̃(x), 0, 1) (Eq. 5, 10, 12; in "normalized" space μ + (x - μ) ⊙ clip(...))
is rebuilt here from differentiable pieces: :func:`differentiable_maps` returns the same maps as
``defense.maps`` with their autograd graph, and the defense's own ``apply`` does the rest, so the
forward value is the defense's exactly. What the gradient is, per defense:

* ``clip``: differentiable almost everywhere (gradient 1 inside (0, 1), 0 where it clips); its
  autograd gradient is the true one a.e., so no BPDA identity is used for it.
* LGS, g(x) = minmax(Sobel(x)) ⊙ F(keep(x)): the Sobel magnitude (Eq. 4) and the per-image min-max
  normalization are differentiable and stay in the graph. The Sobel magnitude √(a² + b²) is taken
  with gradient 0 where a = b = 0 (flat regions, e.g. Fashion-MNIST's black background, where
  plain autograd of ``sqrt`` would give 0·∞ = NaN); elsewhere it is the exact derivative.
  The window keep-test ``mean over window ≥ threshold`` is a step function of the window average,
  and F (the fraction of the windows covering a pixel that are kept) depends on x only through it:
  F is piecewise constant, its exact gradient is 0 almost everywhere, so the window averaging
  (``avg_pool2d``), which only feeds the test, contributes nothing. ``keep_grad="constant"`` (the
  default) uses the forward value as a constant in the backward pass — BPDA with the constant,
  which here *is* the exact a.e. gradient: dg/dx = F ⊙ d minmax(Sobel)/dx. It lets the attacker
  lower the gradient map inside kept windows (smoother, lower-contrast patches), but not learn
  to push a window under the threshold. ``keep_grad="straight-through"`` replaces the step's
  derivative by 1 (keep + (a - a.detach()), a the window average): a surrogate that also
  rewards lowering the window averages below the threshold; forward value unchanged.
* SLGS, g̃ = D(x) ⊙ g(x) (Eq. 10): the mask D(x) — saliency binarized at its mean (Eq. 7), eroded
  and dilated (Eq. 8-9) — is piecewise constant in x (exact gradient 0 a.e.); it is computed in
  the forward pass from the detached saliency and treated as a constant (BPDA with the
  constant). g(x) is differentiable as for LGS.
* WLGS, g̃ = W(x) ⊙ g(x) (Eq. 11-12), W = minmax(M(x)), M = max_c |∂S/∂x_c| (Eq. 6): W is
  differentiable only through second-order autograd. ``saliency_grad="second-order"`` builds
  M with ``saliency_map(..., create_graph=True)`` so dW/dx flows (double backward through the
  classifier); ``saliency_grad="constant"`` detaches W (BPDA with the constant; only g(x) is
  differentiated). For a ReLU/max-pool classifier ∂S/∂x is piecewise smooth in x (it jumps where
  an activation or a pooling argmax switches); the second-order gradient is the derivative
  within the current piece. The default is second-order, the exact white-box gradient: it runs
  at demo speed. Measured per training step (batch 64, 64 px, small_vgg, 1 CPU thread on a
  shared 2-core machine, best of 5 rounds): no defense 33 ms, LGS 57 ms, SLGS 100 ms, WLGS
  constant 93 ms, WLGS second-order 214 ms (2.3x constant; 200 steps ≈ 43 s). At demo scale
  the two modes gave the same curve (final success through WLGS λ=2.3: 40.5 % vs 41.3 %).
* ``none``: T is the identity — plain LaVAN (the reference curve).

:class:`AdaptiveLaVAN` records, every ``record_every`` steps, a snapshot of δ and its success
rate through the *real* defense (``defense.maps`` + ``apply``, no gradient tricks) at the test
placement on a fixed held-out batch, counting target hits on non-target images (Fig. 10's
"success rate vs training step").
"""

from __future__ import annotations

import time
from typing import Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchbench.attacks.lavan import LaVAN
from patchbench.attacks.patch import Patch, Placement, paste
from patchbench.defenses.base import Defense, NoDefense
from patchbench.defenses.lgs import LGS, SLGS, WLGS, _SOBEL_X, minmax_per_image, saliency_mask, window_padding
from patchbench.defenses.saliency import saliency_map
from patchbench.errors import PatchbenchError

SALIENCY_GRADS = ("second-order", "constant")
KEEP_GRADS = ("constant", "straight-through")


def sobel_magnitude_safe(x: torch.Tensor) -> torch.Tensor:
    """Eq. 4 exactly as :func:`patchbench.defenses.lgs.sobel_magnitude`, with gradient 0 where the
    magnitude is 0 (√ has an infinite derivative at 0; autograd would produce NaN there)."""
    n, c, h, w = x.shape
    k = _SOBEL_X.to(x)
    kernels = torch.stack([k, k.T]).unsqueeze(1)
    g = F.conv2d(x.reshape(n * c, 1, h, w), kernels, padding=1)
    sq = g[:, 0] ** 2 + g[:, 1] ** 2
    pos = sq > 0
    mag = torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    return mag.reshape(n, c, h, w)


def gradient_map_diff(x: torch.Tensor, window: int = 15, overlap: int = 5, threshold: float = 0.2,
                      window_average: str = "all", keep_grad: str = "constant") -> torch.Tensor:
    """LGS's g(x) (:func:`patchbench.defenses.lgs.gradient_map`, same forward value) with the
    autograd graph kept: Sobel + min-max in the graph, the keep-test per ``keep_grad``."""
    if keep_grad not in KEEP_GRADS:
        raise PatchbenchError(f"keep_grad must be one of {', '.join(KEEP_GRADS)}, got {keep_grad!r}")
    n, c, h, w = x.shape
    stride = window - overlap
    gx = minmax_per_image(sobel_magnitude_safe(x))
    pt, pb = window_padding(h, window, overlap)
    pl, pr = window_padding(w, window, overlap)
    avg = F.avg_pool2d(F.pad(gx.mean(1, keepdim=True), (pl, pr, pt, pb)), window, stride)
    keep = (avg >= threshold).to(x.dtype)  # step function: no autograd edge (BPDA with the constant)
    if keep_grad == "straight-through":
        keep = keep + (avg - avg.detach())  # forward value unchanged, d keep / d avg := 1
    ones_kernel = torch.ones(1, 1, window, window, dtype=x.dtype, device=x.device)
    kept = F.conv_transpose2d(keep, ones_kernel, stride=stride)[:, :, pt:pt + h, pl:pl + w]
    if window_average == "kept":
        factor = (kept > 0).to(x.dtype)  # piecewise constant (no edge) in both keep_grad modes
    else:
        total = F.conv_transpose2d(torch.ones_like(keep[:1]).detach(), ones_kernel,
                                   stride=stride)[:, :, pt:pt + h, pl:pl + w]
        factor = kept / total
    return gx * factor


def _lgs_g(defense: LGS, x: torch.Tensor, keep_grad: str) -> torch.Tensor:
    if defense.space == "normalized":
        mean, std = defense._stats(x)
        x = (x - mean) / std
    return gradient_map_diff(x, defense.window, defense.overlap, float(defense.threshold),
                             defense.window_average, keep_grad)


def differentiable_maps(defense: Defense, x: torch.Tensor, model: torch.nn.Module | None = None, *,
                        saliency_grad: str = "second-order", keep_grad: str = "constant") -> dict[str, torch.Tensor]:
    """``defense.maps(x, model)`` with the autograd graph to x kept (see the module docstring for
    what is differentiated and what is held constant per defense)."""
    if saliency_grad not in SALIENCY_GRADS:
        raise PatchbenchError(f"saliency_grad must be one of {', '.join(SALIENCY_GRADS)}, got {saliency_grad!r}")
    if isinstance(defense, NoDefense):
        return {}
    if isinstance(defense, (SLGS, WLGS)) and model is None:
        raise PatchbenchError(f"{defense.name} needs the classifier (its saliency map)")
    if isinstance(defense, WLGS):
        second = saliency_grad == "second-order" and x.requires_grad
        m = saliency_map(model, x, defense.top_k, create_graph=second)
        w = minmax_per_image(m)
        return {"g": _lgs_g(defense, x, keep_grad) * w, "weight": w, "saliency": m}
    if isinstance(defense, SLGS):
        m = saliency_map(model, x, defense.top_k)  # detached: D(x) is piecewise constant
        d = saliency_mask(m, defense.erosions, defense.dilations)
        return {"g": _lgs_g(defense, x, keep_grad) * d, "mask": d, "saliency": m}
    if isinstance(defense, LGS):
        return {"g": _lgs_g(defense, x, keep_grad)}
    raise PatchbenchError(f"no differentiable transform for defense {defense.name!r} "
                          "(adaptive attacks support none, lgs, slgs, wlgs)")


def differentiable_defense(defense: Defense, x: torch.Tensor, lam: float | None, model: torch.nn.Module | None = None,
                           *, saliency_grad: str = "second-order", keep_grad: str = "constant") -> torch.Tensor:
    """T(x) of Eq. 13 with gradients: ``defense.apply(x, differentiable_maps(...), lam)``.

    Same forward value as ``defense.apply(x, defense.maps(x, model), lam)`` (the clip in ``apply``
    is differentiable a.e.; no BPDA identity is needed for it)."""
    maps = differentiable_maps(defense, x, model, saliency_grad=saliency_grad, keep_grad=keep_grad)
    return defense.apply(x, maps, lam)


class AdaptiveLaVAN(LaVAN):
    """LaVAN optimized through the defense T at a fixed λ (ICAART Eq. 13).

    Same optimizer, initialization (seeded uniform δ), loss (Eq. 3) and placements as
    :class:`LaVAN`; only the logits are ``model(T(paste(x, δ)))``. ``defense=None`` means no
    defense (plain LaVAN, the reference). ``fit`` keeps ``self.history`` (one dict per recorded
    step) and ``self.snapshots`` (one :class:`Patch` per recorded step, meta with ``step``).
    Recorded steps: 0 (the initial δ), every ``record_every`` steps, and the last step.
    """

    name = "lavan-adaptive"

    def __init__(self, model, size: int, target: int, placement: Placement, image_size: int, *,
                 defense: Defense | None = None, lam: float | None = None,
                 saliency_grad: str = "second-order", keep_grad: str = "constant",
                 record_every: int | None = 25, eval_chunk: int = 256, **lavan_kwargs):
        super().__init__(model, size, target, placement, image_size, **lavan_kwargs)
        self.defense = defense if defense is not None else NoDefense()
        if self.defense.uses_lambda and lam is None:
            raise PatchbenchError(f"adaptive attack through {self.defense.name} needs a λ")
        self.lam = float(lam) if (lam is not None and self.defense.uses_lambda) else None
        if saliency_grad not in SALIENCY_GRADS:
            raise PatchbenchError(f"saliency_grad must be one of {', '.join(SALIENCY_GRADS)}, got {saliency_grad!r}")
        if keep_grad not in KEEP_GRADS:
            raise PatchbenchError(f"keep_grad must be one of {', '.join(KEEP_GRADS)}, got {keep_grad!r}")
        if record_every is not None and (not isinstance(record_every, int) or record_every < 1):
            raise PatchbenchError(f"record_every must be an integer >= 1, got {record_every!r}")
        self.saliency_grad, self.keep_grad = saliency_grad, keep_grad
        self.record_every = record_every
        self.eval_chunk = eval_chunk
        self.history: list[dict] = []
        self.snapshots: list[Patch] = []

    def record_steps(self) -> list[int]:
        every = self.record_every or self.steps
        return sorted({0, *range(every, self.steps + 1, every), self.steps})

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable T (Eq. 13)."""
        return differentiable_defense(self.defense, x, self.lam, self.model,
                                      saliency_grad=self.saliency_grad, keep_grad=self.keep_grad)

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

    def _meta(self, step: int, train_seconds: float) -> dict:
        return {
            "attack": self.name, "adaptive_defense": self.defense.name, "lam": self.lam, "step": step,
            "defense_params": self.defense.params(), "record_every": self.record_every,
            # the gradient modes that apply to this defense (None where they change nothing)
            "saliency_grad": self.saliency_grad if isinstance(self.defense, WLGS) else None,
            "keep_grad": self.keep_grad if isinstance(self.defense, LGS) else None,
            "size_px": self.size, "target": self.target, "placement": self.placement.kind,
            "margin": self.placement.margin, "random_placement": self.random_placement, "steps": self.steps,
            "lr": self.lr, "momentum": self.momentum, "lr_milestones": self.lr_milestones, "seed": self.seed,
            "image_size": self.image_size, "area_pct": round(100 * self.size ** 2 / self.image_size ** 2, 3),
            "train_seconds": round(train_seconds, 2),
        }

    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None,
            holdout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
        """Optimize δ through T for ``steps`` batches; record history and snapshots.

        ``holdout``: the fixed (images, labels) batch the history's success rate is measured on
        (only its non-target images count); None sets the first batch of ``batches`` aside.
        Returns the final patch (the last snapshot).
        """
        device = self.device
        gen = torch.Generator().manual_seed(self.seed)
        channels = channels or 3
        delta = torch.rand(channels, self.size, self.size, generator=gen).to(device).requires_grad_(True)
        mask = torch.ones(1, self.size, self.size, device=device)
        opt = torch.optim.SGD([delta], lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.lr_milestones, self.lr_gamma)
        self.model.eval()
        it = iter(batches)
        if holdout is None:
            holdout = next(it)
        hx, hy = holdout
        keep = hy != self.target
        if not bool(keep.any()):
            raise PatchbenchError("the held-out batch has no non-target images")
        hx, hy = hx[keep].to(device), hy[keep].to(device)
        record = set(self.record_steps())
        self.history, self.snapshots = [], []
        train_s = record_s = 0.0
        loss_val: float | None = None

        def snapshot(step: int) -> None:
            nonlocal record_s
            t = time.perf_counter()
            d = delta.detach().clone()
            hits = int((self.defended_predictions(hx, d, mask) == self.target).sum())
            rate = hits / len(hy)
            record_s += time.perf_counter() - t
            self.history.append({"step": step, "success_rate": rate, "hits": hits, "n": len(hy),
                                 "train_loss": loss_val, "train_seconds": round(train_s, 3)})
            meta = self._meta(step, train_s)
            meta["holdout_success_rate"], meta["holdout_n"] = rate, len(hy)
            self.snapshots.append(Patch(d.cpu(), mask.cpu(), meta))

        bar = tqdm(range(1, self.steps + 1), desc=f"{self.name}/{self.defense.name} {self.size}px",
                   disable=not self.progress, leave=False)
        snapshot(0)
        for step in bar:
            t0 = time.perf_counter()
            x, y = next(it)
            top, left = self._offsets(len(x), gen, device)
            logits = self.model(self.transform(paste(x, delta, mask, top, left)))
            loss = self.loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(0, 1)
            loss_val = float(loss.detach())
            train_s += time.perf_counter() - t0
            if step in record:
                snapshot(step)
                bar.set_postfix(loss=f"{loss_val:.3f}", success=f"{self.history[-1]['success_rate']:.2f}")
        for p in self.snapshots:
            p.meta["record_seconds"] = round(record_s, 2)
        self.patch = self.snapshots[-1]
        return self.patch
