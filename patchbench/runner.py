"""How a preset runs, for every command: models, patches, defenses, grids, caching.

``train-model``, ``train-patch``, ``defend``, ``evaluate``, ``sweep`` and ``reproduce`` all come
through here, so each decision is made once: which device, which cached model or patch, which
defense with which parameters and λ list, which experiment a preset is.

Experiments (``Preset.experiment``, :data:`EXPERIMENTS`):

* ``patch-defense``: one classifier; clean and patched images × (no defense + each defense × λ);
* ``evasion``: one classifier per training objective (``trainings``) × (clean + each evasion
  attack of ``evasion``).

Artifacts are cached under ``<results>/artifacts`` keyed by the hash of the config that made
them, so a rerun reuses them; each is written atomically (a killed run leaves no half file).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch
from rich.console import Console

from patchbench.attacks import attack_class
from patchbench.attacks.patch import Patch
from patchbench.config import AttackConfig, Preset, stable_hash
from patchbench.data import ImageSource, eval_indices, get_dataset_info, iterate, load_split
from patchbench.defenses import DEFENSES, build_defense
from patchbench.defenses.base import Defense, NoDefense
from patchbench.engine import Condition, DefenseRun, evaluate
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS, Classifier, build_classifier
from patchbench.results import ResultStore, now_utc
from patchbench.training import accuracy, distributed, train
from patchbench.util import atomic_write

console = Console(stderr=True)

DEFAULT_LAMBDA = 2.3  # λ of a defense the preset does not list (the ICAART tables' middle λ)


def deterministic() -> None:
    """Deterministic algorithms where torch offers them (cuBLAS workspace, cuDNN without
    autotuning, ``use_deterministic_algorithms`` warning where an op has none). On the CPU every
    op patchbench uses is deterministic already; on a GPU this removes the avoidable variation."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # must precede the first cuBLAS call
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """The device of ``name`` (auto: CUDA when available); switches on :func:`deterministic`."""
    deterministic()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PatchbenchError(f"device {name} requested but CUDA is not available")
    return torch.device(name)


def state_id(model: torch.nn.Module) -> str:
    """Content hash of a model's parameters and buffers (its identity in run ids)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_data(preset: Preset) -> None:
    """Fail fast (one-line error) when a split the preset needs is missing, before long work."""
    d = preset.data
    load_split(d.dataset, d.root, d.eval_split, d.image_size)
    if needs_training(preset) or preset.attacks or any(t != "raw" for t in preset.trainings):
        load_split(d.dataset, d.root, "train", d.image_size)


# --------------------------------------------------------------------------------------------
# models


@dataclass
class LoadedModel:
    model: Classifier
    model_id: str
    meta: dict


def model_config_hash(preset: Preset) -> str:
    d = preset.data
    model = asdict(preset.model)
    del model["amp"]  # an evaluation setting: the same weights serve fp32 and autocast evaluation
    if model["volumize"] is None:
        del model["volumize"]  # 2-D models keep the cache names they had before volumetric models existed
    if not str(model["train"]["training"]).startswith("lat"):
        for key in ("lat_region", "lat_keep_box", "lat_mask_threshold"):
            model["train"].pop(key)
    if model["train"]["syllabus"] is None:
        for key in ("syllabus", "syllabus_order", "syllabus_window", "syllabus_bins"):
            model["train"].pop(key)
    return stable_hash({"model": model, "dataset": d.dataset, "image_size": d.image_size})


def model_path(preset: Preset, store: ResultStore) -> Path:
    m, d = preset.model, preset.data
    kind = f"{m.arch}-volumetric-{m.volumize.metric}" if m.volumize is not None else m.arch
    return store.artifacts / "models" / f"{kind}-{d.dataset}-{d.image_size}px-{model_config_hash(preset)}.pt"


def needs_training(preset: Preset) -> bool:
    """Small nets are trained by patchbench; pretrained ones only for a non-raw objective."""
    w = preset.model.weights
    from_scratch = w == "scratch" or (w is None and not MODELS[preset.model.arch].pretrained)
    return from_scratch or preset.model.train.training != "raw"


def with_training(preset: Preset, training: str) -> Preset:
    """A copy of ``preset`` whose model is trained with objective ``training``."""
    p = copy.deepcopy(preset)
    p.model.train.training = training
    return p


def _fresh_model(preset: Preset, device: torch.device) -> Classifier:
    torch.manual_seed(preset.model.train.seed)  # deterministic init (also for random stand-ins)
    weights = None if preset.model.weights == "scratch" else preset.model.weights
    model = build_classifier(preset.model.arch, preset.data.dataset, weights, preset.data.image_size,
                             volumize=preset.model.volumize)
    model = model.to(device)
    if preset.model.channels_last and preset.model.volumize is None:  # channels_last is a 4-D layout
        model = model.to(memory_format=torch.channels_last)
    return model


def ensure_model(preset: Preset, store: ResultStore, device: torch.device, force: bool = False,
                 progress: bool = True, on_epoch_end=None) -> LoadedModel:
    """The preset's classifier: pretrained weights, a cached checkpoint, or trained now and cached.
    ``on_epoch_end(epoch, model) -> dict``: per-epoch measurements kept in the model's history."""
    if not needs_training(preset):
        model = _fresh_model(preset, device)
        model.requires_grad_(False)
        kind = preset.model.weights or "random-init (stand-in)"
        return LoadedModel(model, state_id(model), {"weights": kind, "arch": preset.model.arch})
    path = model_path(preset, store)
    meta_path = path.with_suffix(".json")
    store.require_cached(f"model {preset.model.arch} ({preset.model.train.training})", path)
    model = _fresh_model(preset, device)
    if path.exists() and meta_path.exists() and not force:
        try:
            model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        except Exception as exc:
            raise PatchbenchError(f"cached checkpoint {path} is unreadable ({type(exc).__name__}); delete it") from None
        model.eval().requires_grad_(False)
        return LoadedModel(model, state_id(model), json.loads(meta_path.read_text()))
    d, t = preset.data, preset.model.train
    train_src = load_split(d.dataset, d.root, "train", d.image_size)
    test_src = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(train_src), t.train_n, t.seed)
    kind = preset.model.arch + (f" volumetric ({preset.model.volumize.metric})" if preset.model.volumize else "")
    if distributed.is_main():
        console.print(f"[bold]train-model[/] {kind} ({t.training}{', syllabus ' + t.syllabus if t.syllabus else ''}) on {d.dataset} {d.image_size}px: "
                      f"{len(idx)} images, {t.epochs} epochs")
    # per-epoch checkpoint: a killed training resumes after its last finished epoch
    stats = train(model, train_src, idx, d.image_size, t, device, progress, checkpoint=path.with_suffix(".ckpt"),
                  on_epoch_end=on_epoch_end)
    test_idx = torch.arange(len(test_src))
    acc = accuracy(model, test_src, test_idx, d.image_size, d.batch_size, device, progress)
    if not distributed.is_main():  # torchrun: the replicas are identical; rank 0 alone writes the artifact
        distributed.barrier()
        model.requires_grad_(False)
        return LoadedModel(model, state_id(model), {"test_accuracy": acc, "test_n": len(test_idx), "seed": t.seed,
                                                    "config_hash": model_config_hash(preset), **stats})
    model.requires_grad_(False)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    meta = {"arch": preset.model.arch, "dataset": d.dataset, "image_size": d.image_size,
            "test_accuracy": acc, "test_n": len(test_idx), "seed": t.seed, "train_n": len(idx),
            "config_hash": model_config_hash(preset), "preset": preset.name, "created": now_utc(),
            "train": asdict(t), **stats}
    meta["model_id"] = state_id(model)
    atomic_write(meta_path, json.dumps(meta, indent=2))
    atomic_write(path, buf.getvalue())  # last: checkpoint present => metadata present
    path.with_suffix(".ckpt").unlink(missing_ok=True)  # the finished model replaces the resume state
    distributed.barrier()
    console.print(f"  test accuracy {acc:.2%} on {len(test_idx)} images ({stats['train_seconds']:.0f} s) -> {path}")
    return LoadedModel(model, meta["model_id"], meta)


# --------------------------------------------------------------------------------------------
# patches


def patch_stem(attack: AttackConfig, size: int, preset: Preset, model_id: str, store: ResultStore) -> Path:
    cfg = {**asdict(attack), "sizes": None, "size": size, "model_id": model_id, "image_size": preset.data.image_size}
    return store.artifacts / "patches" / (
        f"{attack.name}-{size}px-{'untargeted' if attack.target is None else f't{attack.target}'}-{attack.placement}-"
        f"{stable_hash(cfg, 12)}")


def patch_batches(source: ImageSource, pool: torch.Tensor, image_size: int, batch_size: int,
                  device: torch.device, seed: int, num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless epochs over ``pool``, reshuffled each epoch with a seeded generator."""
    gen = torch.Generator().manual_seed(seed + 1)
    while True:
        order = pool[torch.randperm(len(pool), generator=gen)]
        usable = (len(order) // batch_size) * batch_size or len(order)
        for _, x, y in iterate(source, order[:usable], image_size, batch_size, device, num_workers):
            yield x, y


def patch_candidates(source: ImageSource, attack: AttackConfig) -> torch.Tensor:
    """Training images whose label is not the target (untargeted: all), in the attack seed's random order."""
    gen = torch.Generator().manual_seed(attack.seed)
    if attack.target is None:
        candidates = torch.arange(len(source.labels))
    else:
        candidates = torch.nonzero(source.labels != attack.target).squeeze(1)
    return candidates[torch.randperm(len(candidates), generator=gen)]


def selection_indices(candidates: torch.Tensor, train_pool: int, n: int) -> torch.Tensor:
    """``n`` non-target training images outside the first ``train_pool`` candidates (the last
    ``n`` candidates, which may overlap the pool, when the split has too few)."""
    rest = candidates[train_pool:]
    return (rest if len(rest) >= n else candidates.flip(0))[:n]


def check_target(preset: Preset, target: int | None) -> None:
    info = get_dataset_info(preset.data.dataset)
    if target is not None and target >= info.num_classes:
        raise PatchbenchError(f"target class {target} out of range for {preset.data.dataset} ({info.num_classes} classes)")


def attack_entry(preset: Preset, name: str, **overrides) -> AttackConfig:
    """The preset's entry for patch attack ``name`` (defaults if it has none) with ``overrides``."""
    base = next((a for a in preset.attacks if a.name == name), AttackConfig(name=name))
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    attack_class(name, patch=True).check_config(cfg, preset.data.image_size, where=f"attack {name}")
    check_target(preset, cfg.target)
    return cfg


def train_patch(preset: Preset, attack: AttackConfig, size: int, loaded: LoadedModel, store: ResultStore,
                device: torch.device, out: Path | None = None, force: bool = False, progress: bool = True) -> Patch:
    """Train (or load the cached) patch of ``attack`` at ``size`` px against the preset's model."""
    cls = attack_class(attack.name, patch=True)
    cls.check_config(replace(attack, sizes=[size]), preset.data.image_size)
    stem = Path(out).with_suffix("") if out else patch_stem(attack, size, preset, loaded.model_id, store)
    if stem.with_suffix(".pt").exists() and not force and out is None:
        return Patch.load(stem.with_suffix(".pt"))
    store.require_cached(f"patch {attack.name} {size}px seed {attack.seed}", stem.with_suffix(".pt"))
    d = preset.data
    info = get_dataset_info(d.dataset)
    check_target(preset, attack.target)
    source = load_split(d.dataset, d.root, "train", d.image_size)
    candidates = patch_candidates(source, attack)
    pool = candidates[: attack.train_pool]
    success_idx = candidates[: min(attack.success_n, len(candidates))]
    atk = cls.from_config(loaded.model, attack, size, d.image_size, progress=progress)
    batches = patch_batches(source, pool, d.image_size, attack.batch_size, device, attack.seed, d.num_workers)
    holdout = None
    if attack.restarts > 1:  # restarts are chosen on training images outside the pool, never on evaluation images
        hold_idx = selection_indices(candidates, attack.train_pool, attack.select_n)
        holdout = next(iter((x, y) for _, x, y in iterate(source, hold_idx, d.image_size, len(hold_idx), device)))
    patch = atk.fit(batches, channels=info.channels, holdout=holdout)
    rate = atk.success_rate((x, y) for _, x, y in iterate(source, success_idx, d.image_size, d.batch_size, device))
    names = loaded.model.class_names
    target_name = (None if attack.target is None else names[attack.target] if attack.target < len(names)
                   else str(attack.target))
    patch.meta.update({
        "model": preset.model.arch, "model_id": loaded.model_id, "dataset": d.dataset,
        "target_name": target_name, "train_success_rate": rate, "success_n": len(success_idx),
        "batch_size": attack.batch_size, "train_pool": len(pool), "preset": preset.name,
        "config_hash": stable_hash({**asdict(attack), "sizes": None, "size": size}), "created": now_utc(),
    })
    pt = patch.save(stem)
    aim = "untargeted" if target_name is None else f"target {target_name!r}"
    console.print(f"  {attack.name} {size}px ({patch.meta['area_pct']}% of the image) -> {aim}: "
                  f"success {rate:.1%} on {len(success_idx)} training images -> {pt}")
    return patch


def attack_seeds(attack: AttackConfig) -> list[AttackConfig]:
    """One config per seed of ``attack.seeds`` (just the entry itself when it lists none)."""
    return [replace(attack, seed=s, seeds=[]) for s in attack.seeds] if attack.seeds else [attack]


def with_seeds(preset: Preset, seeds: str | None) -> Preset:
    """``--seeds 0,1,2``: every attack of the preset trained once per seed."""
    if seeds is None:
        return preset
    try:
        values = [int(v) for v in seeds.split(",") if v.strip()]
    except ValueError:
        raise PatchbenchError(f"--seeds expects a comma list of integers, got {seeds!r}") from None
    if not values or len(set(values)) != len(values):
        raise PatchbenchError(f"--seeds expects distinct integers, got {seeds!r}")
    return replace(preset, attacks=[replace(a, seeds=values) for a in preset.attacks])


def ensure_patches(preset: Preset, loaded: LoadedModel, store: ResultStore, device: torch.device,
                   progress: bool = True) -> list[Patch]:
    """Every patch of the preset: each attack × size × seed, trained or loaded from the cache."""
    return [train_patch(preset, seeded, size, loaded, store, device, progress=progress)
            for attack in preset.attacks for size in attack.sizes for seeded in attack_seeds(attack)]


def load_patches(files: list[str], preset: Preset) -> list[Patch]:
    """Patch files given on the command line, each checked against the preset's images."""
    patches = []
    for f in files:
        patch = Patch.load(f)
        check_patch_fits(patch, preset, f)
        patches.append(patch)
    return patches


def check_patch_fits(patch: Patch, preset: Preset, where: str) -> None:
    info = get_dataset_info(preset.data.dataset)
    if patch.pixels.shape[0] != info.channels:
        raise PatchbenchError(f"{where}: patch has {patch.pixels.shape[0]} channel(s), {preset.data.dataset} has {info.channels}")
    if patch.size >= preset.data.image_size:
        raise PatchbenchError(f"{where}: a {patch.size} px patch does not fit {preset.data.image_size} px images")
    patch.placement.offset(preset.data.image_size, patch.size)


# --------------------------------------------------------------------------------------------
# defenses


def defense_params(preset: Preset | None, name: str, overrides: dict | None = None) -> tuple[dict, list[float]]:
    """(parameters, λ list) of defense ``name``: the preset's entry (if any) updated by ``overrides``;
    a defense the preset does not list gets its class defaults and λ = :data:`DEFAULT_LAMBDA`."""
    if name not in DEFENSES:
        raise PatchbenchError(f"unknown defense {name!r}; known: {', '.join(DEFENSES)}")
    cfg = next((d for d in preset.defenses if d.name == name), None) if preset is not None else None
    params = {**(cfg.params if cfg else {}), **(overrides or {})}
    DEFENSES[name].check_params(params)
    return params, list(cfg.lambdas) if cfg and cfg.lambdas else [DEFAULT_LAMBDA]


def resolve_defense(preset: Preset | None, name: str, model=None, overrides: dict | None = None) -> tuple[Defense, list[float]]:
    """The built defense ``name`` and its λ list (see :func:`defense_params`)."""
    params, lambdas = defense_params(preset, name, overrides)
    return build_defense(name, params, model), lambdas


def defense_runs(preset: Preset, model: Classifier, names: list[str] | None, lambdas: list[float] | None,
                 overrides: dict | None = None, include_none: bool = True) -> list[DefenseRun]:
    """``none`` plus the named defenses (default: the preset's), each with its λ list."""
    runs = [DefenseRun(NoDefense(), [None])] if include_none else []
    for name in names if names is not None else [d.name for d in preset.defenses]:
        if name == "none":
            continue
        defense, lams = resolve_defense(preset, name, model, overrides)
        runs.append(DefenseRun(defense, list(lambdas) if lambdas is not None else lams))
    return runs


def defend_files(files: list[Path], out_dir: Path, name: str, lam: float, overrides: dict,
                 preset: Preset | None, save_maps: bool, device: torch.device) -> int:
    """Defend image files: T(x) for each as PNG with the same stem in ``out_dir``; returns the count.

    Every file is read (and so validated) before anything is written. With a preset, its
    defense entry and its dataset's normalization are used (no weights are needed; defenses
    that need the classifier itself, such as SLGS, ask for it).
    """
    from patchbench import imageio
    from patchbench.errors import check_writable_dir
    from patchbench.models.wrapper import Normalizer

    check_writable_dir(out_dir, "--out")  # an existing file there, or no permission: before reading anything
    images = [imageio.read_image(f) for f in files]
    model = Normalizer.for_dataset(preset.data.dataset) if preset is not None else None
    defense, _ = resolve_defense(preset, name, model, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    for group in imageio.group_by_shape(images):
        x = torch.stack([images[i] for i in group]).to(device)
        maps = defense.maps(x, model)
        with torch.no_grad():
            y = defense.apply(x, maps, lam)
        for j, i in enumerate(group):
            imageio.write_png(y[j], out_dir / f"{files[i].stem}.png")
            for key in defense.saved_maps if save_maps else ():
                imageio.write_png(maps[key][j].clamp(0, 1), out_dir / "maps" / f"{files[i].stem}.png")
    return len(files)


# --------------------------------------------------------------------------------------------
# grids


def eval_context(preset: Preset, loaded: LoadedModel) -> dict:
    d = preset.data
    context = {"dataset": d.dataset, "split": d.eval_split, "eval_seed": d.eval_seed, "image_size": d.image_size,
               "model": preset.model.arch, "model_id": loaded.model_id}
    if preset.model.amp is not None:  # fp32 cells keep the run ids they always had
        context["amp"] = preset.model.amp
    return context


def evaluate_conditions(preset: Preset, loaded: LoadedModel, conditions: list[Condition], runs: list[DefenseRun],
                        store: ResultStore, device: torch.device, progress: bool = True, **extra) -> pd.DataFrame:
    """Every missing cell of ``conditions`` × ``runs`` × λ on the preset's evaluation images."""
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)
    return evaluate(loaded.model, source, idx, d.image_size, d.batch_size, conditions, runs, store,
                    eval_context(preset, loaded), device, d.num_workers, progress,
                    extra={"preset": preset.name, **extra}, ssim_n=d.ssim_n, amp=preset.model.amp)


def run_grid(preset: Preset, loaded: LoadedModel, patches: list[Patch], runs: list[DefenseRun],
             store: ResultStore, device: torch.device, include_clean: bool = True, progress: bool = True) -> pd.DataFrame:
    conditions = ([Condition(None)] if include_clean else []) + [Condition(p) for p in patches]
    return evaluate_conditions(preset, loaded, conditions, runs, store, device, progress)


class SharedTrajectory:
    """PGD-k / CW-k for several k from one run per batch (``PGD.forward_at``).

    The first k steps of a PGD-100 run *are* a PGD-k run when the random start (same seed) and
    the step size are the same, so columns PGD-10/20/40/100 cost 100 steps, not 170. Used only
    when the preset fixes ``step_size`` (the default 2.5·ε/k rule depends on k). The result of
    the last batch is cached; the engine asks for every k of a batch in turn.
    """

    def __init__(self, attack, ks: list[int]):
        self.attack, self.ks = attack, sorted(ks)
        self._x = self._out = None

    def step(self, k: int):
        def run(x, y):
            if self._x is not x:  # a new batch: one trajectory, every requested k
                self._x, self._out = x, self.attack.forward_at(x, y, self.ks)
            return self._out[k]
        return run


def build_evasion(cfg, model: Classifier):
    """The registry's attack for an :class:`~patchbench.config.EvasionConfig`, on ``model``."""
    return attack_class(cfg.name, patch=False).from_config(model, cfg)


def evasion_conditions(evasion, model: Classifier, training: str) -> list[Condition]:
    """One Condition per evasion config; fixed-step PGD/CW configs that differ only in their
    number of steps share one trajectory (:class:`SharedTrajectory`)."""
    configs = [e for e in evasion if not e.trainings or training in e.trainings]
    groups: dict[str, list] = {}
    for e in configs:
        if e.name in ("pgd", "cw") and e.steps and e.step_size is not None:
            key = json.dumps([e.name, e.eps, e.step_size, e.seed, e.params], sort_keys=True, default=str)
            groups.setdefault(key, []).append(e)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            longest = replace(members[0], steps=max(m.steps for m in members))
            traj = SharedTrajectory(build_evasion(longest, model), [m.steps for m in members])
            shared.update({id(m): traj.step(m.steps) for m in members})
    return [Condition(attack=shared.get(id(e)) or build_evasion(e, model), attack_config=e) for e in configs]


def run_evasion_grid(preset: Preset, training: str, store: ResultStore, device: torch.device,
                     progress: bool = True) -> pd.DataFrame:
    """Train (or load) the ``training`` model of ``preset`` and evaluate clean + every evasion attack."""
    p = with_training(preset, training)
    loaded = ensure_model(p, store, device, progress=progress)
    conditions = [Condition(None)] + evasion_conditions(p.evasion, loaded.model, training)
    p.data.ssim_n = 0
    return evaluate_conditions(p, loaded, conditions, [DefenseRun(NoDefense(), [None])], store, device,
                               progress, training=training)


# --------------------------------------------------------------------------------------------
# experiments


@dataclass(frozen=True)
class Experiment:
    """What ``sweep``/``reproduce`` run for a preset of this kind."""

    name: str
    description: str
    check: Callable[[Preset], None]
    sweep: Callable[..., pd.DataFrame]


def _check_patch_defense(p: Preset) -> None:
    if p.trainings or p.evasion:
        raise PatchbenchError(f"preset {p.name}: trainings/evasion belong to experiment 'evasion', not 'patch-defense'")


def _check_evasion(p: Preset) -> None:
    if not p.evasion:
        raise PatchbenchError(f"preset {p.name}: experiment 'evasion' needs a non-empty evasion list")
    if p.attacks:
        raise PatchbenchError(f"preset {p.name}: patch attacks belong to experiment 'patch-defense', not 'evasion'")


def sweep_patch_defense(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                        defenses: list[str] | None = None, lambdas: list[float] | None = None,
                        patches: list[Patch] | None = None) -> pd.DataFrame:
    """Model (trained/cached), patches (given, or the preset's, trained/cached), then clean and
    attacked × (none + defenses) × λ."""
    loaded = ensure_model(preset, store, device, progress=progress)
    patch_list = patches or ensure_patches(preset, loaded, store, device, progress=progress)
    runs = defense_runs(preset, loaded.model, defenses, lambdas)
    return run_grid(preset, loaded, patch_list, runs, store, device, progress=progress)


def sweep_evasion(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                  defenses=None, lambdas=None, patches=None) -> pd.DataFrame:
    """Every training objective × (clean + every evasion attack)."""
    if defenses or lambdas or patches:
        raise PatchbenchError(f"preset {preset.name} is an evasion experiment: --defenses, --lambdas and --patches "
                              "apply to patch-defense presets")
    frames = []
    for training in preset.trainings or [preset.model.train.training]:
        rows = run_evasion_grid(preset, training, store, device, progress)
        console.print(f"[bold]{preset.name}[/] {training}: {len(rows)} cells")
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


EXPERIMENTS: dict[str, Experiment] = {
    "patch-defense": Experiment("patch-defense", "one classifier; clean and patched images × defenses × λ",
                                _check_patch_defense, sweep_patch_defense),
    "evasion": Experiment("evasion", "one classifier per training objective × (clean + evasion attacks)",
                          _check_evasion, sweep_evasion),
}


def all_experiments() -> dict[str, Experiment]:
    """The generic experiments plus those the paper plugins bring (:attr:`Paper.experiments`)."""
    from patchbench.papers import PAPERS

    return {**EXPERIMENTS, **{k: v for paper in PAPERS.values() for k, v in paper.experiments.items()}}


def check_sweep_inputs(preset: Preset, defenses: str | None, lambdas: str | None, patch_files: list[str] | None):
    """Every input of a sweep checked before any work: (defense names, λ list, patches)."""
    from patchbench.config import parse_lambdas

    names = [n.strip() for n in defenses.split(",") if n.strip()] if defenses is not None else None
    for n in names or []:
        if n != "none":
            defense_params(preset, n)
    lams = parse_lambdas(lambdas) if lambdas is not None else None
    given = load_patches([f.strip() for item in patch_files or [] for f in item.split(",") if f.strip()], preset)
    # the grid's size, bounded before anything is trained: conditions × (none + Σ defenses × their λs)
    from patchbench.errors import check_limit

    conditions = 1 + (len(given) if given else sum(len(a.sizes) * max(1, len(a.seeds)) for a in preset.attacks))
    lam_counts = [len(lams) if lams is not None else len(d.lambdas) for d in preset.defenses
                  if names is None or d.name in names] + [len(lams or [1]) for n in names or [] if n not in
                                                           {d.name for d in preset.defenses} | {"none"}]
    check_limit("cells", conditions * (1 + sum(lam_counts)), "the sweep grid")
    check_data(preset)
    return names, lams, given


def status(preset: Preset, results: Path) -> dict:
    """``patchbench status``: the preset's grid planned from its cached models and patches (nothing is
    trained or computed) -> {"planned", "done", "missing", "blocked"}; ``blocked`` names the first
    model or patch still to train when the grid cannot be planned yet."""
    from patchbench.results import NotCached

    check_data(preset)
    store = ResultStore(results, plan_only=True)
    try:
        all_experiments()[preset.experiment].sweep(preset, store, resolve_device("cpu"), False)
    except NotCached as exc:
        return {"planned": None, "done": None, "missing": None, "blocked": str(exc)}
    planned = list(dict.fromkeys(store.planned))
    done = sum(store.has(r) for r in planned)
    return {"planned": len(planned), "done": done, "missing": len(planned) - done, "blocked": None}


def sweep(preset: Preset, results: Path, defenses: str | None = None, lambdas: str | None = None,
          patch_files: list[str] | None = None, progress: bool = True, shard: str | None = None) -> pd.DataFrame:
    """``patchbench sweep``: check every input (defense names, λ list, patch files, data), then run
    the preset's experiment. ``defenses`` a comma list, ``lambdas`` a λ range or list,
    ``patch_files`` paths (each may be a comma list); ``shard`` ``"i/n"``: compute only slice i of n of
    the missing cells (:class:`~patchbench.results.ResultStore`)."""
    from patchbench.results import parse_shard

    shard_spec = parse_shard(shard)
    names, lams, given = check_sweep_inputs(preset, defenses, lambdas, patch_files)
    store, device = ResultStore(results, shard=shard_spec), resolve_device(preset.device)
    return all_experiments()[preset.experiment].sweep(preset, store, device, progress, defenses=names, lambdas=lams, patches=given)


def evaluate_one(preset: Preset, results: Path, patch_file: Path | None, defense: str, lam: float,
                 overrides: dict, progress: bool = True) -> pd.DataFrame:
    """``patchbench evaluate``: one cell (the patch, or clean images, × defense at λ), stored."""
    patches = load_patches([str(patch_file)], preset) if patch_file is not None else []
    if defense != "none":
        defense_params(preset, defense, overrides)
    check_data(preset)
    store, device = ResultStore(results), resolve_device(preset.device)
    loaded = ensure_model(preset, store, device, progress=progress)
    runs = defense_runs(preset, loaded.model, [defense], [lam], overrides, include_none=defense == "none")
    return run_grid(preset, loaded, patches, runs, store, device, include_clean=patch_file is None, progress=progress)


def run_preset(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> None:
    """Everything a preset asks for: its experiment's sweep, then its paper's extra steps."""
    from patchbench.papers import get_paper

    rows = all_experiments()[preset.experiment].sweep(preset, store, device, progress)
    console.print(f"[bold]{preset.name}[/]: {len(rows)} cells")
    get_paper(preset.paper).extra_steps(preset, store, device, progress)
