"""Total-variation denoising baseline of ICAART 2022 Fig. 9 ("TVM").

ICAART 2022 Sec. 4.3 lists "Total Variance Minimization (TVM) from scikit-learn" among
library baselines timed in Fig. 9; no such function exists in scikit-learn, and the only TV
minimizer in the scientific-Python stack the other baselines come from is scikit-image's
``skimage.restoration.denoise_tv_chambolle``. So this is Chambolle's (2004) projection algorithm
for the ROF problem min_u Σ|∇u| + 1/(2·weight) Σ(u - f)², exactly as skimage implements it,
batched in torch.

This is *not* the TVM of Guo et al. 2018 ("Countering Adversarial Images using Input
Transformations"), which drops pixels at random (Bernoulli mask) and reconstructs the image by
solving a TV problem on the kept pixels only: the ICAART text names a library function run on
whole images, and Guo's method is in no library, so the library denoiser is what was timed.

Per skimage (``channel_axis`` given): each channel of each image is its own 2-D problem with its
own stopping test — the iteration stops when |E_{n-1} - E_n| < eps·E_0 for the energy
E = (Σ d² + weight·Σ|∇u|) / (H·W) (d: the negative divergence of the dual field p), or after
``max_iter`` iterations; as in skimage the returned u is the one computed at the top of the
stopping iteration. Batched: all images run together, and each (image, channel) is frozen at
the iteration at which it would have stopped alone, so the output is batch-invariant and equal
to skimage's (tests: ~1e-12 in float64). The loop checks every ``check_every`` iterations
whether all have stopped (a device sync), otherwise it runs without syncs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from patchbench.defenses import compiling
from patchbench.defenses.base import OUT, Defense, register_defense
from patchbench.errors import is_int, is_number


def _primal(x: torch.Tensor, ph: torch.Tensor, pw: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """u = x + d with d = -div p, into ``u``'s top-left H×W; returns Σ d² per (image, channel).

    Plain tensor algebra for ``torch.compile`` to fuse into one kernel (:mod:`patchbench.defenses.compiling`),
    on padded buffers so that no slice needs a mask: ``ph`` is (H+1)×W with a zero first row (p's row
    -1), ``pw`` H×(W+1) with a zero first column, ``u`` (H+1)×(W+1). (With ``F.pad`` instead, inductor
    built every vector load with a bounds mask, and both kernels ran 2.5-3× slower.)"""
    h, w = x.shape[-2:]
    d = ph[..., :-1, :] - ph[..., 1:, :] + pw[..., :, :-1] - pw[..., :, 1:]
    u[..., :h, :w].copy_(x + d)
    return (d * d).sum((2, 3))


def _dual(u: torch.Tensor, ph: torch.Tensor, pw: torch.Tensor, weight: float) -> torch.Tensor:
    """p ← (p - τ∇u) / (1 + (τ/weight)|∇u|) in place on the padded buffers of :func:`_primal`; returns
    Σ|∇u| per (image, channel). ``u``'s last row and column repeat its H-th and W-th, so the forward
    differences there are 0: skimage's ``np.diff`` into zeros. One fused kernel when compiled."""
    h, w = u.shape[-2] - 1, u.shape[-1] - 1
    tau = 0.25
    gh = u[..., 1:, :w] - u[..., :-1, :w]
    gw = u[..., :h, 1:] - u[..., :h, :-1]
    norm = torch.sqrt(gh * gh + gw * gw)
    den = 1 + (tau / weight) * norm
    ph[..., 1:, :].copy_((ph[..., 1:, :] - tau * gh) / den)
    pw[..., :, 1:].copy_((pw[..., :, 1:] - tau * gw) / den)
    return norm.sum((2, 3))


_primal_compiled, _dual_compiled = compiling.compiled(_primal), compiling.compiled(_dual)


def _fused_stepper(x: torch.Tensor, weight: float):
    """The iteration in two compiled kernels on padded buffers of its own (see :func:`_primal`):
    ``step(i)`` returns (u, Σ d², Σ|∇u|), u a view of the padded buffer."""
    n, c, h, w = x.shape
    ph, pw = x.new_zeros(n, c, h + 1, w), x.new_zeros(n, c, h, w + 1)
    u_pad = x.new_zeros(n, c, h + 1, w + 1)
    u = u_pad[..., :h, :w]

    def step(i: int):
        sq = _primal_compiled(x, ph, pw, u_pad)
        u_pad[..., h, :w].copy_(u_pad[..., h - 1, :w])  # repeat the last row and column: ∇u = 0 there
        u_pad[..., :h, w].copy_(u_pad[..., :h, w - 1])
        return u, sq.view(n, c, 1, 1), _dual_compiled(u_pad, ph, pw, weight).view(n, c, 1, 1)

    return step


def _eager_stepper(x: torch.Tensor, weight: float):
    """The iteration as in-place eager ops on buffers allocated once: ``step(i)`` returns (u, Σ d², Σ|∇u|).

    skimage's ``_denoise_tv_chambolle_nd`` statement by statement — ``d = -p.sum(0)``
    then ``d[1:] += p[:-1]`` per axis, ``out = image + d``, ``E = (d**2).sum()``, ``g = np.diff(out)``
    into zeros, ``norm = sqrt((g**2).sum(0))``, ``E += weight * norm.sum()``, ``norm *= tau / weight``,
    ``norm += 1``, ``p -= tau * g``, ``p /= norm`` — each statement one pass over the batch (16 per
    iteration) and one parallel region; on a CPU each fresh full-size buffer costs its page faults, so
    d lives in u's buffer and there is no output clone. The two components of p are updated one by
    one, not in one call over the stacked buffer: the broadcast of norm over the component axis made
    that slower (docs/BENCHMARKS.md).
    """
    n, c, h, w = x.shape
    # The dual field p = (ph, pw) in one buffer with a leading zero row and column: p[-1] = 0, so
    # the divergence per axis is one subtraction of two shifted views, d = p[i-1] - p[i], which is
    # skimage's "d = -p.sum(0); d[1:] += p[:-1]" with the terms in another order (3 passes over
    # the image for both axes instead of 4). The zero row / column is never written.
    pp = torch.zeros(2, n, c, h + 1, w + 1, dtype=x.dtype, device=x.device)
    p = pp[..., 1:, 1:]
    ph, pw = p[0], p[1]
    ph_prev, pw_prev = pp[0, ..., :-1, 1:], pp[1, ..., 1:, :-1]  # row i-1 of ph, column j-1 of pw
    g = torch.zeros(2, n, c, h, w, dtype=x.dtype, device=x.device)  # np.diff into zeros: last row/column stay 0
    gh, gw = g[0], g[1]
    u, norm = x.clone(), torch.empty_like(x)  # d is built in u's buffer, then x is added (u = x + d)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    tau = 0.25  # 1 / (2·ndim)

    def step(i: int):
        if i > 0:  # d = -div p (skimage's boundary handling: p's last row/column is always 0)
            torch.sub(ph_prev, ph, out=u)
            u.add_(pw_prev).sub_(pw)
            flat = u.view(n * c, 1, h * w)
            sq = torch.bmm(flat, flat.transpose(1, 2)).view(n, c, 1, 1)  # Σ d² per (image, channel), no temporary
            u.add_(x)
        else:  # p = 0: d = 0, u = x
            sq = torch.zeros(n, c, 1, 1, dtype=x.dtype, device=x.device)
        torch.sub(u[..., 1:, :], u[..., :-1, :], out=gh[..., :-1, :])
        torch.sub(u[..., :, 1:], u[..., :, :-1], out=gw[..., :, :-1])
        torch.mul(gh, gh, out=norm).addcmul_(gw, gw).sqrt_()
        norm_sum = norm.sum((2, 3), keepdim=True)
        torch.add(one, norm, alpha=tau / weight, out=norm)  # norm = 1 + (tau / weight)·norm, one pass
        ph.sub_(gh, alpha=tau).div_(norm)  # p -= tau * g; p /= norm
        pw.sub_(gw, alpha=tau).div_(norm)
        return u, sq, norm_sum

    return step


@torch.no_grad()  # an iterative solver: attacks go through it by BPDA (Defense.gradient), never autograd
def tv_chambolle(x: torch.Tensor, weight: float = 0.1, eps: float = 2e-4, max_iter: int = 200,
                 check_every: int = 10) -> torch.Tensor:
    """``skimage.restoration.denoise_tv_chambolle(img, weight, eps, max_iter, channel_axis=-1)``
    for every image of the batch N×C×H×W (each channel separately).

    Each iteration is :func:`_eager_stepper`'s in-place ops, or with ``patchbench --compile``
    :func:`_primal` and :func:`_dual` compiled into one kernel each (equal up to float rounding). The stopping test
    runs in numpy on the per-plane energies on a CPU (a dozen torch calls on tiny tensors per
    iteration cost more than a pass), in torch without a sync until the check on another device.
    """
    x = x.detach()
    n, c, h, w = x.shape
    step = (_fused_stepper if compiling.enabled() else _eager_stepper)(x, weight)
    planes = n * c
    result = torch.empty_like(x)  # each plane is written once: when it stops, or at the end
    on_cpu = x.device.type == "cpu"
    # the stopping test on per-plane energies: on a CPU in numpy (float32 arithmetic as skimage's
    # numpy scalars), on another device in torch
    done = np.zeros(planes, dtype=bool) if on_cpu else torch.zeros(n, c, 1, 1, dtype=torch.bool, device=x.device)
    e_prev = threshold = None
    for i in range(max_iter):
        u, sq, norm_sum = step(i)  # u at the top of iteration i; p already updated for the next
        energy = (sq + weight * norm_sum) / (h * w)
        if on_cpu:
            energy = energy.view(planes).numpy()
            if i == 0:
                stop, threshold = np.zeros(planes, dtype=bool), eps * energy
            else:
                stop = np.abs(e_prev - energy) < threshold
            e_prev = energy
            newly = stop & ~done
            for k in np.flatnonzero(newly).tolist():  # each plane is copied once in all
                result.view(planes, h, w)[k].copy_(u.view(planes, h, w)[k])
            done |= stop
            if done.all():
                return result
        else:
            if i == 0:
                stop, threshold = torch.zeros_like(done), eps * energy
            else:
                stop = (e_prev - energy).abs() < threshold
            e_prev = energy
            torch.where(stop & ~done, u, result, out=result)
            done = done | stop
            if (i + 1) % check_every == 0 and bool(done.all()):
                return result
    if not on_cpu:
        return torch.where(done, result, u)  # not stopped: the last u, as skimage returns
    for k in np.flatnonzero(~done).tolist():
        result.view(planes, h, w)[k].copy_(u.view(planes, h, w)[k])
    return result


@register_defense
@dataclasses.dataclass
class TVM(Defense):
    """Total-variation denoising, Chambolle's algorithm as in scikit-image (ICAART Fig. 9 "TVM").

    Defaults are skimage's ``denoise_tv_chambolle``: ``weight`` 0.1, ``eps`` 2e-4,
    ``max_iter`` 200 (its ``max_num_iter``). Output clamped to [0, 1] (a no-op up to rounding:
    the ROF solution obeys the maximum principle).
    """

    name: ClassVar[str] = "tvm"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "bpda"  # an iterative solver (Athalye et al. 2018 attack it with BPDA)

    weight: float = 0.1
    max_iter: int = 200
    eps: float = 2e-4

    def validate(self):
        self.require("weight", is_number(self.weight) and self.weight > 0, "a number > 0")
        self.require("max_iter", is_int(self.max_iter) and self.max_iter >= 1, "an integer >= 1")
        self.require("eps", is_number(self.eps) and self.eps >= 0, "a number >= 0")

    def maps(self, x, model=None):
        return {OUT: tv_chambolle(x, float(self.weight), float(self.eps), self.max_iter).clamp(0, 1)}
