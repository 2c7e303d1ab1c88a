"""Patch artifacts, placement, and the base class of patch attacks.

A patch replaces pixels (ICAART Eq. 3): x' = (1 - m) ⊙ x + m ⊙ δ, with m the patch mask placed
in the image. On disk a patch is three files sharing a stem: ``.pt`` (tensors only, loaded with
``weights_only=True``), ``.png`` (to look at; it also carries the exact tensors, :mod:`.patch_png`)
and ``.json`` (metadata). Where a patch goes is :mod:`.placement`.
"""

from __future__ import annotations

import hashlib
import io
import json
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from patchbench.attacks.base import Attack
from patchbench.attacks.optimizers import OPTIMIZERS, SCHEDULES
from patchbench.attacks import patch_png
from patchbench.attacks.affine_placement import AffinePlacement
from patchbench.attacks.placement import PLACEMENTS, Placement, paste  # noqa: F401  (paste: re-exported)
from patchbench.errors import PatchbenchError, check, is_int, is_number
from patchbench.util import atomic_write

def placement_from_meta(meta: dict):
    """A patch's test placement as its metadata records it: a :class:`Placement` (corner, ``random``,
    a region) or ImageNet-Patch's :class:`AffinePlacement`."""
    if meta.get("placement") == "affine":
        return AffinePlacement.from_meta(meta)
    return Placement(meta.get("placement", "top-right"), int(meta.get("margin", 0)), meta.get("region"),
                     int(meta.get("placement_seed", 0)))


@dataclass
class Patch:
    """A trained patch: δ (C×s×s in [0, 1]) and its mask m (1×s×s in {0, 1}) plus metadata."""

    pixels: torch.Tensor
    mask: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def placement(self):
        """Where the patch goes at test time, as its metadata records it (:mod:`.placement`)."""
        return placement_from_meta(self.meta)

    @property
    def target(self) -> int | None:
        t = self.meta.get("target")
        return None if t is None else int(t)

    def content_id(self) -> str:
        """sha256 of the tensors: the patch's identity in run ids (same pixels -> same cells)."""
        h = hashlib.sha256()
        for t in (self.pixels, self.mask):
            h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def apply(self, images: torch.Tensor, placement=None, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The patch pasted at ``placement`` (default: its own); ``indices``: the images' dataset indices,
        which a random placement draws each image's position from (default 0..N-1)."""
        placement = placement or self.placement
        if images.shape[1] != self.pixels.shape[0]:
            raise PatchbenchError(
                f"patch has {self.pixels.shape[0]} channel(s), images have {images.shape[1]}")
        return placement.paste(images, self.pixels.to(images), self.mask.to(images), indices)

    # ---- disk ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``stem.pt``, ``stem.png`` (the picture, carrying the exact patch: :mod:`.patch_png`) and
        ``stem.json`` atomically; returns the .pt path."""
        pt = Path(path).with_suffix(".pt")
        pt.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "content_id": self.content_id()}
        buf = io.BytesIO()
        torch.save({"pixels": self.pixels.detach().cpu(), "mask": self.mask.detach().cpu()}, buf)
        atomic_write(pt.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
        atomic_write(pt.with_suffix(".png"), self.png())
        atomic_write(pt, buf.getvalue())  # last: the .pt's presence means the artifact is whole
        self.meta = meta
        return pt

    def png(self) -> bytes:
        """The patch as a PNG: its 8-bit picture, with the exact tensors and metadata in a chunk."""
        return patch_png.encode(self.pixels, self.mask, self.content_id(), self.meta)

    @classmethod
    def load(cls, path: str | Path) -> "Patch":
        pt = Path(path)
        if pt.suffix != ".pt":
            pt = pt.with_suffix(".pt")
        if not pt.is_file():
            raise PatchbenchError(f"patch file not found: {path}")
        try:
            blob = torch.load(pt, map_location="cpu", weights_only=True)
            pixels, mask = blob["pixels"].float(), blob["mask"].float()
        except Exception as exc:
            raise PatchbenchError(f"cannot read patch file {pt}: {type(exc).__name__} (corrupt or not a patchbench patch)") from None
        if pixels.ndim != 3 or mask.ndim != 3 or pixels.shape[-2:] != mask.shape[-2:] or pixels.shape[-1] != pixels.shape[-2]:
            raise PatchbenchError(f"patch file {pt} holds tensors of unexpected shape {tuple(pixels.shape)}")
        meta: dict[str, Any] = {}
        js = pt.with_suffix(".json")
        if js.is_file():
            try:
                meta = json.loads(js.read_text())
            except json.JSONDecodeError:
                raise PatchbenchError(f"patch metadata {js} is not valid JSON") from None
        patch = cls(pixels, mask, meta)
        stored = meta.get("content_id")  # a patch file without its .json has nothing to be checked against
        if stored is not None and patch.content_id() != stored:
            raise PatchbenchError(
                f"patch file {pt} holds pixels {patch.content_id()}, not the patch {stored} recorded in {js.name} "
                f"(changed or damaged); clear it with `rm '{pt}' '{js}' '{pt.with_suffix('.png')}'` and rerun "
                "(a cached patch is trained again; a patch of your own: save it again)")
        return patch


class PatchAttack(Attack):
    """Base of patch attacks: ``fit(batches, channels, holdout) -> Patch`` and ``success_rate``;
    ``forward`` pastes the fitted patch. An attack object trains one patch size: ``from_config``
    takes an :class:`~patchbench.config.AttackConfig` carrying exactly one size (a preset entry
    listing several is built once per size)."""

    def __init__(self, model, size: int, target: int | None, placement: Placement, image_size: int):
        super().__init__(model, targeted=target is not None, target=target)
        self.size = size
        self.placement = placement
        self.image_size = image_size
        self.patch: Patch | None = None

    @abstractmethod
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], channels: int | None = None,
            holdout: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
        """Optimize a patch of ``channels`` channels on ``(images, labels)`` batches; ``holdout``:
        a batch of training images an attack may choose among candidate patches on (never
        evaluation images). Sets and returns ``self.patch``."""

    @abstractmethod
    def success_rate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Fraction in [0, 1] of the images of ``batches`` on which the fitted patch, at the test
        placement, succeeds (targeted: the target class; untargeted: any wrong class)."""

    @classmethod
    @abstractmethod
    def from_config(cls, model, cfg, image_size: int, progress: bool = False) -> "PatchAttack":
        """Build from an :class:`~patchbench.config.AttackConfig` with one size (:meth:`config_size`)."""

    @classmethod
    def config_size(cls, cfg, image_size: int) -> int:
        """The one patch size of ``cfg``, after :meth:`check_config`."""
        cls.check_config(cfg, image_size, where=f"attack {cfg.name}")
        if len(cfg.sizes) != 1:
            raise PatchbenchError(f"attack {cfg.name}: an attack is built for one patch size, the entry lists "
                                  f"{cfg.sizes} (build one per size)")
        return cfg.sizes[0]

    def apply(self, images: torch.Tensor, patch: Patch, placement: Placement | None = None,
              indices: torch.Tensor | None = None) -> torch.Tensor:
        return patch.apply(images, placement or self.placement, indices)

    @classmethod
    def check_config(cls, cfg, image_size: int, where: str = "attack") -> None:
        """Check an :class:`~patchbench.config.AttackConfig` naming this attack against the
        preset's image size. One-line PatchbenchError naming the key."""
        check(cfg.placement in PLACEMENTS, f"{where}.placement must be one of {', '.join(PLACEMENTS)}, got {cfg.placement!r}")
        check(isinstance(cfg.sizes, list) and len(cfg.sizes) > 0, f"{where}.sizes is empty")
        check(is_int(cfg.margin) and cfg.margin >= 0, f"{where}.margin must be an integer >= 0, got {cfg.margin!r}")
        check(cfg.region is None or isinstance(cfg.region, str), f"{where}.region must be a placement mask spec or null, got {cfg.region!r}")
        for s in cfg.sizes:
            check(is_int(s) and 0 < s < image_size, f"patch size must be an integer in 1..{image_size - 1} px for {image_size} px images, got {s!r}")
            check(s + 2 * cfg.margin <= image_size, f"patch size {s} px plus margin {cfg.margin} px does not fit in {image_size} px images")
            cls.config_placement(cfg).check(image_size, s, where)
        check(is_int(cfg.steps) and cfg.steps >= 1, f"{where}.steps must be an integer >= 1, got {cfg.steps!r}")
        check(is_int(cfg.batch_size) and cfg.batch_size >= 1 and is_number(cfg.lr) and cfg.lr > 0
              and is_number(cfg.momentum) and 0 <= cfg.momentum < 1,
              f"{where}: batch_size >= 1, lr > 0, 0 <= momentum < 1 are required")
        check(cfg.target is None or (is_int(cfg.target) and cfg.target >= 0),
              f"{where}.target must be a class index >= 0 or null (untargeted), got {cfg.target!r}")
        check(cfg.optimizer in OPTIMIZERS, f"{where}.optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
        check(cfg.schedule in SCHEDULES, f"{where}.schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
        check(is_int(cfg.restarts) and 1 <= cfg.restarts <= 64, f"{where}.restarts must be an integer in 1..64, got {cfg.restarts!r}")
        check(is_int(cfg.select_n) and cfg.select_n >= 1, f"{where}.select_n must be an integer >= 1, got {cfg.select_n!r}")
        check(isinstance(cfg.seeds, list) and all(is_int(v) for v in cfg.seeds) and len(set(cfg.seeds)) == len(cfg.seeds),
              f"{where}.seeds must be a list of distinct integers, got {cfg.seeds!r}")
        check(is_number(cfg.rotation) and 0 <= cfg.rotation <= 180, f"{where}.rotation must be in 0..180 degrees, got {cfg.rotation!r}")
        check(isinstance(cfg.scale_range, list) and len(cfg.scale_range) == 2 and all(is_number(v) for v in cfg.scale_range)
              and 0 < cfg.scale_range[0] <= cfg.scale_range[1],
              f"{where}.scale_range must be [lo, hi] with 0 < lo <= hi, got {cfg.scale_range!r}")

    @classmethod
    def config_placement(cls, cfg) -> Placement:
        """The test placement an attack entry asks for (its corner or ``random``, inside its region)."""
        return Placement(cfg.placement, cfg.margin, cfg.region)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.patch is None:
            raise PatchbenchError(f"{self.name}: call fit() first (or load a patch)")
        return self.apply(images, self.patch)
