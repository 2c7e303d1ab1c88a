"""Evaluation grids: a preset's conditions (clean, patches, evasion attacks) × defenses × λ on its
evaluation images, through the engine into the result store."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import torch

from patchbench.attacks import attack_class
from patchbench.attacks.patch import Patch
from patchbench.cache.models import LoadedModel, ensure_model, with_training
from patchbench.config import Preset
from patchbench.data import eval_indices, load_split
from patchbench.defenses.base import NoDefense
from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
from patchbench.models import Classifier
from patchbench.store.results import ResultStore


def eval_columns(preset: Preset, loaded: LoadedModel) -> dict:
    """The columns every cell of the preset's grids on ``loaded`` carries."""
    d = preset.data
    return {"dataset": d.dataset, "split": d.eval_split, "eval_seed": d.eval_seed, "image_size": d.image_size,
            "model": preset.model.arch, "model_id": loaded.model_id, "amp": preset.model.amp}


def evaluate_conditions(preset: Preset, loaded: LoadedModel, conditions: list[Condition], runs: list[DefenseRun],
                        store: ResultStore, device: torch.device, progress: bool = True, **extra) -> pd.DataFrame:
    """Every missing cell of ``conditions`` × ``runs`` × λ on the preset's evaluation images."""
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)
    ctx = EvalContext(loaded.model, source, idx, d.image_size, d.batch_size, store, device, eval_columns(preset, loaded),
                      {"preset": preset.name, **extra}, d.num_workers, progress, d.ssim_n, preset.model.amp)
    return evaluate(ctx, conditions, runs)


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


def build_evasion(cfg, model: Classifier, image_size: int):
    """The registry's attack for an :class:`~patchbench.config.EvasionConfig`, on ``model`` (``image_size`` px images)."""
    return attack_class(cfg.name, patch=False).from_config(model, cfg, image_size)


def evasion_conditions(evasion, model: Classifier, training: str, image_size: int) -> list[Condition]:
    """One Condition per evasion config; configs of an attack that shares its trajectory across steps
    (PGD, CW) with a fixed step size that differ only in their number of steps share one run
    (:class:`SharedTrajectory`)."""
    configs = [e for e in evasion if not e.trainings or training in e.trainings]
    groups: dict[str, list] = {}
    for e in configs:
        if attack_class(e.name, patch=False).shares_trajectory_across_steps and e.steps and e.step_size is not None:
            key = json.dumps([e.name, e.eps, e.step_size, e.seed, e.params], sort_keys=True, default=str)
            groups.setdefault(key, []).append(e)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            longest = replace(members[0], steps=max(m.steps for m in members))
            traj = SharedTrajectory(build_evasion(longest, model, image_size), [m.steps for m in members])
            shared.update({id(m): traj.step(m.steps) for m in members})
    return [Condition(attack=shared.get(id(e)) or build_evasion(e, model, image_size), attack_config=e) for e in configs]


def run_evasion_grid(preset: Preset, training: str, store: ResultStore, device: torch.device,
                     progress: bool = True, seed: int | None = None) -> pd.DataFrame:
    """Train (or load) the ``training`` model of ``preset`` (training seed ``seed``; None: the
    preset's model.train.seed) and evaluate clean + every evasion attack; cells carry ``train_seed``."""
    p = with_training(preset, training)
    if seed is not None:
        p = p.with_train(seed=seed)
    loaded = ensure_model(p, store, device, progress=progress)
    conditions = [Condition(None)] + evasion_conditions(p.evasion, loaded.model, training, p.data.image_size)
    return evaluate_conditions(replace(p, data=replace(p.data, ssim_n=0)), loaded, conditions, [DefenseRun(NoDefense(), [None])], store, device,
                               progress, training=training, train_seed=p.model.train.seed)

