"""Glue between a validated preset and the library: cached models and patches, sweeps.

Artifacts are cached under ``<results>/artifacts`` keyed by the hash of the config that made them,
so a rerun reuses them; each is written atomically (a killed run leaves no half file).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from rich.console import Console

from patchbench.attacks import ATTACKS
from patchbench.attacks.patch import Patch
from patchbench.config import AttackConfig, Preset, stable_hash, validate_attack
from patchbench.data import ImageSource, eval_indices, get_dataset_info, iterate, load_split
from patchbench.defenses import build_defense
from patchbench.defenses.base import NoDefense
from patchbench.engine import Condition, DefenseRun, evaluate
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS, Classifier, build_classifier
from patchbench.results import ResultStore, now_utc
from patchbench.training.standard import accuracy, train_standard

console = Console(stderr=True)


def resolve_device(name: str) -> torch.device:
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


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# models


@dataclass
class LoadedModel:
    model: Classifier
    model_id: str
    meta: dict


def model_config_hash(preset: Preset) -> str:
    d = preset.data
    return stable_hash({"model": asdict(preset.model), "dataset": d.dataset, "image_size": d.image_size})


def model_path(preset: Preset, store: ResultStore) -> Path:
    m, d = preset.model, preset.data
    return store.artifacts / "models" / f"{m.arch}-{d.dataset}-{d.image_size}px-{model_config_hash(preset)}.pt"


def needs_training(preset: Preset) -> bool:
    """Small nets are trained by patchbench; pretrained ones only when adversarially fine-tuned."""
    from_scratch = preset.model.weights is None and not MODELS[preset.model.arch].pretrained
    return from_scratch or preset.model.train.training != "raw"


def uses_adversarial_loop(preset: Preset) -> bool:
    """TOMM presets train every row (RAW included) with the same loop and L_c."""
    return bool(preset.trainings) or preset.model.train.training != "raw"


def _fresh_model(preset: Preset, device: torch.device) -> Classifier:
    torch.manual_seed(preset.model.train.seed)  # deterministic init (also for random stand-ins)
    model = build_classifier(preset.model.arch, preset.data.dataset, preset.model.weights, preset.data.image_size)
    model = model.to(device)
    if preset.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def ensure_model(preset: Preset, store: ResultStore, device: torch.device, force: bool = False,
                 progress: bool = True) -> LoadedModel:
    """The preset's classifier: pretrained weights, a cached checkpoint, or trained now and cached."""
    if not needs_training(preset):
        model = _fresh_model(preset, device)
        model.requires_grad_(False)
        kind = preset.model.weights or "random-init (stand-in)"
        return LoadedModel(model, state_id(model), {"weights": kind, "arch": preset.model.arch})
    path = model_path(preset, store)
    meta_path = path.with_suffix(".json")
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
    console.print(f"[bold]train-model[/] {preset.model.arch} on {d.dataset} {d.image_size}px: "
                  f"{len(idx)} images, {t.epochs} epochs")
    if uses_adversarial_loop(preset):
        from patchbench.training.adversarial import train_adversarial

        # per-epoch checkpoint: a killed training resumes after its last finished epoch
        stats = train_adversarial(model, train_src, idx, d.image_size, t, device, progress,
                                  checkpoint=path.with_suffix(".ckpt"))
    else:
        stats = train_standard(model, train_src, idx, d.image_size, t, device, progress)
    test_idx = torch.arange(len(test_src))
    acc = accuracy(model, test_src, test_idx, d.image_size, d.batch_size, device, progress)
    model.requires_grad_(False)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    meta = {"arch": preset.model.arch, "dataset": d.dataset, "image_size": d.image_size,
            "test_accuracy": acc, "test_n": len(test_idx), "seed": t.seed, "train_n": len(idx),
            "config_hash": model_config_hash(preset), "preset": preset.name, "created": now_utc(),
            "train": asdict(t), **stats}
    meta["model_id"] = state_id(model)
    _atomic_bytes(meta_path, json.dumps(meta, indent=2).encode())
    _atomic_bytes(path, buf.getvalue())  # last: checkpoint present => metadata present
    path.with_suffix(".ckpt").unlink(missing_ok=True)  # the finished model replaces the resume state
    console.print(f"  test accuracy {acc:.2%} on {len(test_idx)} images ({stats['train_seconds']:.0f} s) -> {path}")
    return LoadedModel(model, meta["model_id"], meta)


# --------------------------------------------------------------------------------------------
# patches


def patch_stem(attack: AttackConfig, size: int, preset: Preset, model_id: str, store: ResultStore) -> Path:
    cfg = {**asdict(attack), "sizes": None, "size": size, "model_id": model_id, "image_size": preset.data.image_size}
    return store.artifacts / "patches" / (
        f"{attack.name}-{size}px-t{attack.target}-{attack.placement}-{stable_hash(cfg, 12)}")


def _patch_batches(source: ImageSource, pool: torch.Tensor, image_size: int, batch_size: int,
                   device: torch.device, seed: int, num_workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless epochs over ``pool``, reshuffled each epoch with a seeded generator."""
    gen = torch.Generator().manual_seed(seed + 1)
    while True:
        order = pool[torch.randperm(len(pool), generator=gen)]
        usable = (len(order) // batch_size) * batch_size or len(order)
        for _, x, y in iterate(source, order[:usable], image_size, batch_size, device, num_workers):
            yield x, y


def train_patch(preset: Preset, attack: AttackConfig, size: int, loaded: LoadedModel, store: ResultStore,
                device: torch.device, out: Path | None = None, force: bool = False, progress: bool = True) -> Patch:
    """Train (or load the cached) patch of ``attack`` at ``size`` px against the preset's model."""
    validate_attack(AttackConfig(**{**asdict(attack), "sizes": [size]}), preset.data.image_size)
    stem = Path(out).with_suffix("") if out else patch_stem(attack, size, preset, loaded.model_id, store)
    if stem.with_suffix(".pt").exists() and not force and out is None:
        return Patch.load(stem.with_suffix(".pt"))
    d = preset.data
    info = get_dataset_info(d.dataset)
    if attack.target >= info.num_classes:
        raise PatchbenchError(f"target class {attack.target} out of range for {d.dataset} ({info.num_classes} classes)")
    source = load_split(d.dataset, d.root, "train", d.image_size)
    gen = torch.Generator().manual_seed(attack.seed)
    candidates = torch.nonzero(source.labels != attack.target).squeeze(1)  # source images: not the target
    candidates = candidates[torch.randperm(len(candidates), generator=gen)]
    pool = candidates[: attack.train_pool]
    success_idx = candidates[: min(attack.success_n, len(candidates))]
    cls = ATTACKS[attack.name]
    atk = cls.from_config(loaded.model, attack, size, d.image_size, progress=progress)
    batches = _patch_batches(source, pool, d.image_size, attack.batch_size, device, attack.seed, d.num_workers)
    patch = atk.fit(batches, channels=info.channels)
    rate = atk.success_rate((x, y) for _, x, y in iterate(source, success_idx, d.image_size, d.batch_size, device))
    target_name = loaded.model.class_names[attack.target] if attack.target < len(loaded.model.class_names) else str(attack.target)
    patch.meta.update({
        "model": preset.model.arch, "model_id": loaded.model_id, "dataset": d.dataset,
        "target_name": target_name, "train_success_rate": rate, "success_n": len(success_idx),
        "batch_size": attack.batch_size, "train_pool": len(pool), "preset": preset.name,
        "config_hash": stable_hash({**asdict(attack), "sizes": None, "size": size}), "created": now_utc(),
    })
    pt = patch.save(stem)
    console.print(f"  {attack.name} {size}px ({patch.meta['area_pct']}% of the image) -> target "
                  f"{target_name!r}: success {rate:.1%} on {len(success_idx)} training images -> {pt}")
    return patch


def ensure_patches(preset: Preset, loaded: LoadedModel, store: ResultStore, device: torch.device,
                   progress: bool = True) -> list[Patch]:
    patches = []
    for attack in preset.attacks:
        for size in attack.sizes:
            patches.append(train_patch(preset, attack, size, loaded, store, device, progress=progress))
    return patches


def check_data(preset: Preset) -> None:
    """Fail fast (one-line error) when a split the preset needs is missing, before long work."""
    d = preset.data
    load_split(d.dataset, d.root, d.eval_split, d.image_size)
    if needs_training(preset) or preset.attacks or any(t != "raw" for t in preset.trainings):
        load_split(d.dataset, d.root, "train", d.image_size)


def check_patch_fits(patch: Patch, preset: Preset, where: str) -> None:
    info = get_dataset_info(preset.data.dataset)
    if patch.pixels.shape[0] != info.channels:
        raise PatchbenchError(f"{where}: patch has {patch.pixels.shape[0]} channel(s), {preset.data.dataset} has {info.channels}")
    if patch.size >= preset.data.image_size:
        raise PatchbenchError(f"{where}: a {patch.size} px patch does not fit {preset.data.image_size} px images")
    patch.placement.offset(preset.data.image_size, patch.size)


# --------------------------------------------------------------------------------------------
# sweeps


def defense_runs(preset: Preset, model: Classifier, names: list[str] | None,
                 lambdas: list[float] | None, overrides: dict | None = None) -> list[DefenseRun]:
    """``none`` plus the named defenses (default: the preset's), each with its λ list."""
    by_name = {d.name: d for d in preset.defenses}
    runs = [DefenseRun(NoDefense(), [None])]
    for name in names if names is not None else list(by_name):
        if name == "none":
            continue
        cfg = by_name.get(name)
        params = {**(cfg.params if cfg else {}), **(overrides or {})}
        lams = lambdas if lambdas is not None else (cfg.lambdas if cfg else [2.3])
        runs.append(DefenseRun(build_defense(name, params, model), list(lams)))
    return runs


def eval_context(preset: Preset, loaded: LoadedModel) -> dict:
    d = preset.data
    return {"dataset": d.dataset, "split": d.eval_split, "eval_seed": d.eval_seed, "image_size": d.image_size,
            "model": preset.model.arch, "model_id": loaded.model_id}


def run_grid(preset: Preset, loaded: LoadedModel, patches: list[Patch], runs: list[DefenseRun],
             store: ResultStore, device: torch.device, include_clean: bool = True, progress: bool = True):
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)
    conditions = ([Condition(None)] if include_clean else []) + [Condition(p) for p in patches]
    return evaluate(loaded.model, source, idx, d.image_size, d.batch_size, conditions, runs, store,
                    eval_context(preset, loaded), device, d.num_workers, progress, extra={"preset": preset.name},
                    ssim_n=d.ssim_n)


# --------------------------------------------------------------------------------------------
# TOMM 2022: one model per training mode, attacked by every evasion attack


def preset_for_training(preset: Preset, training: str) -> Preset:
    """A copy of ``preset`` whose model is trained with ``training`` (raw, madry, madry+aad, ...)."""
    import copy

    p = copy.deepcopy(preset)
    p.model.train.training = training
    return p


def build_evasion(cfg, model: Classifier):
    """The registry's attack for an :class:`~patchbench.config.EvasionConfig`, on ``model``."""
    import inspect

    cls = ATTACKS[cfg.name]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {"eps": cfg.eps, **cfg.params}
    for key in ("steps", "step_size", "seed"):
        value = getattr(cfg, key)
        if value is not None and key in accepted:
            kwargs[key] = value
        elif value is not None and key in ("steps", "step_size"):
            raise PatchbenchError(f"evasion attack {cfg.name} takes no {key} (got {value!r})")
    unknown = sorted(k for k in cfg.params if k not in accepted)
    if unknown:
        raise PatchbenchError(f"evasion attack {cfg.name} has no parameter {unknown[0]!r}")
    return cls(model, **kwargs)


class SharedTrajectory:
    """PGD-k / CW-k for several k from one run per batch (``PGD.forward_at``).

    The first k steps of a PGD-100 run *are* a PGD-k run when the random start (same seed) and
    the step size are the same, so the Table 6 columns PGD-10/20/40/100 cost 100 steps, not 170.
    Used only when the preset fixes ``step_size`` (the default 2.5·ε/k rule depends on k).
    The result of the last batch is cached; the engine asks for every k of a batch in turn.
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


def evasion_conditions(evasion, model: Classifier, training: str) -> list:
    """One Condition per evasion config; fixed-step PGD/CW configs that differ only in their
    number of steps share one trajectory (:class:`SharedTrajectory`)."""
    import dataclasses as dc

    from patchbench.engine import Condition

    configs = [e for e in evasion if not e.trainings or training in e.trainings]
    groups: dict[str, list] = {}
    for e in configs:
        if e.name in ("pgd", "cw") and e.steps and e.step_size is not None:
            key = json.dumps([e.name, e.eps, e.step_size, e.seed, e.params], sort_keys=True, default=str)
            groups.setdefault(key, []).append(e)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            longest = dc.replace(members[0], steps=max(m.steps for m in members))
            traj = SharedTrajectory(build_evasion(longest, model), [m.steps for m in members])
            shared.update({id(m): traj.step(m.steps) for m in members})
    return [Condition(attack=shared.get(id(e)) or build_evasion(e, model), attack_config=e) for e in configs]


def run_evasion_grid(preset: Preset, training: str, store: ResultStore, device: torch.device,
                     progress: bool = True):
    """Train (or load) the ``training`` model of ``preset`` and evaluate clean + every evasion attack."""
    from patchbench.engine import Condition

    p = preset_for_training(preset, training)
    loaded = ensure_model(p, store, device, progress=progress)
    d = p.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)
    conditions = [Condition(None)] + evasion_conditions(p.evasion, loaded.model, training)
    return evaluate(loaded.model, source, idx, d.image_size, d.batch_size, conditions, [DefenseRun(NoDefense(), [None])],
                    store, eval_context(p, loaded), device, d.num_workers, progress,
                    extra={"preset": p.name, "training": training})
