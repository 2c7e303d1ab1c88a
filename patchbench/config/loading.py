"""Experiment configuration: YAML presets -> validated dataclasses.

A preset is the single source of every number in a run. CLI options override preset fields;
``--set section.field=value`` overrides any field. Unknown keys and bad values raise
:class:`PatchbenchError` with the offending key in the message.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from patchbench.errors import PatchbenchError


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    root: str | None = None  # None: the dataset's own search order (see patchbench.data)
    image_size: int = 64
    eval_split: str = "test"
    eval_n: int = 2000  # fixed, seeded evaluation subset; 0 = the whole split
    eval_seed: int = 0
    ssim_n: int = 1000  # clean images on which SSIM(input, defended) is measured (ICAART: 1000)
    batch_size: int = 500
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Classifier training. Standard ERM (``train_standard``: Adam + OneCycle is the demo's measured
    setting) or adversarial (``patchbench.training.adversarial``, TOMM 2022 Table 6)."""

    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd | rmsprop
    lr: float = 3e-3  # max lr of the one-cycle schedule; the (initial) lr of constant / step
    schedule: str = "onecycle"  # onecycle | constant | step (lr *= lr_decay every lr_decay_every epochs)
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    train_n: int = 0  # 0 = the whole training split; >0 = a seeded subset (tests, quick runs)
    lr_decay: float = 0.94  # step schedule (TOMM 2022 ResNet50: 0.045 decayed x0.94 every 2 epochs)
    lr_decay_every: int = 2  # epochs
    # adversarial training (train_adversarial only; train_standard ignores these)
    training: str = "raw"  # raw | madry | madry+aad | alp | alp+aad
    class_loss: str = "soft-margin"  # L_c: soft-margin (multi-label soft margin on one-hot; TOMM Eq. 10) | ce
    eps: float = 0.3  # L-inf radius of the training PGD, [0, 1] pixel scale (MNIST 0.3; CIFAR 8/255)
    attack_steps: int = 40  # PGD steps while training (Madry et al. MNIST: 40; CIFAR: 7)
    attack_step_size: float | None = None  # None: 2.5 * eps / attack_steps
    alp_weight: float = 0.5  # λ of ALP's mean squared logit difference (Kannan et al. 2018)
    aad_alpha: float = 0.01  # α of the rectification loss L_r (TOMM Eq. 8, 10)
    aad_beta: float = 0.01  # β of the preservation loss L_p (TOMM Eq. 9, 10)
    aad_lp_reduction: str = "mean"  # L_p over the CAM grid: mean | sum (literal l1; collapses maps, see training.adversarial)
    kappa: Any = "mean"  # attention threshold κ of Eq. 3: "mean" (per image) or a number


TRAINING_MODES = ("raw", "madry", "madry+aad", "alp", "alp+aad")


def validate_train(t: TrainConfig, where: str = "model.train") -> None:
    """Range checks of a TrainConfig; PatchbenchError naming the key."""

    def num(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    _check(integer(t.epochs) and t.epochs >= 0, f"{where}.epochs must be an integer >= 0, got {t.epochs!r}")
    _check(integer(t.batch_size) and t.batch_size >= 1, f"{where}.batch_size must be an integer >= 1, got {t.batch_size!r}")
    _check(num(t.lr) and t.lr > 0, f"{where}.lr must be a number > 0, got {t.lr!r}")
    _check(t.optimizer in ("adam", "sgd", "rmsprop"), f"{where}.optimizer must be adam, sgd or rmsprop, got {t.optimizer!r}")
    _check(t.schedule in ("onecycle", "constant", "step"), f"{where}.schedule must be onecycle, constant or step, got {t.schedule!r}")
    _check(num(t.momentum) and 0 <= t.momentum < 1, f"{where}.momentum must be in [0, 1), got {t.momentum!r}")
    _check(num(t.weight_decay) and t.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {t.weight_decay!r}")
    _check(integer(t.train_n) and t.train_n >= 0, f"{where}.train_n must be an integer >= 0, got {t.train_n!r}")
    _check(num(t.lr_decay) and 0 < t.lr_decay <= 1, f"{where}.lr_decay must be in (0, 1], got {t.lr_decay!r}")
    _check(integer(t.lr_decay_every) and t.lr_decay_every >= 1, f"{where}.lr_decay_every must be an integer >= 1, got {t.lr_decay_every!r}")
    _check(t.training in TRAINING_MODES, f"{where}.training must be one of {', '.join(TRAINING_MODES)}, got {t.training!r}")
    _check(t.class_loss in ("soft-margin", "ce"), f"{where}.class_loss must be soft-margin or ce, got {t.class_loss!r}")
    _check(num(t.eps) and 0 < t.eps <= 1, f"{where}.eps must be a number in (0, 1] (pixel scale; 8/255 = 0.0314), got {t.eps!r}")
    _check(integer(t.attack_steps) and t.attack_steps >= 1, f"{where}.attack_steps must be an integer >= 1, got {t.attack_steps!r}")
    _check(t.attack_step_size is None or (num(t.attack_step_size) and t.attack_step_size > 0),
           f"{where}.attack_step_size must be a number > 0 or null, got {t.attack_step_size!r}")
    for key in ("alp_weight", "aad_alpha", "aad_beta"):
        v = getattr(t, key)
        _check(num(v) and v >= 0, f"{where}.{key} must be a number >= 0, got {v!r}")
    _check(t.kappa == "mean" or (num(t.kappa) and t.kappa >= 0), f"{where}.kappa must be 'mean' or a number >= 0, got {t.kappa!r}")
    _check(t.aad_lp_reduction in ("mean", "sum"), f"{where}.aad_lp_reduction must be mean or sum, got {t.aad_lp_reduction!r}")


@dataclass
class ModelConfig:
    arch: str = "small_vgg"
    # torchvision weights name ("DEFAULT", "IMAGENET1K_V1"), a path to a state dict, or None.
    # None with a small net means: train it (train-model) and cache the checkpoint.
    weights: str | None = None
    channels_last: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class AttackConfig:
    """A patch attack trained against the preset's classifier (ICAART Eq. 2-3)."""

    name: str = "lavan"
    sizes: list[int] = field(default_factory=lambda: [6, 8, 10])  # square side in pixels
    target: int = 0
    placement: str = "top-right"  # top-right | top-left | bottom-left | bottom-right | center
    margin: int = 2  # pixels between the patch and the image corner
    random_placement: bool = False  # train at random locations (tested at `placement`)
    steps: int = 200  # optimizer steps (paper: 200 epochs x 50 batches = 10000)
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    lr_milestones: list[int] = field(default_factory=list)  # steps at which lr *= lr_gamma
    lr_gamma: float = 0.1
    seed: int = 0
    train_pool: int = 10000  # training images the patch samples its batches from
    success_n: int = 1000  # training images the final success rate is measured on
    # Adversarial Patch (Brown et al. 2017, ICAART Eq. 2): expectation over transformations while
    # training; each image draws a location (random_placement), a rotation and a scale.
    rotation: float = 0.0  # max |angle| in degrees of the random rotation (0 = none)
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])  # random factor on the side


@dataclass
class DefenseConfig:
    name: str = "lgs"
    params: dict[str, Any] = field(default_factory=dict)
    lambdas: list[float] = field(default_factory=lambda: [2.3])


@dataclass
class EvasionConfig:
    """A pixel-space L∞ attack column of TOMM 2022 Table 6/7 (FGSM, PGD-k, CW-k, StepLL, A3).

    ``name`` is an attack of the registry (fgsm, pgd, cw, stepll, iter-stepll, pgd+a3,
    iter-stepll+a3, ...); ``eps`` in [0, 1] pixel units; ``steps``/``step_size`` for iterative
    attacks (None: the attack's default); ``params`` any other constructor argument (sigma, ...);
    ``column`` the table's column label (default: derived, e.g. PGD10).
    """

    name: str = "pgd"
    eps: float = 0.3
    steps: int | None = None
    step_size: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    column: str | None = None
    seed: int = 0
    trainings: list[str] = field(default_factory=list)  # evaluate only these models (empty: all)

    def label(self) -> str:
        if self.column:
            return self.column
        base = {"fgsm": "FGSM", "pgd": "PGD", "cw": "CW", "stepll": "StepLL", "iter-stepll": "Iter-StepLL",
                "pgd+a3": "PGD+A3", "stepll+a3": "StepLL+A3", "iter-stepll+a3": "Iter-StepLL+A3"}.get(self.name, self.name)
        return f"{base}{self.steps}" if self.steps and self.name in ("pgd", "cw") else base


@dataclass
class AdaptiveConfig:
    """White-box adaptive attack of ICAART Fig. 10 (Eq. 13): LaVAN re-trained through each defense.

    Empty ``defenses`` = not part of this preset. ``lam`` None: each defense's largest preset λ;
    ``size`` None: the largest size of the preset's first attack; ``steps`` None: that attack's.
    """

    defenses: list[str] = field(default_factory=list)
    lam: float | None = None
    size: int | None = None
    steps: int | None = None
    record_every: int | None = None


@dataclass
class Preset:
    name: str
    description: str = ""
    tables: list[str] = field(default_factory=list)  # paper tables this preset rebuilds
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attacks: list[AttackConfig] = field(default_factory=list)
    defenses: list[DefenseConfig] = field(default_factory=list)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    # TOMM 2022: the model is trained once per training mode (model.train.training replaced),
    # and each is attacked with every evasion attack (Table 6 rows × columns)
    trainings: list[str] = field(default_factory=list)
    evasion: list[EvasionConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # footnotes printed under tables
    source: str = ""  # where it was loaded from

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


# --------------------------------------------------------------------------------------------
# hashing


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first ``n`` hex digits."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# --------------------------------------------------------------------------------------------
# λ ranges


def parse_lambdas(text: str | list | float | int) -> list[float]:
    """``start:stop[:step]`` (inclusive, default step 0.4) or a comma list, e.g.

    ``1.5:3.5`` -> 1.5, 1.9, 2.3, 2.7, 3.1, 3.5 (every λ the ICAART tables use);
    ``2.3,2.7,3.5`` -> those three. λ must be >= 0.
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
                raise PatchbenchError(
                    f"malformed λ range {s!r}: start, stop and step must be numbers"
                ) from None
            start, stop = nums[0], nums[1]
            step = nums[2] if len(nums) == 3 else 0.4
            if not all(math.isfinite(v) for v in nums):
                raise PatchbenchError(f"malformed λ range {s!r}: values must be finite")
            if step <= 0:
                raise PatchbenchError(f"malformed λ range {s!r}: step must be > 0")
            if stop < start:
                raise PatchbenchError(f"malformed λ range {s!r}: stop is below start")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            try:
                values = [float(p) for p in s.split(",") if p.strip()]
            except ValueError:
                raise PatchbenchError(f"malformed λ list {s!r}: expected numbers like 2.3,2.7") from None
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise PatchbenchError(f"λ must be a finite number >= 0, got {v}")
    # keep order, drop duplicates
    seen: list[float] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


# --------------------------------------------------------------------------------------------
# loading


def preset_names() -> list[str]:
    files = resources.files("patchbench") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def _read_preset_dict(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise PatchbenchError(f"preset file not found: {name_or_path}")
        text, source = path.read_text(), str(path)
    else:
        if name_or_path not in preset_names():
            raise PatchbenchError(
                f"unknown preset {name_or_path!r}; known: {', '.join(preset_names())} (or a .yaml path)"
            )
        res = resources.files("patchbench") / "presets" / f"{name_or_path}.yaml"
        text, source = res.read_text(), f"patchbench/presets/{name_or_path}.yaml"
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
        key, value = item.split("=", 1)
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
                    node[idx] = yaml.safe_load(value)
                else:
                    node = node[idx]
            else:
                if last:
                    node[part] = yaml.safe_load(value)
                else:
                    node = node.setdefault(part, {})
    return raw


def _build(cls, raw: Any, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PatchbenchError(f"{where} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise PatchbenchError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(names)})")
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


def preset_from_dict(raw: dict, source: str = "") -> Preset:
    raw = dict(raw)
    if "name" not in raw:
        raise PatchbenchError(f"preset {source} has no name")
    model_raw = dict(raw.pop("model", {}) or {})
    train = _build(TrainConfig, model_raw.pop("train", {}), "model.train")
    model = _build(ModelConfig, {**model_raw, "train": train}, "model")
    data = _build(DataConfig, raw.pop("data", {}), "data")
    attacks = [_build(AttackConfig, a, f"attacks.{i}") for i, a in enumerate(raw.pop("attacks", []) or [])]
    defenses = [_defense_from_raw(d, f"defenses.{i}") for i, d in enumerate(raw.pop("defenses", []) or [])]
    adaptive = _build(AdaptiveConfig, raw.pop("adaptive", {}), "adaptive")
    evasion = [_build(EvasionConfig, e, f"evasion.{i}") for i, e in enumerate(raw.pop("evasion", []) or [])]
    preset = _build(Preset, {**raw, "data": data, "model": model, "attacks": attacks, "defenses": defenses,
                             "adaptive": adaptive, "evasion": evasion}, "preset")
    preset.source = source
    validate(preset)
    return preset


def load_preset(name_or_path: str, overrides: list[str] | None = None) -> Preset:
    raw, source = _read_preset_dict(name_or_path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return preset_from_dict(raw, source)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise PatchbenchError(msg)


def validate(p: Preset) -> None:
    """Range checks with the key in the message. Names are checked against the registries."""
    from patchbench.data import DATASETS
    from patchbench.defenses import DEFENSES
    from patchbench.models import MODELS

    d = p.data
    _check(d.dataset in DATASETS, f"unknown dataset {d.dataset!r}; known: {', '.join(DATASETS)}")
    _check(isinstance(d.image_size, int) and d.image_size >= 8, f"data.image_size must be an integer >= 8, got {d.image_size!r}")
    _check(isinstance(d.eval_n, int) and d.eval_n >= 0, f"data.eval_n must be an integer >= 0, got {d.eval_n!r}")
    _check(isinstance(d.batch_size, int) and d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size!r}")
    _check(p.device in ("auto", "cpu", "cuda") or str(p.device).startswith("cuda:"), f"device must be auto, cpu or cuda[:i], got {p.device!r}")
    m = p.model
    _check(m.arch in MODELS, f"unknown model {m.arch!r}; known: {', '.join(MODELS)}")
    validate_train(m.train, where="model.train")
    for i, a in enumerate(p.attacks):
        validate_attack(a, d.image_size, where=f"attacks.{i}")
    for t in p.trainings:
        _check(t in TRAINING_MODES, f"trainings: unknown training {t!r}; known: {', '.join(TRAINING_MODES)}")
    for i, e in enumerate(p.evasion):
        validate_evasion(e, f"evasion.{i}")
    ad = p.adaptive
    for name in ad.defenses:
        _check(name in DEFENSES, f"adaptive.defenses: unknown defense {name!r}; known: {', '.join(DEFENSES)}")
    _check(ad.lam is None or ad.lam >= 0, f"adaptive.lam must be >= 0, got {ad.lam!r}")
    _check(ad.steps is None or (isinstance(ad.steps, int) and ad.steps >= 1), f"adaptive.steps must be an integer >= 1, got {ad.steps!r}")
    _check(ad.record_every is None or (isinstance(ad.record_every, int) and ad.record_every >= 1),
           f"adaptive.record_every must be an integer >= 1, got {ad.record_every!r}")
    _check(not ad.defenses or bool(p.attacks), "adaptive needs an attack entry (its hyper-parameters are reused)")
    for i, df in enumerate(p.defenses):
        _check(df.name in DEFENSES, f"unknown defense {df.name!r}; known: {', '.join(DEFENSES)}")
        DEFENSES[df.name].check_params(df.params)


def validate_attack(a: AttackConfig, image_size: int, where: str = "attack") -> None:
    from patchbench.attacks import ATTACKS
    from patchbench.attacks.patch import PLACEMENTS, PatchAttack

    patch_attacks = [n for n, c in ATTACKS.items() if issubclass(c, PatchAttack)]
    _check(a.name in patch_attacks, f"unknown patch attack {a.name!r}; known: {', '.join(patch_attacks)}")
    _check(a.placement in PLACEMENTS, f"{where}.placement must be one of {', '.join(PLACEMENTS)}, got {a.placement!r}")
    _check(len(a.sizes) > 0, f"{where}.sizes is empty")
    for s in a.sizes:
        _check(isinstance(s, int) and 0 < s < image_size, f"patch size must be an integer in 1..{image_size - 1} px for {image_size} px images, got {s!r}")
        _check(s + 2 * max(a.margin, 0) <= image_size, f"patch size {s} px plus margin {a.margin} px does not fit in {image_size} px images")
    _check(a.margin >= 0, f"{where}.margin must be >= 0")
    _check(isinstance(a.steps, int) and a.steps >= 1, f"{where}.steps must be an integer >= 1, got {a.steps!r}")
    _check(a.batch_size >= 1 and a.lr > 0 and 0 <= a.momentum < 1, f"{where}: batch_size >= 1, lr > 0, 0 <= momentum < 1 are required")
    _check(isinstance(a.target, int) and a.target >= 0, f"{where}.target must be a class index >= 0, got {a.target!r}")
    _check(0 <= a.rotation <= 180, f"{where}.rotation must be in 0..180 degrees, got {a.rotation!r}")
    _check(len(a.scale_range) == 2 and 0 < a.scale_range[0] <= a.scale_range[1],
           f"{where}.scale_range must be [lo, hi] with 0 < lo <= hi, got {a.scale_range!r}")


def validate_evasion(e: EvasionConfig, where: str = "evasion") -> None:
    """Name and ranges of an evasion attack (ART-style checks: bad ε/steps → one-line error)."""
    from patchbench.attacks import ATTACKS
    from patchbench.attacks.patch import PatchAttack

    names = [n for n, c in ATTACKS.items() if not issubclass(c, PatchAttack)]
    _check(e.name in names, f"{where}: unknown evasion attack {e.name!r}; known: {', '.join(names)}")
    _check(isinstance(e.eps, (int, float)) and not isinstance(e.eps, bool) and math.isfinite(e.eps) and 0 < e.eps <= 1,
           f"{where}.eps must be a number in (0, 1] (pixel scale; 8/255 = 0.0314), got {e.eps!r}")
    _check(e.steps is None or (isinstance(e.steps, int) and not isinstance(e.steps, bool) and e.steps >= 1),
           f"{where}.steps must be an integer >= 1, got {e.steps!r}")
    import inspect

    accepted = inspect.signature(ATTACKS[e.name].__init__).parameters
    for key in ("steps", "step_size"):
        _check(getattr(e, key) is None or key in accepted, f"{where}: attack {e.name} takes no {key}")
    for key in e.params:
        _check(key in accepted and key not in ("self", "model", "eps"), f"{where}.params: attack {e.name} has no parameter {key!r}")
    for t in e.trainings:
        _check(t in TRAINING_MODES, f"{where}.trainings: unknown training {t!r}; known: {', '.join(TRAINING_MODES)}")
    _check(e.step_size is None or (isinstance(e.step_size, (int, float)) and math.isfinite(e.step_size) and e.step_size > 0),
           f"{where}.step_size must be a number > 0, got {e.step_size!r}")
