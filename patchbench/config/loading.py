"""Presets from YAML: reading, ``--set`` overrides, λ ranges and validation.

A preset is the single source of every number in a run. CLI options override preset fields;
``--set section.field=value`` overrides any field. Unknown keys and bad values raise
:class:`PatchbenchError` with the offending key in the message. Names are checked against the
registries; each attack and defense checks its own parameters (``check_config`` /
``check_params``); a paper checks the sections it declares.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from patchbench.config.schema import (
    AttackConfig, DataConfig, DefenseConfig, EvasionConfig, ModelConfig, Preset, TrainConfig, VolumizeConfig,
)
from patchbench.errors import PatchbenchError, check, check_limit, is_int, is_number


# --------------------------------------------------------------------------------------------
# λ ranges


def parse_lambdas(text: str | list | float | int) -> list[float]:
    """``start:stop[:step]`` (inclusive, default step 0.4) or a comma list, e.g.

    ``1.5:3.5`` -> 1.5, 1.9, 2.3, 2.7, 3.1, 3.5; ``2.3,2.7,3.5`` -> those three. λ must be >= 0.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        values = [float(text)]
    elif isinstance(text, list):
        values = []
        for item in text:
            values.extend(parse_lambdas(item))
    else:
        s = str(text).strip()
        if not s:
            raise PatchbenchError("empty λ list")
        if ":" in s:
            parts = s.split(":")
            if len(parts) not in (2, 3):
                raise PatchbenchError(f"malformed λ range {s!r}: expected start:stop[:step]")
            try:
                nums = [float(p) for p in parts]
            except ValueError:
                raise PatchbenchError(f"malformed λ range {s!r}: start, stop and step must be numbers") from None
            start, stop = nums[0], nums[1]
            step = nums[2] if len(nums) == 3 else 0.4
            if not all(math.isfinite(v) for v in nums):
                raise PatchbenchError(f"malformed λ range {s!r}: values must be finite")
            if step <= 0:
                raise PatchbenchError(f"malformed λ range {s!r}: step must be > 0")
            if stop < start:
                raise PatchbenchError(f"malformed λ range {s!r}: stop is below start")
            span = (stop - start) / step
            check_limit("lambdas", int(min(span, 1e18)) + 1, f"λ range {s!r}")  # before expanding it
            count = int(math.floor(span + 1e-9)) + 1
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            check_limit("lambdas", s.count(",") + 1, "λ list")
            try:
                values = [float(p) for p in s.split(",") if p.strip()]
            except ValueError:
                raise PatchbenchError(f"malformed λ list {s!r}: expected numbers like 2.3,2.7") from None
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise PatchbenchError(f"λ must be a finite number >= 0, got {v}")
    seen: list[float] = []  # keep order, drop duplicates
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def parse_lambda(text: str) -> float:
    """Exactly one λ (``--lam``)."""
    lams = parse_lambdas(text)
    if len(lams) != 1:
        raise PatchbenchError(f"--lam takes one value, got {text!r} (use sweep --lambdas for ranges)")
    return lams[0]


def option_overrides(sets: list[str] | None, device: str | None = None, data_root: str | None = None,
                     weights: str | None = None, amp: str | None = None) -> list[str]:
    """``--set`` items plus the overrides the common CLI options stand for."""
    given = {"device": device, "data.root": data_root, "model.weights": weights, "model.amp": amp}
    return list(sets or []) + [f"{k}={v}" for k, v in given.items() if v]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param key=value`` pairs -> dict, each value parsed as YAML (``window=15``, ``space=pixel``)."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PatchbenchError(f"--param expects key=value, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise PatchbenchError(f"--param {key.strip()}: cannot parse value {value!r}") from None
    return params


# --------------------------------------------------------------------------------------------
# reading


def preset_paths() -> dict[str, Path]:
    """Every shipped preset: name -> YAML file, from each paper's ``presets/`` folder."""
    from patchbench.papers import PAPERS

    found: dict[str, Path] = {}
    for paper in PAPERS.values():
        for path in sorted(paper.preset_dir().glob("*.yaml")):
            found[path.stem] = path
    return dict(sorted(found.items()))


def preset_names() -> list[str]:
    return list(preset_paths())


def _read_preset_dict(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise PatchbenchError(f"preset file not found: {name_or_path}")
        text, source = path.read_text(), str(path)
    else:
        shipped = preset_paths()
        if name_or_path not in shipped:
            raise PatchbenchError(f"unknown preset {name_or_path!r}; known: {', '.join(shipped)} (or a .yaml path)")
        text, source = shipped[name_or_path].read_text(), name_or_path
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PatchbenchError(f"preset {source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PatchbenchError(f"preset {source} must be a YAML mapping")
    return raw, source


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``section.field=value`` overrides; value parsed as YAML (``attacks.0.steps=5`` indexes lists)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise PatchbenchError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise PatchbenchError(f"--set {key.strip()}: cannot parse value {text!r}") from None
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                try:
                    idx = int(part)
                    node[idx]
                except (ValueError, IndexError):
                    raise PatchbenchError(f"--set {key}: {part!r} is not an index of that list") from None
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise PatchbenchError(f"--set {key}: {parts[i - 1]!r} is not a section")
    return raw


def build_dataclass(cls, raw: Any, where: str):
    """``cls(**raw)`` with one-line errors for a non-mapping or an unknown key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PatchbenchError(f"{where} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise PatchbenchError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(names))})")
    return cls(**raw)


def _defense_from_raw(raw: dict, where: str) -> DefenseConfig:
    if not isinstance(raw, dict) or "name" not in raw:
        raise PatchbenchError(f"{where} needs a name")
    raw = dict(raw)
    name = raw.pop("name")
    lambdas = parse_lambdas(raw.pop("lambdas", [0.0]))
    params = raw.pop("params", {}) or {}
    params.update(raw)  # flat style: name, lambdas and the defense's own parameters
    return DefenseConfig(name=str(name), params=params, lambdas=lambdas)


def _list(raw: dict, key: str) -> list:
    value = raw.pop(key, []) or []
    if not isinstance(value, list):
        raise PatchbenchError(f"{key} must be a list")
    return value


def preset_from_dict(raw: dict, source: str = "") -> Preset:
    from patchbench.papers import get_paper

    raw = dict(raw)
    for key in ("name", "paper", "experiment"):
        check(key in raw, f"preset {source} has no {key} (every preset names its paper and experiment)")
    paper = get_paper(str(raw["paper"]))
    extra = {key: build_dataclass(cls, raw.pop(key), key) for key, cls in paper.sections.items() if key in raw}
    model_raw = raw.pop("model", {}) or {}
    check(isinstance(model_raw, dict), "model must be a mapping")
    model_raw = dict(model_raw)
    train = build_dataclass(TrainConfig, model_raw.pop("train", {}), "model.train")
    volumize = model_raw.pop("volumize", None)
    if volumize is not None:
        check(isinstance(volumize, dict), "model.volumize must be a mapping (or null)")
        volumize = build_dataclass(VolumizeConfig, volumize, "model.volumize")
    model = build_dataclass(ModelConfig, {**model_raw, "train": train, "volumize": volumize}, "model")
    data = build_dataclass(DataConfig, raw.pop("data", {}), "data")
    attacks = [build_dataclass(AttackConfig, a, f"attacks.{i}") for i, a in enumerate(_list(raw, "attacks"))]
    defenses = [_defense_from_raw(d, f"defenses.{i}") for i, d in enumerate(_list(raw, "defenses"))]
    evasion = [build_dataclass(EvasionConfig, e, f"evasion.{i}") for i, e in enumerate(_list(raw, "evasion"))]
    preset = build_dataclass(Preset, {**raw, "data": data, "model": model, "attacks": attacks,
                                      "defenses": defenses, "evasion": evasion, "extra": extra}, "preset")
    preset.source = source
    validate(preset)
    return preset


def load_preset(name_or_path: str, overrides: list[str] | None = None) -> Preset:
    raw, source = _read_preset_dict(name_or_path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return preset_from_dict(raw, source)


# --------------------------------------------------------------------------------------------
# validation


def validate_train(t: TrainConfig, where: str = "model.train") -> None:
    """Range checks of a TrainConfig; PatchbenchError naming the key."""
    from patchbench.training.objectives import check_objective

    check(is_int(t.epochs) and t.epochs >= 0, f"{where}.epochs must be an integer >= 0, got {t.epochs!r}")
    check(is_int(t.batch_size) and t.batch_size >= 1, f"{where}.batch_size must be an integer >= 1, got {t.batch_size!r}")
    check(is_number(t.lr) and t.lr > 0, f"{where}.lr must be a number > 0, got {t.lr!r}")
    check(t.optimizer in ("adam", "sgd", "rmsprop"), f"{where}.optimizer must be adam, sgd or rmsprop, got {t.optimizer!r}")
    check(t.schedule in ("onecycle", "constant", "step"), f"{where}.schedule must be onecycle, constant or step, got {t.schedule!r}")
    check(is_number(t.momentum) and 0 <= t.momentum < 1, f"{where}.momentum must be in [0, 1), got {t.momentum!r}")
    check(is_number(t.weight_decay) and t.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {t.weight_decay!r}")
    check(is_int(t.train_n) and t.train_n >= 0, f"{where}.train_n must be an integer >= 0, got {t.train_n!r}")
    check(is_number(t.lr_decay) and 0 < t.lr_decay <= 1, f"{where}.lr_decay must be in (0, 1], got {t.lr_decay!r}")
    check(is_int(t.lr_decay_every) and t.lr_decay_every >= 1, f"{where}.lr_decay_every must be an integer >= 1, got {t.lr_decay_every!r}")
    check_objective(t.training, f"{where}.training")
    check(t.class_loss in ("soft-margin", "ce"), f"{where}.class_loss must be soft-margin or ce, got {t.class_loss!r}")
    check(is_number(t.eps) and 0 < t.eps <= 1, f"{where}.eps must be a number in (0, 1] (pixel scale; 8/255 = 0.0314), got {t.eps!r}")
    check(is_int(t.attack_steps) and t.attack_steps >= 1, f"{where}.attack_steps must be an integer >= 1, got {t.attack_steps!r}")
    check(t.attack_step_size is None or (is_number(t.attack_step_size) and t.attack_step_size > 0),
          f"{where}.attack_step_size must be a number > 0 or null, got {t.attack_step_size!r}")
    check(t.lat_region in ("background", "mask", "all"), f"{where}.lat_region must be background, mask or all, got {t.lat_region!r}")
    check(is_number(t.lat_keep_box) and 0 < t.lat_keep_box < 1, f"{where}.lat_keep_box must be in (0, 1), got {t.lat_keep_box!r}")
    check(is_number(t.lat_mask_threshold) and 0 <= t.lat_mask_threshold < 1,
          f"{where}.lat_mask_threshold must be in [0, 1), got {t.lat_mask_threshold!r}")
    if t.syllabus is not None:
        from patchbench.volumization import METRICS

        check(t.syllabus in METRICS, f"{where}.syllabus must be one of {', '.join(METRICS)} or null, got {t.syllabus!r}")
    check(t.syllabus_order in ("ascending", "descending"),
          f"{where}.syllabus_order must be ascending or descending, got {t.syllabus_order!r}")
    check(is_int(t.syllabus_window) and t.syllabus_window >= 1,
          f"{where}.syllabus_window must be an integer >= 1 (batches), got {t.syllabus_window!r}")
    check(is_int(t.syllabus_bins) and t.syllabus_bins >= 2, f"{where}.syllabus_bins must be an integer >= 2, got {t.syllabus_bins!r}")
    for key in ("alp_weight", "aad_alpha", "aad_beta"):
        v = getattr(t, key)
        check(is_number(v) and v >= 0, f"{where}.{key} must be a number >= 0, got {v!r}")
    check(t.kappa == "mean" or (is_number(t.kappa) and t.kappa >= 0), f"{where}.kappa must be 'mean' or a number >= 0, got {t.kappa!r}")
    check(t.aad_lp_reduction in ("mean", "sum"), f"{where}.aad_lp_reduction must be mean or sum, got {t.aad_lp_reduction!r}")


def validate_volumize(v: VolumizeConfig, image_size: int, where: str = "model.volumize") -> None:
    """Range checks of a volumetric model's section (names against the volumization registries)."""
    from patchbench.models.volumetric import AGGREGATIONS, INFLATE
    from patchbench.volumization import METRICS, PADS

    check(is_int(v.patch) and 2 <= v.patch <= image_size, f"{where}.patch must be an integer in 2..{image_size}, got {v.patch!r}")
    check(v.metric in METRICS, f"{where}.metric must be one of {', '.join(METRICS)}, got {v.metric!r}")
    check(v.order in ("ascending", "descending"), f"{where}.order must be ascending or descending, got {v.order!r}")
    check(v.pad in PADS, f"{where}.pad must be one of {', '.join(PADS)}, got {v.pad!r}")
    check(v.pad != "none" or image_size % v.patch == 0,
          f"{where}: patch {v.patch} px does not divide the {image_size} px image and pad is none; "
          f"choose pad: zero, reflect or replicate, or another patch size")
    check(is_int(v.bins) and v.bins >= 2, f"{where}.bins must be an integer >= 2, got {v.bins!r}")
    check(v.reference == "lowest-entropy", f"{where}.reference must be lowest-entropy (a tensor only through the API), got {v.reference!r}")
    check(is_int(v.depth_kernel) and v.depth_kernel >= 1, f"{where}.depth_kernel must be an integer >= 1, got {v.depth_kernel!r}")
    check(is_int(v.depth_pool) and v.depth_pool >= 1 and v.depth_pool % 2 == 1,
          f"{where}.depth_pool must be an odd integer >= 1, got {v.depth_pool!r}")
    check(is_int(v.min_spatial) and v.min_spatial >= 1, f"{where}.min_spatial must be an integer >= 1, got {v.min_spatial!r}")
    check(v.inflate in INFLATE, f"{where}.inflate must be one of {', '.join(INFLATE)}, got {v.inflate!r}")
    check(v.aggregation in AGGREGATIONS, f"{where}.aggregation must be one of {', '.join(AGGREGATIONS)}, got {v.aggregation!r}")


AMP_DTYPES = {None: None, "bf16": "bfloat16", "fp16": "float16"}  # model.amp -> torch dtype name


def validate(p: Preset) -> None:
    """Range checks with the key in the message. Names are checked against the registries."""
    from patchbench.attacks import attack_class
    from patchbench.data import DATASETS
    from patchbench.defenses import DEFENSES
    from patchbench.models import MODELS
    from patchbench.papers import get_paper
    from patchbench.runner import all_experiments
    from patchbench.training.objectives import check_objective

    experiments = all_experiments()
    check(p.experiment in experiments, f"unknown experiment {p.experiment!r}; known: {', '.join(experiments)}")
    d = p.data
    check(d.dataset in DATASETS, f"unknown dataset {d.dataset!r}; known: {', '.join(DATASETS)}")
    check(is_int(d.image_size) and d.image_size >= 8, f"data.image_size must be an integer >= 8, got {d.image_size!r}")
    check(is_int(d.eval_n) and d.eval_n >= 0, f"data.eval_n must be an integer >= 0, got {d.eval_n!r}")
    check(is_int(d.batch_size) and d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size!r}")
    check(p.device in ("auto", "cpu", "cuda") or str(p.device).startswith("cuda:"), f"device must be auto, cpu or cuda[:i], got {p.device!r}")
    check(p.model.arch in MODELS, f"unknown model {p.model.arch!r}; known: {', '.join(MODELS)}")
    check(p.model.amp in AMP_DTYPES, f"model.amp must be one of bf16, fp16 or null (fp32), got {p.model.amp!r}")
    validate_train(p.model.train, where="model.train")
    if p.model.volumize is not None:
        validate_volumize(p.model.volumize, d.image_size)
    classes = DATASETS[d.dataset].num_classes
    for i, a in enumerate(p.attacks):
        attack_class(a.name, patch=True).check_config(a, d.image_size, where=f"attacks.{i}")
        check(a.target is None or (is_int(a.target) and 0 <= a.target < classes),
              f"attacks.{i}.target must be a class index in 0..{classes - 1} of {d.dataset} (or null: untargeted), "
              f"got {a.target!r}")
    for t in p.trainings:
        check_objective(t, "trainings")
    for i, e in enumerate(p.evasion):
        attack_class(e.name, patch=False).check_config(e, where=f"evasion.{i}")
        for t in e.trainings:
            check_objective(t, f"evasion.{i}.trainings")
    for df in p.defenses:
        check(df.name in DEFENSES, f"unknown defense {df.name!r}; known: {', '.join(DEFENSES)}")
        DEFENSES[df.name].check_params(df.params)
    experiments[p.experiment].check(p)
    get_paper(p.paper).validate(p)
