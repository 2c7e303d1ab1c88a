"""PatchCleanser certification the reference's way: every two-mask prediction of one image at a time.

The peer of ``benchmarks/bench_certify.py`` and the independent implementation
``tests/test_patchcleanser.py`` checks patchbench's batched certification against. Written from the
paper (Xiang, Mahloujifar & Mittal, USENIX Security 2022: Algorithm 1 "double masking", Algorithm 2
"certification" with its Theorem 1, the R-covering mask set of Sec. 3) and from the structure of
the authors' code (inspire-group/PatchCleanser), not copied from it:

* ``utils/defense.py`` ``gen_mask_set``: stride ⌈(n − p + 1)/k⌉ per axis, mask side
  min(p + stride − 1, n), starts 0, stride, 2·stride, … ≤ n − side plus n − side when the stride
  does not divide it; one boolean tensor per mask (False = masked), row starts outer, column starts
  inner.
* ``pc_certification.py``: per batch of its loader, for every mask i and every j ≥ i, one forward
  of the images with both masks applied as 0 in the normalized tensor
  (``torch.where(torch.logical_and(mask,mask2),data,torch.tensor(0.))``) and the label
  (``masked_output.max(1)``) into ``prediction_map[:, i, j]``; then the map made symmetric
  (``prediction_map + prediction_map.T - np.diag(np.diag(prediction_map))``).
* ``certify_precomputed``: certified for a label iff every entry of the map equals it.
* ``double_masking_precomputed``: the first round is the map's diagonal; unanimous → that label
  (Case I); else every mask whose label is not the majority, in mask order, wins if its whole row
  equals its own label (Case II); if none wins, the majority (Case III).

Differences from the reference's loop, each in its favour or to agree on a tie the paper leaves open:

* ``batch`` images per forward: 1 (default) is the issue's "one image at a time" (the second round
  of ``double_masking`` forwards ``data[j]``, one image); ``pc_certification.py`` forwards its
  loader's 16 images per mask pair (``batch=16``).
* under ``torch.no_grad`` (the reference's loop records autograd graphs), no softmax and no
  confidence map (it stores one beside the labels).
* the majority of the first round breaks ties toward the smallest label, as patchbench does: the
  reference takes the last of ``np.argsort(cnt)``, whose order on equal counts is up to numpy's
  sort implementation. :func:`majority_tie` says which images have such a tie.

The classifier is a ``patchbench`` ``Classifier``: ``model.normalize`` plays the reference's data
loader, ``model.net`` its network.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def gen_masks(h: int, w: int, patch: int, k: int, device=None) -> list[torch.Tensor]:
    """The R-covering mask set as a list of 1×1×h×w bool tensors (True = pixel kept)."""
    stride = (math.ceil((h - patch + 1) / k), math.ceil((w - patch + 1) / k))
    size = (min(patch + stride[0] - 1, h), min(patch + stride[1] - 1, w))
    starts = []
    for n, m, s in ((h, size[0], stride[0]), (w, size[1], stride[1])):
        axis = list(range(0, n - m + 1, s))
        if (n - m) % s != 0:
            axis.append(n - m)
        starts.append(axis)
    masks = []
    for r in starts[0]:
        for c in starts[1]:
            mask = torch.ones(1, 1, h, w, dtype=torch.bool, device=device)
            mask[..., r:r + size[0], c:c + size[1]] = False
            masks.append(mask)
    return masks


def prediction_maps(model, x: torch.Tensor, masks: list[torch.Tensor], batch: int = 1) -> np.ndarray:
    """The symmetric two-mask prediction map of every image (N×M×M int), ``batch`` images per forward:
    the reference's double loop over (i, j ≥ i)."""
    num_mask = len(masks)
    zero = torch.tensor(0.0, device=x.device)
    maps = []
    with torch.no_grad():
        data_all = model.normalize(x)
        for lo in range(0, len(x), batch):
            data = data_all[lo:lo + batch]
            pm = np.zeros([len(data), num_mask, num_mask], dtype=int)
            for i, mask in enumerate(masks):
                for j in range(i, num_mask):
                    out = model.net(torch.where(torch.logical_and(mask, masks[j]), data, zero))
                    _, pred = out.max(1)
                    pm[:, i, j] = pred.cpu().numpy()
            for p in pm:
                maps.append(p + p.T - np.diag(np.diag(p)))
    return np.stack(maps)


def majority(first: np.ndarray) -> int:
    labels, counts = np.unique(first, return_counts=True)  # labels ascending
    return int(labels[np.argmax(counts)])  # the first maximum: the smallest tied label


def majority_tie(pm: np.ndarray) -> bool:
    """Whether the first round's most frequent label is tied (the one place the reference's choice is open)."""
    _, counts = np.unique(np.diag(pm), return_counts=True)
    return len(counts) > 1 and int((counts == counts.max()).sum()) > 1


def double_masking(pm: np.ndarray) -> int:
    """Algorithm 1 on one image's map."""
    first = np.diag(pm)
    if len(np.unique(first)) == 1:
        return int(first[0])  # Case I
    top = majority(first)
    for i in np.where(first != top)[0]:  # the disagreer masks, in mask order
        if np.all(pm[i] == first[i]):
            return int(first[i])  # Case II
    return top  # Case III


def certified_label(pm: np.ndarray) -> int:
    """The label every two-mask prediction agrees on, −1 if they do not (certify_precomputed holds
    for that label and no other)."""
    return int(pm.flat[0]) if np.all(pm == pm.flat[0]) else -1


def certify_loop(model, x: torch.Tensor, patch: int, k: int, batch: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(double-masking prediction, certified label or −1, majority tie) per image."""
    masks = gen_masks(x.shape[-2], x.shape[-1], patch, k, x.device)
    maps = prediction_maps(model, x, masks, batch)
    return (np.array([double_masking(pm) for pm in maps]), np.array([certified_label(pm) for pm in maps]),
            np.array([majority_tie(pm) for pm in maps]))
