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
  reference loops and breaks at a disagreer's first differing label (``if masked_pred!=dis: ...
  break``); here all disagreers of the batch are checked together, each stopping at its first
  differing label (:meth:`~patchbench.defenses.mask_pairs.MaskedLabels.all_equal`), the other
  masks in the order of :func:`second_round_order` (the same answer: the first winner in mask order).
* **Certification** (Algorithm 2): an image is certified for label y when every two-mask
  prediction, the one-mask ones included, equals y (``certify_precomputed``:
  ``np.all(prediction_map==label)``); then no patch of side ≤ p anywhere changes the double-masking
  prediction. Only first-round-unanimous images can pass (the diagonal of the map is the first
  round), so only they go on to the k²(k² − 1)/2 distinct two-mask pairs (the pair set is
  symmetric), and an image stops at its first pair whose label differs (the answer is then
  "not certified" whatever the rest say), the pairs in the order of :func:`certificate_order`.
  A certified image costs every pair, as in the reference. ``certify=False`` skips it.

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

All model passes run batched (:mod:`patchbench.defenses.mask_pairs`): each distinct masked image of
the batch goes through the model once (the first round's labels serve the pairs' diagonal, a pair
(i, j) is (j, i)), ``chunk`` masked images per forward, built from index tensors, under
``torch.inference_mode``, ``channels_last`` when the model is. The evaluation order and the early
exits change only how many images are classified (``maps["forwards"]``), never the answer — up to
floating-point differences between batch compositions, as any batched classifier.
``benchmarks/bench_certify.py`` times this against the reference's per-image loop
(``benchmarks/pc_reference.py``) on the ICAART demo, asserting equal certificates and predictions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from patchbench.defenses.base import CERTIFIED, OUT, Defense, register_defense
from patchbench.defenses.mask_pairs import MaskedLabels
from patchbench.errors import check, is_int, is_number


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


def certificate_order(margin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (rows of ``margin``, its first-round logit margins, R×M), every pair i < j, the pairs
    of the least confident one-mask predictions first (smallest margin_i + margin_j): those are
    the closest to a label change, which ends the check. R×P mask indices (i, j)."""
    m = margin.shape[1]
    ia, ib = torch.triu_indices(m, m, offset=1, device=margin.device)
    order = (margin[:, ia] + margin[:, ib]).argsort(dim=1, stable=True)
    return ia[order], ib[order]


def second_round_order(first: torch.Tensor, margin: torch.Tensor, di: torch.Tensor) -> torch.Tensor:
    """Per disagreer (its image's first-round labels and margins, R×M, and its mask di), every other
    mask j: first those whose one-mask label differs from the disagreer's, most confident first — the
    likeliest to pull the two-mask label away from it, which ends its check. R×(M − 1)."""
    m = first.shape[1]
    by_conf = (-margin).argsort(dim=1, stable=True)
    same = (first == first.gather(1, di[:, None])).to(torch.int64)  # 0: another label, 1: the disagreer's
    same.scatter_(1, di[:, None], 2)  # the disagreer itself: last, then dropped
    order = by_conf.gather(1, same.gather(1, by_conf).argsort(dim=1, stable=True))
    return order[:, :m - 1]


@register_defense
@dataclasses.dataclass
class PatchCleanser(Defense):
    """Double masking with certification (Xiang et al. 2022); see the module docstring."""

    name: ClassVar[str] = "patchcleanser"
    uses_lambda: ClassVar[bool] = False
    gradient: ClassVar[str] = "exact"  # x ⊙ chosen mask: the mask is piecewise constant in x
    saved_maps: ClassVar[tuple[str, ...]] = ()
    certifies: ClassVar[bool] = True  # maps[CERTIFIED] when ``certify`` (the clean cells)

    patch_px: int = 32  # side of the square patch the masks must cover (the paper's 2 % of 224 px: 32)
    k: int = 6  # masks per axis (the paper's default: 6, i.e. 36 masks)
    fill: object = "mean"  # "mean": the classifier's normalization mean (the authors' 0 after Normalize) | a grey in [0, 1]
    certify: bool = True  # compute the certificate (the k²(k²-1)/2 pairs of first-round-unanimous images)
    # masked images per forward pass; None: 64 on the CPU (small_vgg at 64 px: batches of 32-64 stay in cache,
    # 3× faster per image than one at a time and 1.6× faster than 256), 256 on a GPU
    chunk: int | None = dataclasses.field(default=None, metadata={"param": False})

    def validate(self):
        self.require("patch_px", is_int(self.patch_px) and self.patch_px >= 1, "an integer >= 1")
        self.require("k", is_int(self.k) and self.k >= 1, "an integer >= 1")
        self.require("fill", self.fill == "mean" or (is_number(self.fill) and 0 <= self.fill <= 1),
                     "'mean' or a number in [0, 1]")
        self.require("certify", isinstance(self.certify, bool), "true or false")
        self.require("chunk", self.chunk is None or (is_int(self.chunk) and self.chunk >= 1), "an integer >= 1")

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
        chunk = self.chunk or (64 if dev.type == "cpu" else 256)
        labels = MaskedLabels(model, xd, keep, fill, chunk)
        first, margin = labels.first_round()
        counts = torch.zeros(n, int(first.max()) + 1, dtype=torch.int64, device=dev)
        counts.scatter_add_(1, first, torch.ones_like(first))
        majority = counts.argmax(1)  # the first maximum: ties go to the smallest label
        agree = first == majority[:, None]
        unanimous = agree.all(1)
        # second round: every disagreer mask (image b, mask i) against every other mask j (j = i: its own label)
        db, di = (~agree).nonzero(as_tuple=True)
        winner = torch.full((n,), m, dtype=torch.int64, device=dev)
        if len(db):
            others = second_round_order(first[db], margin[db], di)
            ok = labels.all_equal(db, di[:, None].expand_as(others), others, first[db, di])
            winner.scatter_reduce_(0, db[ok], di[ok], reduce="amin")
        case2 = winner < m
        chosen = torch.where(case2, winner, agree.to(torch.int64).argmax(1))  # else the first majority mask
        pred = first.gather(1, chosen[:, None])[:, 0]
        certified = torch.full((n,), -1, dtype=torch.int64, device=dev)
        if self.certify:
            # only a first-round-unanimous image can pass; it needs every pair i < j (i = j is the first round)
            cand = unanimous.nonzero(as_tuple=True)[0]
            if len(cand):
                ia, ib = certificate_order(margin[cand])
                sure = labels.all_equal(cand, ia, ib, majority[cand])
                certified[cand[sure]] = majority[cand[sure]]
        case = torch.where(unanimous, 1, torch.where(case2, 2, 3))
        return {"pred": pred, "mask_index": chosen, "first_round": first, "case": case, CERTIFIED: certified,
                "keep": keep, "fill": fill, "forwards": labels.forwards}

    def maps(self, x, model=None):
        check(model is not None, "patchcleanser needs the classifier: it classifies masked copies of each image")
        d = self.decide(x, model)
        out = torch.where(d["keep"][d["mask_index"]], x, d["fill"].to(x))  # x stays in the graph (exact gradient)
        maps = {OUT: out, "pred": d["pred"], "case": d["case"], "forwards": d["forwards"]}
        if self.certify:  # without the certificate the engine stores no certified column
            maps[CERTIFIED] = d[CERTIFIED]
        return maps
