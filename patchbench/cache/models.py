"""The preset's classifier: pretrained weights, a cached checkpoint, or trained now and cached
under ``<results>/artifacts/models``."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from patchbench.config import Preset, TrainConfig, cache_hash, key_fields
from patchbench.data import eval_indices, load_split
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS, Classifier, build_classifier
from patchbench.store.results import ResultStore, now_utc
from patchbench.training import correct_count, distributed, train
from patchbench.training.checks import validate_train
from patchbench.util import atomic_write, console, tensors_id


def state_id(model: torch.nn.Module) -> str:
    """Content hash of a model's parameters and buffers (its identity in run ids)."""
    return tensors_id(model.state_dict())


@dataclass
class LoadedModel:
    model: Classifier
    model_id: str
    meta: dict


def model_config_hash(preset: Preset) -> str:
    """The name of the preset's trained classifier: the model config's identity (its key fields,
    :mod:`patchbench.config.keys`) on the dataset and image size."""
    d = preset.data
    return cache_hash({"model": key_fields(preset.model), "dataset": d.dataset, "image_size": d.image_size})


def model_path(preset: Preset, store: ResultStore) -> Path:
    m, d = preset.model, preset.data
    kind = f"{m.arch}-volumetric-{m.volumize.metric}" if m.volumize is not None else m.arch
    return store.artifacts / "models" / f"{kind}-{d.dataset}-{d.image_size}px-{model_config_hash(preset)}.pt"


def trained_model_metas(results: str | Path) -> list[dict]:
    """The metadata of every classifier cached in the results directory ``results`` (its
    ``model_id``, ``history`` per epoch, ``train`` config ...), in file order; unreadable ones are left out."""
    found = []
    for meta_file in sorted((Path(results) / "artifacts" / "models").glob("*.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            found.append(meta)
    return found


def needs_training(preset: Preset) -> bool:
    """Small nets are trained by patchbench; pretrained ones only for a non-raw objective."""
    w = preset.model.weights
    from_scratch = w == "scratch" or (w is None and not MODELS[preset.model.arch].pretrained)
    return from_scratch or preset.model.train.training != "raw"


def with_training(preset: Preset, training: str) -> Preset:
    """A copy of ``preset`` whose model is trained with objective ``training``."""
    return preset.with_train(training=training)


def fresh_model(preset: Preset, device: torch.device) -> Classifier:
    torch.manual_seed(preset.model.train.seed)  # deterministic init (also for random stand-ins)
    weights = None if preset.model.weights == "scratch" else preset.model.weights
    model = build_classifier(preset.model.arch, preset.data.dataset, weights, preset.data.image_size,
                             volumize=preset.model.volumize)
    model = model.to(device)
    if preset.model.channels_last and preset.model.volumize is None:  # channels_last is a 4-D layout
        model = model.to(memory_format=torch.channels_last)
    return model


def _load_cached(model: Classifier, path: Path, meta_path: Path, device: torch.device) -> LoadedModel:
    """The cached checkpoint, trusted only when its weights hash to the ``model_id`` stored beside them
    (a file that still opens but holds other weights is refused, never used and never silently retrained)."""
    clear = f"rm '{path}' '{meta_path}'"
    try:
        meta = json.loads(meta_path.read_text())
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except Exception as exc:  # any damage (truncated, garbage, foreign, a refused pickle) is one line
        raise PatchbenchError(f"cached checkpoint {path} is unreadable ({type(exc).__name__}); "
                              f"clear it with `{clear}` and rerun (the model is trained again)") from None
    model.eval().requires_grad_(False)
    loaded = state_id(model)
    if meta.get("model_id", loaded) != loaded:  # a cache written before model_ids has none to check
        raise PatchbenchError(f"cached checkpoint {path} holds weights {loaded}, not the model {meta['model_id']} "
                              f"recorded in {meta_path.name} (changed or damaged); clear it with `{clear}` and rerun "
                              "(the model is trained again)")
    return LoadedModel(model, loaded, meta)


# The last model that needs no training (pretrained weights or a seeded random init) this process built, with the
# random generator's state its construction left: every stage of a preset asks for it again (VGG16 at random init
# or from its weights file: a second or more each time on a CPU)
_FIXED: dict[tuple, tuple[LoadedModel, bool, torch.Tensor]] = {}


def _fixed_model(preset: Preset, device: torch.device) -> LoadedModel:
    """The preset's pretrained or random-init classifier, built once per process (the last one kept): a later
    call gets the same module, in the mode it was built in, with torch's generator where a fresh build leaves
    it, as long as its weights still hash to the id they had (else it is built again)."""
    key = (repr(preset.model), preset.data.dataset, preset.data.image_size, str(device))
    if key in _FIXED:
        loaded, training, rng = _FIXED[key]
        if state_id(loaded.model) == loaded.model_id:
            torch.manual_seed(preset.model.train.seed)  # every device's generator seeded, as fresh_model does,
            torch.set_rng_state(rng)  # then the CPU one where the build (on the CPU) left it
            loaded.model.train(training).requires_grad_(False)
            return LoadedModel(loaded.model, loaded.model_id, dict(loaded.meta))
    model = fresh_model(preset, device)
    model.requires_grad_(False)
    kind = preset.model.weights or "random-init (stand-in)"
    loaded = LoadedModel(model, state_id(model), {"weights": kind, "arch": preset.model.arch})
    _FIXED.clear()
    _FIXED[key] = (loaded, model.training, torch.get_rng_state())
    return LoadedModel(model, loaded.model_id, dict(loaded.meta))


def ensure_model(preset: Preset, store: ResultStore, device: torch.device, force: bool = False,
                 progress: bool = True, on_epoch_end=None) -> LoadedModel:
    """The preset's classifier: pretrained weights, a cached checkpoint, or trained now and cached.
    ``on_epoch_end(epoch, model) -> dict``: per-epoch measurements kept in the model's history."""
    if not needs_training(preset):
        return _fixed_model(preset, device)
    path = model_path(preset, store)
    meta_path = path.with_suffix(".json")
    store.require_cached(f"model {preset.model.arch} ({preset.model.train.training})", path)
    model = fresh_model(preset, device)
    if path.exists() and meta_path.exists() and not force:
        return _load_cached(model, path, meta_path, device)
    kind = preset.model.arch + (f" volumetric ({preset.model.volumize.metric})" if preset.model.volumize else "")
    t = preset.model.train
    return _train_and_cache(preset, model, t, path, f"{kind} ({t.training}{', syllabus ' + t.syllabus if t.syllabus else ''})",
                            store, device, progress, on_epoch_end, {"config_hash": model_config_hash(preset)})


def finetuned_path(preset: Preset, base: LoadedModel, train_cfg: TrainConfig, store: ResultStore) -> Path:
    """Where the fine-tuned model is cached: named by the base model's weights and the fine-tuning's identity."""
    d = preset.data
    name = cache_hash({"base": base.model_id, "train": key_fields(train_cfg)})
    return store.artifacts / "models" / f"{preset.model.arch}-{d.dataset}-{d.image_size}px-ft-{train_cfg.training}-{name}.pt"


def ensure_finetuned(preset: Preset, base: LoadedModel, train_cfg: TrainConfig, store: ResultStore, device: torch.device,
                     force: bool = False, progress: bool = True) -> LoadedModel:
    """``base`` (the preset's classifier) trained further with ``train_cfg`` from its weights, cached: e.g.
    PatchCleanser's Cutout fine-tuning (Xiang et al. 2022 Sec. 5.1) of the demo classifier. The metadata
    keeps the base model's id and test accuracy beside the fine-tuned one's."""
    validate_train(train_cfg, where="fine-tuning")
    path = finetuned_path(preset, base, train_cfg, store)
    meta_path = path.with_suffix(".json")
    store.require_cached(f"model {preset.model.arch} fine-tuned ({train_cfg.training})", path)
    model = fresh_model(preset, device)
    if path.exists() and meta_path.exists() and not force:
        return _load_cached(model, path, meta_path, device)
    model.load_state_dict(base.model.state_dict())
    return _train_and_cache(preset, model, train_cfg, path, f"{preset.model.arch} fine-tuned ({train_cfg.training})",
                            store, device, progress, None,
                            {"finetuned_from": base.model_id, "base_test_accuracy": base.meta.get("test_accuracy")})


def _train_and_cache(preset: Preset, model: Classifier, t: TrainConfig, path: Path, label: str, store: ResultStore,
                     device: torch.device, progress: bool, on_epoch_end, extra_meta: dict) -> LoadedModel:
    """Train ``model`` in place with ``t`` (resumable per epoch), measure its test accuracy, cache it at ``path``."""
    d = preset.data
    meta_path = path.with_suffix(".json")
    train_src = load_split(d.dataset, d.root, "train", d.image_size, verify=d.verify)
    test_src = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    idx = eval_indices(len(train_src), t.train_n, t.seed)
    if distributed.is_main():
        console.print(f"[bold]train-model[/] {label} on {d.dataset} {d.image_size}px: {len(idx)} images, {t.epochs} epochs")
    # per-epoch checkpoint: a killed training resumes after its last finished epoch
    stats = train(model, train_src, idx, d.image_size, t, device, progress, checkpoint=path.with_suffix(".ckpt"),
                  on_epoch_end=on_epoch_end)
    test_idx = eval_indices(len(test_src), t.test_n, d.eval_seed)  # test_n = 0: every test image
    # torchrun: each rank classifies every K-th test image and the counts are summed (the replicas are
    # identical, so the accuracy is the single process's; the K ranks share the work instead of repeating it)
    mine = test_idx if distributed.share() is None else test_idx[distributed.rank()::distributed.world()]
    acc = sum(distributed.gather(correct_count(model, test_src, mine, d.image_size, d.batch_size, device, progress))) / len(test_idx)
    if not distributed.is_main():  # torchrun: the replicas are identical; rank 0 alone writes the artifact
        distributed.barrier()
        model.requires_grad_(False)
        return LoadedModel(model, state_id(model), {"test_accuracy": acc, "test_n": len(test_idx), "seed": t.seed,
                                                    **extra_meta, **stats})
    model.requires_grad_(False)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    meta = {"arch": preset.model.arch, "dataset": d.dataset, "image_size": d.image_size,
            "test_accuracy": acc, "test_n": len(test_idx), "seed": t.seed, "train_n": len(idx),
            **extra_meta, "preset": preset.name, "created": now_utc(), "train": asdict(t), **stats}
    meta["model_id"] = state_id(model)
    atomic_write(meta_path, json.dumps(meta, indent=2))
    atomic_write(path, buf.getvalue())  # last: checkpoint present => metadata present
    path.with_suffix(".ckpt").unlink(missing_ok=True)  # the finished model replaces the resume state
    distributed.barrier()
    console.print(f"  test accuracy {acc:.2%} on {len(test_idx)} images ({stats['train_seconds']:.0f} s) -> {path}")
    return LoadedModel(model, meta["model_id"], meta)
