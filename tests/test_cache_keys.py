"""Cache identity (issue 20 item 4): cached models, patches and cells are named by the key fields
their configs declare plus CACHE_SCHEMA, defaults left out, so a new field with a default renames
nothing while a changed key value always does."""

import dataclasses
from dataclasses import asdict, replace

import pytest

from patchbench.store import columns
from patchbench.cache.models import model_config_hash
from patchbench.cache.patches import patch_stem
from patchbench.store.columns import Column, declare_columns
from patchbench.config import AttackConfig, ModelConfig, TrainConfig, VolumizeConfig, keys
from patchbench.presets import load_preset
from patchbench.store.results import ResultStore, run_id

CELL = {"dataset": "d", "split": "test", "eval_n": 10, "model_id": "m", "defense": "lgs", "lam": 2.3, "condition": "clean"}


def with_new_field(obj, name="new_knob", value=None):
    """``obj`` as an instance of a subclass of its config class that adds field ``name`` (default
    0.5), set to ``value`` when given: what adding a defaulted field to the schema does."""
    cls = dataclasses.make_dataclass(type(obj).__name__ + "Plus", [(name, float, dataclasses.field(default=0.5))],
                                     bases=(type(obj),), frozen=True)  # configs are frozen values
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return cls(**fields) if value is None else cls(**fields, **{name: value})


def keys_of(preset, attack, store):
    return model_config_hash(preset), patch_stem(attack, attack.sizes[0], preset, "m", store).name


@pytest.fixture
def declared(monkeypatch):
    """Column declarations made in a test are undone after it."""
    monkeypatch.setattr(columns, "_DECLARED", dict(columns._DECLARED))


@pytest.mark.parametrize("section", ["train", "model", "volumize", "attack"])
def test_a_new_defaulted_field_renames_nothing_and_a_changed_key_value_does(tmp_path, section, declared):
    store = ResultStore(tmp_path)
    p = load_preset("demo-fmnist")
    if section == "volumize":
        p = replace(p, model=replace(p.model, volumize=VolumizeConfig(metric="mi")))
    a = p.attacks[0]
    before = keys_of(p, a, store)

    def put(value=None, **changes):
        target = {"train": p.model.train, "model": p.model, "volumize": p.model.volumize, "attack": a}[section]
        new = with_new_field(replace(target, **changes), value=value)
        model = {"train": lambda: replace(p.model, train=new), "model": lambda: new,
                 "volumize": lambda: replace(p.model, volumize=new), "attack": lambda: p.model}[section]()
        return keys_of(replace(p, model=model), new if section == "attack" else a, store)

    assert put() == before  # the field exists at its default: same model, same patch
    changed = put(value=0.25)  # set away from its default: a new artifact
    if section == "attack":
        assert changed[0] == before[0] and changed[1] != before[1]
    else:
        assert changed[0] != before[0] and changed[1] == before[1]  # the stem takes the model's id, not its hash
    key_field = {"train": {"epochs": 7}, "model": {"arch": "tiny_cnn"}, "volumize": {"patch": 8}, "attack": {"steps": 9}}
    assert put(**key_field[section]) != before

    # a run id: a newly declared key column, unset, renames no cell; set, it makes a new cell
    rid = run_id(CELL)
    assert run_id({**CELL, "amp": None}) == rid and run_id({**CELL, "amp": "bf16"}) != rid
    declare_columns("a-plugin", Column("new_knob", "float", key=True))
    assert run_id({**CELL, "new_knob": None}) == rid
    assert run_id({**CELL, "new_knob": 0.25}) != rid
    assert run_id({**CELL, "lam": 2.7}) != rid


def test_declared_non_key_and_conditional_fields():
    p = load_preset("demo-fmnist")
    h = model_config_hash(p)

    def with_train(**kw):
        return model_config_hash(replace(p, model=replace(p.model, train=replace(p.model.train, **kw))))

    assert model_config_hash(replace(p, model=replace(p.model, amp="bf16"))) == h  # an evaluation setting
    assert with_train(lat_region="mask") == h  # only LAT training has a region
    assert with_train(training="lat", lat_region="mask") != with_train(training="lat")
    assert with_train(syllabus_window=4) == h  # only a syllabus has windows
    assert with_train(test_n=500) == h  # where the trained model's accuracy is measured, not its weights
    assert with_train(syllabus="mi", syllabus_window=4) != with_train(syllabus="mi")
    a = AttackConfig()
    assert keys.key_fields(replace(a, sizes=[3])) == keys.key_fields(a) == {}  # a patch's key holds its one size
    assert keys.key_fields(replace(a, target=None)) == {"target": None}


def test_cache_schema_is_part_of_every_key(tmp_path, monkeypatch):
    p = load_preset("demo-fmnist")
    before = (*keys_of(p, p.attacks[0], ResultStore(tmp_path)), run_id(CELL))
    monkeypatch.setattr(keys, "CACHE_SCHEMA", keys.CACHE_SCHEMA + 1)
    after = (*keys_of(p, p.attacks[0], ResultStore(tmp_path)), run_id(CELL))
    assert all(b != a for b, a in zip(before, after))


# The defaults of the key fields at CACHE_SCHEMA 2. A key field's default is left out of every cache
# key, so changing one would silently reuse artifacts made with the old default: change it together
# with CACHE_SCHEMA and this record. New fields may be added freely (with a default).
PINNED = {
    ModelConfig: dict(arch="small_vgg", weights=None, channels_last=True, train=TrainConfig(), volumize=None),
    TrainConfig: dict(
        epochs=3, batch_size=128, optimizer="adam", lr=0.003, schedule="onecycle", momentum=0.9, weight_decay=0.0,
        seed=0, train_n=0, lr_decay=0.94, lr_decay_every=2, training="raw", class_loss="ce", eps=0.3,
        attack_steps=40, attack_step_size=None, alp_weight=0.5, aad_alpha=0.01, aad_beta=0.01,
        aad_lp_reduction="mean", kappa="mean", lat_region="background", lat_keep_box=0.5, lat_mask_threshold=0.1,
        syllabus=None, syllabus_order="ascending", syllabus_window=8, syllabus_bins=256, cutout_holes=2,
        cutout_fraction=128 / 224),
    VolumizeConfig: dict(
        patch=16, metric="entropy", order="ascending", bins=256, reference="lowest-entropy", pad="none",
        depth_kernel=3, depth_pool=1, min_spatial=1, inflate="center", aggregation="mean-log-prob"),
    AttackConfig: dict(
        name="lavan", target=0, placement="top-right", margin=2, random_placement=False, steps=200, batch_size=64,
        optimizer="sgd", schedule="multistep", lr=0.05, momentum=0.9, lr_milestones=[], lr_gamma=0.1, seed=0,
        seeds=[], restarts=1, select_n=500, train_pool=10000, success_n=1000, rotation=0.0, scale_range=[1.0, 1.0]),
}


@pytest.mark.parametrize("cls", list(PINNED), ids=lambda c: c.__name__)
def test_key_field_defaults_are_pinned_to_the_cache_schema(cls):
    assert keys.CACHE_SCHEMA == 2, "CACHE_SCHEMA changed: record the key fields' defaults anew in PINNED"
    now = asdict(cls())
    changed = {k: (v, now.get(k, "<removed>")) for k, v in PINNED[cls].items()
               if (asdict(v) if dataclasses.is_dataclass(v) else v) != now.get(k, "<removed>")}
    assert not changed, f"{cls.__name__}: key field defaults changed {changed}; bump CACHE_SCHEMA"
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in PINNED[cls]
               and f.metadata.get("key", True) is not False and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    assert not missing, f"{cls.__name__}: key fields without a default {missing} would rename every cache"
