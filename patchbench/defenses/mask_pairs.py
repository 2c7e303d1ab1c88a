"""PatchCleanser's masked predictions, batched: the label of each distinct masked image computed once
(:class:`MaskedLabels`) and "do all these two-mask labels equal y?" answered with an early exit
(:meth:`MaskedLabels.all_equal`).

Both rounds of double masking and the certificate (Xiang et al. 2022, Algorithms 1 and 2) read
labels of images x[b] ⊙ m_i ⊙ m_j. The set of two-mask images is symmetric (m_i ⊙ m_j = m_j ⊙ m_i)
and its diagonal (i = j) is the first round, so the labels are kept in one table per image, indexed
by the unordered pair: a label the first round or an earlier check computed is never recomputed,
and every forward pass is ``chunk`` distinct masked images of any images, batched. The classifier
runs under ``torch.inference_mode`` on ``channels_last`` inputs when its convolutions are
``channels_last``.

A question of the form "every label of these pairs equals y" (a disagreer's second round, a
certificate) is answered exactly by any evaluation order that stops at the first pair that differs:
the answer is False from there on whatever the remaining pairs say. :meth:`all_equal` evaluates the
pairs of all items in stages of growing length and keeps only the items still agreeing, so an item
that fails early costs one stage, and an item that passes costs every pair, as in the reference.
"""

from __future__ import annotations

import torch

from patchbench.util import eval_mode

STAGES = (1, 4, 16, 64)  # an item's pairs evaluated before each early exit (cumulative); then the rest


def is_channels_last(model) -> bool:
    """Whether the model's convolution weights are stored channels_last (what ``to(memory_format=...)`` did)."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


class MaskedLabels:
    """Labels of the masked copies of a batch x (N×C×H×W) under the keep-masks ``keep`` (M×1×H×W
    bool, True = kept), masked pixels set to ``fill``; each unordered pair (i, j) of one image
    through the model once (i = j: the one-mask image)."""

    def __init__(self, model, x: torch.Tensor, keep: torch.Tensor, fill: torch.Tensor, chunk: int):
        self.model, self.x, self.keep, self.fill, self.chunk = model, x, keep, fill, chunk
        self.m = len(keep)
        self.channels_last = x.dim() == 4 and is_channels_last(model)
        self.known = torch.full((len(x) * self.m * self.m,), -1, dtype=torch.int64, device=x.device)  # −1: not yet
        self.forwards = 0  # masked images classified so far

    def _classify(self, img: torch.Tensor, a: torch.Tensor, b: torch.Tensor, margin: torch.Tensor | None = None):
        """Labels of the masked images (and, into ``margin``, top-1 minus top-2 logit)."""
        out = torch.empty(len(img), dtype=torch.int64, device=self.x.device)
        with torch.inference_mode(), eval_mode(self.model):
            for lo in range(0, len(img), self.chunk):
                sl = slice(lo, lo + self.chunk)
                xm = torch.where(self.keep[a[sl]] & self.keep[b[sl]], self.x[img[sl]], self.fill)
                if self.channels_last:
                    xm = xm.contiguous(memory_format=torch.channels_last)
                logits = self.model(xm)
                out[sl] = logits.argmax(1)
                if margin is not None and logits.shape[1] > 1:
                    top = logits.topk(2, 1).values
                    margin[sl] = top[:, 0] - top[:, 1]
        self.forwards += len(img)
        return out

    def get(self, img: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The labels of x[img[r]] with masks a[r] and b[r] (equal: one mask), for every r (int64);
        each distinct unordered (image, pair) not computed before goes through the model once."""
        m = self.m
        key = (img * m + torch.minimum(a, b)) * m + torch.maximum(a, b)
        missing = key[self.known[key] < 0]
        if len(missing):
            new = torch.unique(missing)  # sorted: the images of a forward pass stay together
            self.known[new] = self._classify(new // (m * m), new // m % m, new % m)
        return self.known[key]

    def first_round(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one-mask labels (Algorithm 1's first round) and their logit margins (top-1 minus
        top-2: how far each is from changing), both N×M; computed before any pair."""
        n, m = len(self.x), self.m
        img = torch.arange(n, device=self.x.device).repeat_interleave(m)
        masks = torch.arange(m, device=self.x.device).repeat(n)
        margin = torch.zeros(n * m, device=self.x.device)
        key = (img * m + masks) * m + masks
        self.known[key] = self._classify(img, masks, masks, margin)
        return self.known[key].view(n, m), margin.view(n, m)

    def all_equal(self, img: torch.Tensor, a: torch.Tensor, b: torch.Tensor, target: torch.Tensor,
                  stages=STAGES) -> torch.Tensor:
        """Per item r (R items): whether the label of x[img[r]] under masks a[r, t] and b[r, t] equals
        target[r] for every t (a, b: R×T), with early exit (see the module docstring)."""
        alive = torch.ones(len(img), dtype=torch.bool, device=self.x.device)
        bounds = [t for t in stages if t < a.shape[1]] + [a.shape[1]]
        lo = 0
        for hi in bounds:
            idx = alive.nonzero(as_tuple=True)[0]
            if not len(idx) or hi <= lo:
                break
            width = hi - lo
            labels = self.get(img[idx].repeat_interleave(width), a[idx, lo:hi].reshape(-1), b[idx, lo:hi].reshape(-1))
            alive[idx] = (labels.view(len(idx), width) == target[idx, None]).all(1)
            lo = hi
        return alive
