"""Presets from YAML: the shipped ones (each paper's ``presets/`` folder), reading, ``--set``
overrides and validation against every registry.

A preset is the single source of every number in a run. CLI options override preset fields;
``--set section.field=value`` overrides any field. Unknown keys and bad values raise
:class:`PatchbenchError` with the offending key in the message. Names are checked against the
registries; each attack and defense checks its own parameters (``check_config`` /
``check_params``); a paper checks the sections it declares.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from pathlib import Path

import yaml

from patchbench.attacks import attack_class
from patchbench.attacks.placement import PLACEMENTS
from patchbench.config import (
    AMP_DTYPES,
    AttackConfig,
    AuditConfig,
    DataConfig,
    DefenseConfig,
    EvasionConfig,
    ModelConfig,
    PatchFile,
    Preset,
    TrainConfig,
    VolumizeConfig,
    apply_overrides,
    build_dataclass,
    parse_lambdas,
)
from patchbench.data import DATASETS
from patchbench.defenses import DEFENSES
from patchbench.errors import PatchbenchError, check, is_int
from patchbench.models import MODELS
from patchbench.models.checks import validate_volumize
from patchbench.papers import PAPERS, all_experiments, get_paper
from patchbench.training.checks import validate_train
from patchbench.training.objectives import check_objective

# libyaml's safe loader where PyYAML was built with it (the same documents, about 10x faster than the
# pure-Python one on a preset); the pure-Python one otherwise
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def preset_paths() -> dict[str, Path]:
    """Every shipped preset: name -> YAML file, from each paper's ``presets/`` folder."""
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
        raw = copy.deepcopy(_parse_yaml(text))  # a copy: building the preset changes nested mappings
    except yaml.YAMLError as exc:
        raise PatchbenchError(f"preset {source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PatchbenchError(f"preset {source} must be a YAML mapping")
    return raw, source


@functools.lru_cache(maxsize=128)
def _parse_yaml(text: str):
    """A preset's YAML document, parsed once per process and text (a report, ``list presets`` and the claims read
    each preset several times; parsing takes ~2 ms, a copy 0.1 ms). Keyed by the text itself: an edited file
    is parsed again."""
    return yaml.load(text, Loader=SAFE_LOADER)


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
    patches = [build_dataclass(PatchFile, {"file": e} if isinstance(e, str) else e, f"patches.{i}")
               for i, e in enumerate(_list(raw, "patches"))]
    audit = build_dataclass(AuditConfig, raw.pop("audit", {}) or {}, "audit")
    preset = build_dataclass(Preset, {**raw, "data": data, "model": model, "attacks": attacks, "audit": audit,
                                      "defenses": defenses, "evasion": evasion, "patches": patches, "extra": extra}, "preset")
    preset = replace(preset, source=source)
    validate(preset)
    return preset


def load_preset(name_or_path: str, overrides: list[str] | None = None, *, skip_absent_sections: bool = False) -> Preset:
    """The preset with ``overrides`` (``--set``) applied. A ``--set`` naming a paper section the preset lacks is
    refused, or with ``skip_absent_sections`` (``reproduce``: one ``--set`` for all of a paper's presets) left out
    for this preset; :func:`check_sets_reach_a_preset` then refuses one that no preset has."""
    raw, source = _read_preset_dict(name_or_path)
    if overrides:
        absent = [item for item in overrides if _absent_section(raw, item)]
        if absent and not skip_absent_sections:
            key, head = _set_key(absent[0])
            raise PatchbenchError(f"--set {key}: preset {raw.get('name', source)} has no {head} section (--set changes "
                                  f"a section the preset has; write a preset YAML with a {head}: section to add one)")
        raw = apply_overrides(raw, [item for item in overrides if item not in absent])
    return preset_from_dict(raw, source)


def check_sets_reach_a_preset(presets: list[Preset], overrides: list[str] | None) -> None:
    """Each ``--set`` that names a paper section must find it in at least one of ``presets``."""
    for item in overrides or []:
        key, head = _set_key(item)
        work = [p for p in presets if _is_work_section(get_paper(p.paper).sections.get(head))]
        check(not work or any(head in p.extra for p in work),
              f"--set {key}: none of the presets ({', '.join(p.name for p in presets)}) has a {head} section")


def _set_key(item: str) -> tuple[str, str]:
    """(key, its section) of a ``--set`` item: ``certified.model.epochs=1`` -> (``certified.model.epochs``, ``certified``)."""
    key = item.split("=", 1)[0].strip()
    return key, key.split(".", 1)[0]


def _is_work_section(cls) -> bool:
    """A paper section whose presence starts work (``certified:``, ``adaptive:``); a settings-only one
    (``sanity:``, its absence means its defaults) may be added by ``--set``."""
    return cls is not None and not getattr(cls, "settings_only", False)


def _absent_section(raw: dict, item: str) -> str | None:
    """The work section ``item`` (``section.field=value``) names that the raw preset lacks, else None: ``--set
    certified.k=4`` on a preset without ``certified:`` would start a whole certified run at every default."""
    paper = raw.get("paper")
    sections = get_paper(str(paper)).sections if isinstance(paper, str) and paper in PAPERS else {}
    head = _set_key(item)[1]
    return head if _is_work_section(sections.get(head)) and head not in raw else None


def validate(p: Preset) -> None:
    """Range checks with the key in the message. Names are checked against the registries."""
    experiments = all_experiments()
    check(p.experiment in experiments, f"unknown experiment {p.experiment!r}; known: {', '.join(experiments)}")
    d = p.data
    check(d.dataset in DATASETS, f"unknown dataset {d.dataset!r}; known: {', '.join(DATASETS)}")
    check(is_int(d.image_size) and d.image_size >= 8, f"data.image_size must be an integer >= 8, got {d.image_size!r}")
    check(is_int(d.eval_n) and d.eval_n >= 0, f"data.eval_n must be an integer >= 0, got {d.eval_n!r}")
    check(is_int(d.batch_size) and d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size!r}")
    check(isinstance(d.verify, bool), f"data.verify must be true or false, got {d.verify!r}")
    check(p.device in ("auto", "cpu", "cuda") or str(p.device).startswith("cuda:"), f"device must be auto, cpu or cuda[:i], got {p.device!r}")
    for key in ("n", "probes"):
        v = getattr(p.audit, key)
        check(is_int(v) and v >= 1, f"audit.{key} must be an integer >= 1, got {v!r}")
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
    check(isinstance(p.training_seeds, dict), "training_seeds must be a mapping: training objective -> list of seeds")
    for t, seeds in p.training_seeds.items():
        check(t in p.trainings, f"training_seeds.{t}: not one of trainings ({', '.join(p.trainings) or 'none'})")
        check(isinstance(seeds, list) and seeds and all(is_int(s) for s in seeds) and len(set(seeds)) == len(seeds),
              f"training_seeds.{t} must be a non-empty list of distinct integers, got {seeds!r}")
    for i, e in enumerate(p.evasion):
        attack_class(e.name, patch=False).check_config(e, d.image_size, where=f"evasion.{i}")
        for t in e.trainings:
            check_objective(t, f"evasion.{i}.trainings")
    for i, f in enumerate(p.patches):
        check(isinstance(f.file, str) and f.file.strip() != "", f"patches.{i}.file must name a PNG or tensor file")
        check(f.placement is None or f.placement in (*PLACEMENTS, "affine"),
              f"patches.{i}.placement must be one of {', '.join((*PLACEMENTS, 'affine'))} or null, got {f.placement!r}")
    for df in p.defenses:
        check(df.name in DEFENSES, f"unknown defense {df.name!r}; known: {', '.join(DEFENSES)}")
        DEFENSES[df.name].check_params(df.params)
    experiments[p.experiment].check(p)
    get_paper(p.paper).validate(p)
