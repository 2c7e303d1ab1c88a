"""Differential evolution on N-pixel candidates, batched over images and population: the
operators of :class:`~patchbench.attacks.npixel.NPixel` (Su et al. 2019 Sec. III-B; Storn & Price
1997 for the crossover) and the order in which it draws its random numbers.

A candidate is N perturbations (row, col, c_1..c_C), a tensor (..., N, D) with D = 2 + C; a
population is (B, P, N, D).

Random numbers (explicit, so a per-image reference can follow them): one CPU ``torch.Generator``
seeded with ``seed`` when the attack is built; successive calls continue its stream (as PGD's
start). A call on B images with population P, N pixels, C channels and D = 2 + C draws, always
for all B images (stopped ones included, so an image's draws do not depend on the others):

1. ``torch.rand(B, P, N, 2)``: positions, row = top + u·height, col = left + u·width;
2. colours: ``torch.randn(B, P, N, C)`` → (z·127 + 128)/255 written as ``z * (127/255) + 128/255``
   then clipped (gaussian), or ``torch.rand(B, P, N, C)`` (uniform);
3. then per generation: ``torch.rand(B, P, 3, dtype=float64)`` = (u1, u2, u3): r1 is the
   ⌊u1·(P-1)⌋-th smallest index of {0..P-1} \\ {i}, r2 the ⌊u2·(P-2)⌋-th smallest of what is
   left after removing r1, r3 the ⌊u3·(P-3)⌋-th after removing r2 (drawing without replacement);
   with crossover, ``torch.rand(B, P, N·D)`` (take the mutant's coordinate where < CR) and
   ``torch.rand(B, P, dtype=float64)`` (j_rand = ⌊u·N·D⌋, always the mutant's); with
   ``out_of_bounds="resample"``, ``torch.rand(B, P, N, D)`` (lo + u·(hi - lo) per coordinate).

All arithmetic on candidates is float32 on the images' device.
"""

from __future__ import annotations

import torch

from patchbench.attacks.regions import Box


def initial_population(b: int, p: int, npix: int, c: int, lo: torch.Tensor, hi: torch.Tensor, init: str,
                       gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    """(B, P, N, D) candidates: positions uniform in the box [lo, hi) (draw 1), colours gaussian
    around mid-grey and clipped, or uniform (draw 2)."""
    pos = torch.rand(b, p, npix, 2, generator=gen).to(dev)
    pos = lo[:2] + pos * (hi[:2] - lo[:2])
    if init == "gaussian":
        colours = (torch.randn(b, p, npix, c, generator=gen).to(dev) * (127 / 255) + 128 / 255).clamp_(0, 1)
    else:
        colours = torch.rand(b, p, npix, c, generator=gen).to(dev)
    return torch.cat([pos, colours], -1)


def paint(images: torch.Tensor, cand: torch.Tensor, region: Box) -> torch.Tensor:
    """Copies of ``images`` (n×C×H×W) with candidate k's N pixels written into image k.

    ``cand``: n×N×(2+C), (row, col, colours). Positions are floored and clamped to ``region``;
    when several of a candidate's pixels land on one place, the later pixel's colour wins (every
    duplicate is given that colour first, so the scatter's write order does not matter).
    """
    n, c, _, width = images.shape
    top, left, h, w = region
    rows = cand[..., 0].floor().long().clamp_(top, top + h - 1)
    cols = cand[..., 1].floor().long().clamp_(left, left + w - 1)
    colours = cand[..., 2:]
    npix = cand.shape[1]
    if npix > 1:
        ar = torch.arange(npix, device=cand.device)
        lin = rows * width + cols
        order = (lin * npix + ar).argsort(1)  # by place, then by pixel index
        lin_s = lin.gather(1, order)
        last = torch.ones_like(lin_s, dtype=torch.bool)
        last[:, :-1] = lin_s[:, :-1] != lin_s[:, 1:]  # the last (latest) pixel of each place
        run_end = torch.where(last, ar, npix).flip(1).cummin(1).values.flip(1)
        winner = torch.empty_like(order).scatter_(1, order, order.gather(1, run_end))
        colours = colours.gather(1, winner[..., None].expand(-1, -1, c))
    out = images.clone()
    out[torch.arange(n, device=images.device)[:, None], :, rows, cols] = colours.to(out.dtype)
    return out


def partners(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """r1, r2, r3 (each B×P, long) distinct and ≠ i from ``u`` (B×P×3 uniforms, float64).

    r_k is the ⌊u_k·(P-k)⌋-th smallest index not yet taken ({i}, then r1, then r2): an index k
    into the remaining set becomes an index into 0..P-1 by stepping over each taken index
    ≤ it, in increasing order.
    """
    b, p, _ = u.shape
    i = torch.arange(p, device=u.device).expand(b, p)

    def draw(col: int, taken: list[torch.Tensor]) -> torch.Tensor:
        r = (u[..., col] * (p - 1 - col)).floor().long().clamp_(max=p - 2 - col)
        for t in torch.stack(taken, -1).sort(-1).values.unbind(-1):
            r = r + (r >= t).long()
        return r

    r1 = draw(0, [i])
    r2 = draw(1, [i, r1])
    r3 = draw(2, [i, r1, r2])
    return r1, r2, r3


def mutate(pop: torch.Tensor, u: torch.Tensor, f: float) -> torch.Tensor:
    """DE/rand/1 (Su et al.): x_r1 + F (x_r2 - x_r3) for every individual of every image."""
    r1, r2, r3 = partners(u)

    def take(r):
        return pop.gather(1, r[..., None, None].expand(-1, -1, *pop.shape[2:]))

    return take(r1) + f * (take(r2) - take(r3))


def crossover(parent: torch.Tensor, mutant: torch.Tensor, cr: torch.Tensor, jr: torch.Tensor, rate: float) -> torch.Tensor:
    """Binomial crossover (Storn & Price): the mutant's coordinate where u < CR (``rate``) and at j_rand."""
    shape = parent.shape
    nd = shape[2] * shape[3]
    j = (jr * nd).floor().long().clamp_(max=nd - 1)
    take = cr < rate
    take[torch.arange(nd, device=j.device) == j[..., None]] = True
    return torch.where(take, mutant.reshape(*shape[:2], nd), parent.reshape(*shape[:2], nd)).view(shape)


def bound(child: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, fresh: torch.Tensor | None) -> torch.Tensor:
    """Back into the box: clipped, or the offending coordinates redrawn as lo + u (hi - lo)."""
    if fresh is None:
        return torch.max(torch.min(child, hi), lo)
    out = (child < lo) | (child > hi)
    return torch.where(out, lo + fresh * (hi - lo), child)
