"""The per-cell audit's image-level probes, batched: *unavailable gradients* per cell and Pintor's
instability score per defense × λ × patch region, on the first ``n`` evaluation images with the
cell's patch pasted (the probes themselves: :mod:`.gradients`, :mod:`.stability`).

* Gradients: the cells that share a defense, its parameters, λ and gradient path (as written for a
  transferred patch, the declared one for an adaptive cell, with the gradient options it trained
  with) are probed together: each distinct patch (pixels and placement) once, the patched images of
  several patches in one batch of at most ``chunk`` images, each image with its own patch region
  (defenses are batch-invariant by contract, so an image's gradient does not depend on its batch
  mates). Result per cell: how many of its images get no gradient on the patch's pixels.
* Stability: Pintor's v (:func:`~patchbench.audit.stability.unstable_prediction_scores`) through the
  defense and through no defense, on the same images and the same probes (one seeded generator),
  probed at the attack's starting point (the clean images, as the reference code does:
  ``src/indicators/indicators.py`` lines 80-119 perturb the attack's input ``x``) on the patch
  region's pixels; the score is the mean over the images of v(defense) − v(none), once per defense ×
  parameters × λ × region (and v(none) once per region).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from patchbench.attacks.patch import Patch, Placement
from patchbench.audit.gradients import AS_WRITTEN, DECLARED, unavailable_gradients
from patchbench.audit.stability import unstable_prediction_scores
from patchbench.defenses import NoDefense, build_defense, is_undefended

GRADIENT_CHUNK = 256  # images per gradient batch (several patches' copies of the n images)


@dataclass(frozen=True)
class Job:
    """One attacked cell's probes: its patch (content id, placement ``kind+margin``) and its defense."""

    run_id: str
    patch_id: str
    placement: str
    defense: str
    defense_params: str  # the cell's JSON
    lam: float | None
    adaptive: bool  # optimised through this defense: probe the gradient it declares
    grad_options: str = "{}"  # JSON: the gradient choices the adaptive attack trained with


def grad_options(attack_params) -> str:
    """The ``grad_options`` of an adaptive cell's ``attack_params`` (JSON), ``"{}"`` otherwise."""
    try:
        p = json.loads(attack_params) if isinstance(attack_params, str) else {}
    except ValueError:
        p = {}
    return json.dumps(p.get("grad_options") or {} if isinstance(p, dict) else {}, sort_keys=True)


def _placement(text: str, patch: Patch) -> Placement:
    if isinstance(text, str) and "+" in text:  # ``top-right+2``; a placement mask (``@region``) moves no fixed patch
        kind, _, margin = text.split("@")[0].rpartition("+")
        return Placement(kind, int(margin))
    return patch.placement


class PatchedImages:
    """The evaluation images with each distinct (patch, placement) pasted, and its region, loaded once."""

    def __init__(self, files: dict[str, Path], images: torch.Tensor):
        self.files, self.images, self._done = files, images, {}

    def get(self, patch_id: str, placement: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(patched images N×C×H×W, region H×W bool)."""
        key = (patch_id, placement)
        if key not in self._done:
            patch = Patch.load(self.files[patch_id])
            where = _placement(placement, patch)
            size, s = self.images.shape[-1], patch.size
            top, left = where.offset(size, s)
            region = torch.zeros(size, size, dtype=torch.bool, device=self.images.device)
            region[top:top + s, left:left + s] = patch.mask[0].bool().to(self.images.device)
            self._done[key] = (patch.apply(self.images, where), region)
        return self._done[key]


def _defense(job: Job, model):
    params = json.loads(job.defense_params) if isinstance(job.defense_params, str) else {}
    return build_defense(job.defense, params, model)


def gradient_probes(jobs: list[Job], patched: PatchedImages, model: torch.nn.Module, labels: torch.Tensor,
                    chunk: int = GRADIENT_CHUNK, progress=None) -> dict[str, int]:
    """run id -> how many of its images get no gradient on the patch's pixels (module docstring)."""
    groups: dict[tuple, list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.defense, j.defense_params, j.lam, j.adaptive, j.grad_options if j.adaptive else ""),
                          []).append(j)
    missing: dict[str, int] = {}
    for (_, _, lam, adaptive, options), group in groups.items():
        defense = _defense(group[0], model)
        path, opts = (DECLARED, json.loads(options)) if adaptive else (AS_WRITTEN, None)
        patches = list(dict.fromkeys((j.patch_id, j.placement) for j in group))
        n = len(labels)
        per = max(1, chunk // n)  # patches per batch
        counts: dict[tuple, int] = {}
        for lo in range(0, len(patches), per):
            part = patches[lo:lo + per]
            xs, regions = zip(*(patched.get(*p) for p in part))
            x = torch.cat(xs)
            mask = torch.cat([r.expand(n, 1, *r.shape) for r in regions])
            none = unavailable_gradients(model, defense, x, labels.repeat(len(part)), lam=lam, mask=mask, path=path,
                                         options=opts)
            for p, k in zip(part, none.view(len(part), n).sum(1).tolist()):
                counts[p] = int(k)
        for j in group:
            missing[j.run_id] = counts[(j.patch_id, j.placement)]
            if progress is not None:
                progress.update(1)
    return missing


def stability_probes(jobs: dict[str, Job], patched: PatchedImages, model: torch.nn.Module, images: torch.Tensor,
                     labels: torch.Tensor, probes: int) -> dict[str, float]:
    """key -> mean over the images of Pintor's v through the job's defense minus v without one (module
    docstring), for each ``key`` of ``jobs`` (one job per defense × parameters × λ × region)."""
    gen = torch.Generator(device=images.device)
    undefended: dict[bytes, torch.Tensor] = {}
    out: dict[str, float] = {}
    for key, job in jobs.items():
        _, region = patched.get(job.patch_id, job.placement)
        tag = region.cpu().numpy().tobytes()
        if tag not in undefended:
            gen.manual_seed(0)
            undefended[tag] = unstable_prediction_scores(model, NoDefense(), images, labels, n=probes, mask=region,
                                                         generator=gen)
        if is_undefended(job.defense):
            out[key] = 0.0
            continue
        gen.manual_seed(0)  # the same probes as the undefended pipeline's
        v = unstable_prediction_scores(model, _defense(job, model), images, labels, n=probes, lam=job.lam, mask=region,
                                       generator=gen)
        out[key] = float((v - undefended[tag]).mean())
    return out
