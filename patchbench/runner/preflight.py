"""The check before a reproduction's long work: every piece each paper needs, named with its fix.

``reproduce`` runs :func:`preflight` over every preset of every chosen paper before it trains or
writes anything. It looks, without downloading or loading anything large, for

* a GPU at paper scale (or a preset that asks for ``cuda``) unless ``--allow-cpu``/``ALLOW_CPU=1``;
* each dataset split the preset reads (the dataset's ``probe``: the usual places, never a download);
* each torchvision weight file a preset names (torchvision's cache file, or the given path; for each
  model of a paper experiment that runs several, :attr:`patchbench.paper.Paper.variants`);
* what else a paper says its preset needs (:attr:`patchbench.paper.Paper.requires`, e.g. ImageNet-Patch's file);
* disk space for the caches (an estimate from the models' sizes, see :func:`disk_estimate`);

prints one screen per paper with what is missing and the exact command or variable that fixes
it, and raises :class:`PatchbenchError` (exit code 2) when anything is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from patchbench.cache.models import needs_training
from patchbench.config import Preset
from patchbench.data import get_dataset_info, load_split
from patchbench.data.registry import NotOfficial
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS
from patchbench.models.imagenet import weights_file
from patchbench.papers import get_paper

GiB = 1024 ** 3
PER_PRESET_BYTES = 256 * 1024 ** 2  # cells, per-image predictions, patches and maps of one preset (generous)
ALLOW_CPU_HINT = "run on a CUDA machine, or pass --allow-cpu (make: ALLOW_CPU=1) to run paper scale on the CPU knowingly (days)"


@dataclass(frozen=True)
class Missing:
    label: str  # short name of the piece: "GPU", a dataset, a weight file, "disk"
    what: str  # what is missing, where it was looked for
    fix: str  # the command or variable that provides it
    papers: tuple[str, ...] = ()


def needed_splits(p: Preset) -> list[str]:
    """The splits a preset reads: its evaluation split, and the training split when it trains or attacks."""

    trains = needs_training(p) or bool(p.attacks) or any(t != "raw" for t in p.trainings)
    return list(dict.fromkeys([p.data.eval_split] + (["train"] if trains else [])))


def check_device(p: Preset, scale: str, allow_cpu: bool) -> tuple[str, str] | None:
    wants_gpu = p.device.startswith("cuda") or (scale == "paper" and p.device == "auto")
    if wants_gpu and not torch.cuda.is_available() and not (allow_cpu and not p.device.startswith("cuda")):
        return f"torch {torch.__version__} sees no CUDA device (preset {p.name}, device {p.device})", ALLOW_CPU_HINT
    return None


def check_dataset(p: Preset) -> list[tuple[str, str]]:

    info, found = get_dataset_info(p.data.dataset), []
    for split in needed_splits(p):
        if info.probe is not None:
            miss = info.probe(p.data.root, split)
            if miss is None and p.data.verify and info.verify is not None:  # present: the official files? (MD5s)
                try:
                    info.verify(p.data.root, split)
                except NotOfficial as exc:
                    miss = (exc.what, exc.fix)
        else:  # a plugin's dataset that cannot say without loading: load it
            try:
                load_split(p.data.dataset, p.data.root, split, p.data.image_size, verify=p.data.verify)
                miss = None
            except PatchbenchError as exc:
                miss = (str(exc), "see the dataset's documentation")
        if miss is not None:
            found.append(miss)
    return found


def check_weights(p: Preset) -> tuple[str, str] | None:
    """The weight file a preset names: a path that must exist, or torchvision's cached file."""
    w = p.model.weights
    if w in (None, "scratch"):
        return None
    path = Path(w)
    if path.suffix in (".pth", ".pt", ".bin") or os.sep in w:
        return None if path.is_file() else (f"weights file {w} (preset {p.name})", "place it there, or --set model.weights=PATH")

    try:
        target = weights_file(p.model.arch, w)
    except PatchbenchError as exc:
        return str(exc), "fix model.weights in the preset"
    if target.is_file():
        return None
    from torchvision.models import get_model_weights  # reason: torchvision takes seconds to import; only named weights need it

    url = get_model_weights(p.model.arch)[w].url
    return (f"torchvision weights {p.model.arch} {w}: {target} (preset {p.name})",
            f"python -c \"from torchvision.models import get_model; get_model('{p.model.arch}', weights='{w}')\" "
            f"on a machine with network (downloads {url}), then copy {target.name} into {target.parent}/; "
            f"or --set model.weights=PATH")


@functools.lru_cache(maxsize=None)
def parameter_count(arch: str, num_classes: int, channels: int) -> int:
    """Parameters of ``arch``, counted on the meta device (nothing allocated); 100M when it cannot be built there."""

    try:
        with torch.device("meta"):
            net, _ = MODELS[arch].build(num_classes=num_classes, in_channels=channels, weights=None)
        return sum(t.numel() for t in net.parameters())
    except Exception:
        return 100_000_000


def disk_estimate(p: Preset) -> int:
    """Bytes a preset's caches may take: every model checkpoint it trains or caches (its parameter
    count, measured on the meta device: nothing is allocated), one more for the atomic write's temporary
    copy (checkpoints are written one at a time), plus :data:`PER_PRESET_BYTES`."""

    info = get_dataset_info(p.data.dataset)
    params = parameter_count(p.model.arch, info.num_classes, info.channels)
    sections = list(p.extra.values())  # a paper's own models: volumetric counterparts per syllabus and architecture
    volumized = [v for v in [p.model.volumize] + [getattr(s, "volumize", None) for s in sections] if v is not None]
    depth = max((v.get("depth_kernel", 1) if isinstance(v, dict) else v.depth_kernel for v in volumized), default=1)
    per_arch = 1 + sum(len(p.seeds_of(t)) for t in p.trainings) + sum(len(getattr(s, "syllabi", ()) or ()) for s in sections)
    models = per_arch * max([1] + [len(getattr(s, "architectures", ()) or ()) for s in sections])
    return 4 * params * depth * (models + 1) + PER_PRESET_BYTES


def free_bytes(path: Path) -> int:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def find_missing(plan: dict[str, list[Preset]], scale: str, results: Path, allow_cpu: bool) -> list[Missing]:
    """Every missing piece of the papers in ``plan`` (paper name -> its presets), each once, with the
    papers that need it."""
    pieces: dict[str, Missing] = {}  # by fix: the same piece needed twice (two splits, two papers) is listed once

    def add(label: str, found: tuple[str, str] | None, paper: str) -> None:
        if found is not None:
            what, fix = found
            old = pieces.get(fix, Missing(label, what.split(" (preset ")[0], fix))
            pieces[fix] = Missing(old.label, old.what, fix, tuple(dict.fromkeys(old.papers + (paper,))))

    need = 0
    for paper, presets in plan.items():
        for p in presets:
            add("GPU", check_device(p, scale, allow_cpu), paper)
            plugin = get_paper(p.paper)
            for v in plugin.variants(p):  # one per model where the paper's experiment runs several
                add(f"weights {v.model.arch} {v.model.weights}", check_weights(v), paper)
                need += disk_estimate(v)
            for found in check_dataset(p):
                add(p.data.dataset, found, paper)
            for label, what, fix in plugin.requires(p):  # the paper's own pieces (a published file)
                add(label, (what, fix), paper)
    free = free_bytes(results)
    if free < need:
        add("disk", (f"{free / GiB:.1f} GiB free under {Path(results).resolve()}, the caches may take {need / GiB:.1f} GiB",
                     "free space, or --results DIR (make: RESULTS=DIR) on a larger disk"), "all")
    return list(pieces.values())


def preflight(plan: dict[str, list[Preset]], scale: str, results: Path, allow_cpu: bool = False) -> None:
    """Refuse (exit code 2, nothing written) when any piece is missing: one screen, per paper the
    pieces it lacks, then each piece once with its fix."""
    missing = find_missing(plan, scale, results, allow_cpu)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if not missing:
        count = sum(len(v) for v in plan.values())
        console.print(f"preflight: {count} presets of {', '.join(plan)} ready ({scale} scale)")
        return
    console.print(f"[bold]preflight ({scale} scale): {len(missing)} missing piece(s); nothing was run or written[/]")
    for paper in plan:
        lacks = [m.label for m in missing if paper in m.papers or "all" in m.papers]
        console.print(f"  {paper:<11} " + (f"[red]missing:[/] {', '.join(lacks)}" if lacks else "[green]ready[/]"))
    for m in missing:
        console.print(f"\n[red]{m.label}[/]: {m.what}\n  [green]fix:[/] {m.fix}")
    raise PatchbenchError(f"preflight: {len(missing)} missing piece(s) listed above; nothing was run or written")
