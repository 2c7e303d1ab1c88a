"""How a command runs a preset: every input checked before any work (``check_data``,
``check_sweep_inputs``), then ``sweep``, ``evaluate_one``, ``status`` or ``run_preset`` (``reproduce``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from patchbench.cache.models import ensure_model, model_path, needs_training
from patchbench.cache.patches import load_patches, preset_patches
from patchbench.config import PatchFile, Preset, parse_lambdas
from patchbench.data import load_split
from patchbench.defenses.base import UNDEFENDED, is_undefended
from patchbench.devices import resolve_device
from patchbench.errors import check_limit
from patchbench.evaluation.defense_params import defense_params, defense_runs
from patchbench.evaluation.grid import run_grid
from patchbench.evaluation.stages import stage
from patchbench.papers import all_experiments, get_paper
from patchbench.sections.audit import audit_preset
from patchbench.store.results import NotCached, ResultStore, parse_shard
from patchbench.util import console


def check_data(preset: Preset) -> None:
    """Fail fast (one-line error) when a split the preset needs is missing, before long work."""
    d = preset.data
    load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    if needs_training(preset) or preset.attacks or any(t != "raw" for t in preset.trainings):
        load_split(d.dataset, d.root, "train", d.image_size, verify=d.verify)


def check_sweep_inputs(preset: Preset, defenses: str | None, lambdas: str | None, patch_files: list[str] | None):
    """Every input of a sweep checked before any work: (defense names, λ list, patches)."""
    names = [n.strip() for n in defenses.split(",") if n.strip()] if defenses is not None else None
    for n in names or []:
        if not is_undefended(n):
            defense_params(preset, n)
    lams = parse_lambdas(lambdas) if lambdas is not None else None
    given = load_patches([f.strip() for item in patch_files or [] for f in item.split(",") if f.strip()], preset)
    own = [] if given else preset_patches(preset)  # the preset's patches: files, read and checked now
    # the grid's size, bounded before anything is trained: conditions × (none + Σ defenses × their λs)
    conditions = 1 + (len(given) if given else len(own) + sum(len(a.sizes) * max(1, len(a.seeds)) for a in preset.attacks))
    lam_counts = [len(lams) if lams is not None else len(d.lambdas) for d in preset.defenses
                  if names is None or d.name in names] + [len(lams or [1]) for n in names or [] if n not in
                                                           {d.name for d in preset.defenses} | {UNDEFENDED}]
    check_limit("cells", conditions * (1 + sum(lam_counts)), "the sweep grid")
    check_data(preset)
    return names, lams, given


def status(preset: Preset, results: Path) -> dict:
    """``patchbench status``: the preset's grid planned from its cached models and patches (nothing is
    trained or computed) -> {"planned", "done", "missing", "blocked"}; ``blocked`` names the first
    model or patch still to train when the grid cannot be planned yet."""
    check_data(preset)
    store = ResultStore(results, plan_only=True)
    try:
        all_experiments()[preset.experiment].sweep(preset, store, resolve_device("cpu"), False)
    except NotCached as exc:
        return {"planned": None, "done": None, "missing": None, "blocked": str(exc)}
    planned = list(dict.fromkeys(store.planned))
    done = sum(store.has(r) for r in planned)
    return {"planned": len(planned), "done": done, "missing": len(planned) - done, "blocked": None}


def status_line(preset: Preset, results: Path) -> str:
    """``patchbench status``'s line: cells planned, done and missing, or what blocks the planning."""
    s = status(preset, results)
    stored = ResultStore(results, read_only=True).load_cells()
    mine = int((stored["preset"] == preset.name).sum()) if len(stored) else 0
    if s["blocked"]:
        return f"{preset.name}: {mine} cells stored; {s['blocked']}"
    return f"{preset.name}: {s['planned']} cells planned, {s['done']} done, {s['missing']} missing"


def sweep(preset: Preset, results: Path, defenses: str | None = None, lambdas: str | None = None,
          patch_files: list[str] | None = None, progress: bool = True, shard: str | None = None) -> pd.DataFrame:
    """``patchbench sweep``: check every input (defense names, λ list, patch files, data), then run
    the preset's experiment. ``defenses`` a comma list, ``lambdas`` a λ range or list,
    ``patch_files`` paths (each may be a comma list); ``shard`` ``"i/n"``: compute only slice i of n of
    the missing cells (:class:`~patchbench.store.results.ResultStore`)."""
    shard_spec = parse_shard(shard)
    names, lams, given = check_sweep_inputs(preset, defenses, lambdas, patch_files)
    store, device = ResultStore(results, shard=shard_spec), resolve_device(preset.device)
    rows = all_experiments()[preset.experiment].sweep(preset, store, device, progress, defenses=names, lambdas=lams, patches=given)
    audit_cells(preset, store, device, progress)
    return rows


def evaluate_one(preset: Preset, results: Path, patch_file: PatchFile | None, defense: str, lam: float,
                 overrides: dict, progress: bool = True) -> pd.DataFrame:
    """``patchbench evaluate``: one cell (the patch — a PNG or tensor file at its own placement or the
    one ``patch_file`` asks for — or clean images, × defense at λ), stored."""
    patches = load_patches([patch_file], preset) if patch_file is not None else []
    if not is_undefended(defense):
        defense_params(preset, defense, overrides)
    check_data(preset)
    store, device = ResultStore(results), resolve_device(preset.device)
    loaded = ensure_model(preset, store, device, progress=progress)
    runs = defense_runs(preset, loaded.model, [defense], [lam], overrides, include_none=is_undefended(defense))
    return run_grid(preset, loaded, patches, runs, store, device, include_clean=patch_file is None, progress=progress)


def run_preset(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> None:
    """Everything a preset asks for: its experiment's sweep, then its paper's extra steps."""
    rows = all_experiments()[preset.experiment].sweep(preset, store, device, progress)
    console.print(f"[bold]{preset.name}[/]: {len(rows)} cells")
    get_paper(preset.paper).extra_steps(preset, store, device, progress)
    audit_cells(preset, store, device, progress)


def audit_cells(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True) -> None:
    """The attack-failure audit of a patch-defense preset's cells (:mod:`patchbench.sections.audit`),
    once its grid is whole: not in a shard (the last shard's ``patchbench audit`` does it)."""
    if preset.experiment != "patch-defense" or not preset.attacks or store.shard is not None or store.plan_only:
        return

    with stage("audit"):
        audit_preset(preset, store.root, device, progress=progress, require=False)


def store_and_device(preset: Preset, results: Path) -> tuple[ResultStore, torch.device]:
    """The results store and the preset's device, for a command that trains or evaluates."""
    return ResultStore(results), resolve_device(preset.device)


def model_line(preset: Preset, store: ResultStore, loaded) -> str:
    """``train-model``'s line: the trained model's test accuracy and checkpoint, or the weights loaded."""
    m = loaded.meta
    if needs_training(preset):
        return (f"{preset.model.arch}: test accuracy [bold]{m['test_accuracy']:.2%}[/] on {m['test_n']} images, "
                f"seed {m['seed']}, config {m['config_hash']} -> {model_path(preset, store)}")
    return f"{preset.model.arch}: weights {m['weights']} loaded (model id {loaded.model_id}); nothing to train"


def cell_lines(rows: pd.DataFrame) -> list[str]:
    """One line per evaluated cell: condition | defense λ | accuracy [95% CI] (n) target success | run id."""
    lines = []
    for r in rows.itertuples():
        aim = "untargeted" if r.target is None or r.target != r.target else f"class {int(r.target)}"
        what = "clean" if r.condition == "clean" else f"{r.attack} {int(r.patch_px)}px -> {aim}"
        lam = "" if r.lam is None or r.lam != r.lam else f" λ={r.lam:g}"
        asr = r.attack_success_rate
        hits = "" if asr is None or asr != asr else f"  target success {100 * asr:.1f}%"
        lines.append(f"{what} | {r.defense}{lam} | accuracy [bold]{100 * r.accuracy:.2f}%[/] "
                     f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] (n={r.n}){hits} | run {r.run_id}")
    return lines
