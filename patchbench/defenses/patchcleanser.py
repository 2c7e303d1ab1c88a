"""PatchCleanser (Xiang, Mahloujifar & Mittal, "PatchCleanser: Certifiably Robust Defense against
Adversarial Patches for Any Image Classifier", USENIX Security 2022): double masking with a
certificate, on any classifier, no training change.

Read from the paper (Algorithm 1 "double masking", Algorithm 2 "certification" with its theorem,
the R-covering mask set) and the authors' ``utils/defense.py`` (inspire-group/PatchCleanser:
``gen_mask_set``, ``double_masking``, ``certify_precomputed``); the lines followed are quoted.

* **Mask set** (per axis, image side n, patch side p, k masks per axis): stride
  s = ⌈(n − p + 1)/k⌉ and mask side m = min(p + s − 1, n) — ``MASK_STRIDE = ...ceil((IMG_SIZE[0] -
  PATCH_SIZE[0] + 1)/args.num_mask)``, ``MASK_SIZE = (min(PATCH_SIZE[0]+MASK_STRIDE[0]-1,
  IMG_SIZE[0]), ...)`` —; masks start at 0, s, 2s, … ≤ n − m, plus n − m when s does not divide it
  (the last one clamped to the border). A mask at t covers the patch at a iff t ≤ a ≤ t + s − 1,
  so the starts cover every a in [0, n − p]: any p×p patch lies inside some mask (R-covering).
  The 2-D set is every (row start, column start), row-major: at most k² masks.
* **Masking**: a masked pixel takes the value ``fill``. The authors mask the normalized tensor with
  0 (``torch.where(mask,data,torch.tensor(0.))``), i.e. the dataset mean in pixel space:
  ``fill="mean"`` (default) uses the classifier's normalization mean; a number in [0, 1] fills
  with that grey.
* **Double masking** (Algorithm 1): first round, the k² one-mask predictions. Unanimous: that label
  (Case I; no second round, as the paper). Otherwise the majority label (most frequent; a tie goes
  to the smallest label — the paper leaves ties open, this is our choice) and, for every
  *disagreer* mask (its label ≠ the majority) in mask order, the second round: the label of every
  two-mask image (that mask ∧ each mask of the set). The first disagreer whose second-round
  labels all equal its own label wins (Case II); if none does, the majority (Case III). The
  reference loops and breaks early; here all disagreers of the batch go through the model in one
  batched pass (the same answer: the first winner in mask order).
* **Certification** (Algorithm 2): an image is certified for label y when every two-mask
  prediction, the one-mask ones included, equals y (``certify_precomputed``:
  ``np.all(prediction_map==label)``); then no patch of side ≤ p anywhere changes the double-masking
  prediction. Only first-round-unanimous images can pass, so only they pay for the
  k²(k² − 1)/2 distinct two-mask pairs (the pair set is symmetric). ``certify=False`` skips it.

**How this fits the engine** (a defense maps images to images, the engine classifies them): the
prediction PatchCleanser makes is always the label of one first-round masked image — Case I and
III: the first mask whose label is the majority; Case II: the winning disagreer mask. ``maps``
returns that masked image as :data:`~patchbench.defenses.base.OUT`, so the engine's own forward
pass yields the double-masking prediction (up to floating-point differences between batch sizes)
and every table, store and resume path is the usual one. Beside it, under
:data:`~patchbench.defenses.base.CERTIFIED`, the label each image is certified for (−1: none); the
engine compares it with the true label and stores the per-image ``certified`` result and the
cell's ``n_certified`` / ``certified_accuracy``. No λ. Gradient ``exact``: the output is
x ⊙ mask + fill ⊙ (1 − mask) with the mask a piecewise-constant function of x, so autograd through
``maps`` (mask held, x differentiated) is the true derivative almost everywhere; the adaptive
attack thus optimizes the patch through the mask the defense picks.

All model passes run batched, ``chunk`` masked images at a time, under ``torch.no_grad``; masked
images are built per chunk from index tensors (no Python loop over pixels or images).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from patchbench.defenses.base import CERTIFIED, OUT, Defense
from patchbench.errors import check, is_int, is_number
from patchbench.util import eval_mode


def axis_starts(n: int, p: int, k: int) -> tuple[list[int], int, int]:
    """(mask starts, mask side m, stride s) along one axis of n pixels for a patch side p and k
    masks per axis (see the module docstring)."""
    check(0 < p <= n, f"patchcleanser: a {p} px patch does not fit a {n} px image axis")
    s = math.ceil((n - p + 1) / k)
    m = min(p + s - 1, n)
    starts = list(range(0, n - m + 1, s))
    if (n - m) % s:
        starts.append(n - m)
    return starts, m, s


def mask_set(h: int, w: int, p: int, k: int, device=None) -> torch.Tensor:
    """The R-covering mask set of an h×w image as keep-masks (True = pixel kept), M×1×h×w bool,
    row-major over (row start, column start)."""
    rows, mh, _ = axis_starts(h, p, k)
    cols, mw, _ = axis_starts(w, p, k)
    r = torch.arange(h, device=device)
    c = torch.arange(w, device=device)
    rt = torch.tensor(rows, device=device).view(-1, 1)
    ct = torch.tensor(cols, device=device).view(-1, 1)
    in_r = (r >= rt) & (r < rt + mh)  # R×h
    in_c = (c >= ct) & (c < ct + mw)  # C×w
    covered = in_r[:, None, :, None] & in_c[None, :, None, :]  # R×C×h×w
    return ~covered.reshape(-1, 1, h, w)


def masked_labels(model, x, keep, img, a, b, fill, chunk: int) -> torch.Tensor:
    """The model's labels of x[img[r]] with masks a[r] and b[r] applied (a[r] == b[r]: one mask),
    for every r, ``chunk`` images per forward pass (int64, on x's device)."""
    out = torch.empty(len(img), dtype=torch.int64, device=x.device)
    with torch.no_grad(), eval_mode(model):
        for lo in range(0, len(img), chunk):
            sl = slice(lo, lo + chunk)
            k = keep[a[sl]] & keep[b[sl]]
            out[sl] = model(torch.where(k, x[img[sl]], fill)).argmax(1)
    return out


@dataclasses.dataclass
class PatchCleanser(Defense):
    """Double masking with certification (Xiang et al. 2022); see the module docstring."""

    name: ClassVar[str] = "patchcleanser"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # x ⊙ chosen mask: the mask is piecewise constant in x
    saved_maps: ClassVar[tuple[str, ...]] = ()

    patch_px: int = 32  # side of the square patch the masks must cover (the paper's 2 % of 224 px: 32)
    k: int = 6  # masks per axis (the paper's default: 6, i.e. 36 masks)
    fill: object = "mean"  # "mean": the classifier's normalization mean (the authors' 0 after Normalize) | a grey in [0, 1]
    certify: bool = True  # compute the certificate (the k²(k²-1)/2 pairs of first-round-unanimous images)
    chunk: int = dataclasses.field(default=256, metadata={"param": False})  # images per forward pass

    def validate(self):
        self.require("patch_px", is_int(self.patch_px) and self.patch_px >= 1, "an integer >= 1")
        self.require("k", is_int(self.k) and self.k >= 1, "an integer >= 1")
        self.require("fill", self.fill == "mean" or (is_number(self.fill) and 0 <= self.fill <= 1),
                     "'mean' or a number in [0, 1]")
        self.require("certify", isinstance(self.certify, bool), "true or false")
        self.require("chunk", is_int(self.chunk) and self.chunk >= 1, "an integer >= 1")

    def fill_value(self, x: torch.Tensor, model) -> torch.Tensor:
        if self.fill == "mean":
            mean = getattr(model, "mean", None)
            check(mean is not None, "patchcleanser fill='mean' needs a classifier with a normalization mean")
            return mean.to(x).reshape(1, -1, 1, 1).expand(1, x.shape[1], 1, 1)
        return torch.full((1, x.shape[1], 1, 1), float(self.fill), dtype=x.dtype, device=x.device)

    def decide(self, x: torch.Tensor, model) -> dict[str, torch.Tensor]:
        """Algorithm 1 (+ the certificate) on the batch: per image the prediction, the index of the
        mask whose one-mask label it is, the first-round labels, the case (1, 2, 3) and the
        certified label (−1: none)."""
        xd = x.detach()
        n, _, h, w = xd.shape
        dev = xd.device
        keep = mask_set(h, w, int(self.patch_px), int(self.k), dev)
        fill = self.fill_value(xd, model)
        m = len(keep)
        ar = torch.arange(m, device=dev)
        img = torch.arange(n, device=dev).repeat_interleave(m)
        first = masked_labels(model, xd, keep, img, ar.repeat(n), ar.repeat(n), fill, self.chunk).view(n, m)
        counts = torch.zeros(n, int(first.max()) + 1, dtype=torch.int64, device=dev)
        counts.scatter_add_(1, first, torch.ones_like(first))
        majority = counts.argmax(1)  # the first maximum: ties go to the smallest label
        agree = first == majority[:, None]
        unanimous = agree.all(1)
        # second round: every disagreer mask (image b, mask i) against every mask j
        db, di = (~agree).nonzero(as_tuple=True)
        winner = torch.full((n,), m, dtype=torch.int64, device=dev)
        if len(db):
            second = masked_labels(model, xd, keep, db.repeat_interleave(m), di.repeat_interleave(m), ar.repeat(len(db)),
                                   fill, self.chunk).view(len(db), m)
            ok = (second == first[db, di][:, None]).all(1)
            winner.scatter_reduce_(0, db[ok], di[ok], reduce="amin")
        case2 = winner < m
        chosen = torch.where(case2, winner, agree.to(torch.int64).argmax(1))  # else the first majority mask
        pred = first.gather(1, chosen[:, None])[:, 0]
        certified = torch.full((n,), -1, dtype=torch.int64, device=dev)
        if self.certify:
            cand = unanimous.nonzero(as_tuple=True)[0]
            ia, ib = torch.triu_indices(m, m, offset=1, device=dev)
            if len(cand) and len(ia):
                two = masked_labels(model, xd, keep, cand.repeat_interleave(len(ia)), ia.repeat(len(cand)),
                                    ib.repeat(len(cand)), fill, self.chunk).view(len(cand), len(ia))
                sure = (two == majority[cand][:, None]).all(1)
                certified[cand[sure]] = majority[cand[sure]]
            elif len(cand):  # one mask: the pairs are the first round itself
                certified[cand] = majority[cand]
        case = torch.where(unanimous, 1, torch.where(case2, 2, 3))
        return {"pred": pred, "mask_index": chosen, "first_round": first, "case": case, CERTIFIED: certified,
                "keep": keep, "fill": fill}

    def maps(self, x, model=None):
        check(model is not None, "patchcleanser needs the classifier: it classifies masked copies of each image")
        d = self.decide(x, model)
        out = torch.where(d["keep"][d["mask_index"]], x, d["fill"].to(x))  # x stays in the graph (exact gradient)
        maps = {OUT: out, "pred": d["pred"], "case": d["case"]}
        if self.certify:  # without the certificate the engine stores no certified column
            maps[CERTIFIED] = d[CERTIFIED]
        return maps
