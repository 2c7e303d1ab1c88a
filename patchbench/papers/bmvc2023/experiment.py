"""The ``volumization`` experiment (BMVC 2023 Sec. 4-5): the undefended 2-D model f and one
volumetric model g per syllabus, each attacked with the N-pixel attack and adversarial patches
(one per named target, or untargeted) under the paper's region protocol; LGS and DW measured on f
with the same attacked images.

Per preset (``volumetric:`` section, :class:`VolumetricSection`):

1. f: ``model`` trained as usual (2-D, ERM).
2. g per syllabus: the same ``arch`` made volumetric (``model.volumize`` = the section's
   ``volumize`` plus the syllabus metric/order: the volumizer ranks patches by the syllabus metric,
   Sec. 4.1 "identical for both the volumizer and CL"), trained with the patch-aggregate loss
   (``pal``, Eq. 10) and, with ``curriculum: true``, the curriculum syllabus (Sec. 4.3).
   After every epoch of f and g a 1-pixel attack on ``validation_n`` test images outside the
   evaluation subset measures the defense success rate (Fig. 2 (b)); the model's history keeps it.
3. Attacks, every one under the region protocol (Sec. 5 "Attack Strategy";
   :func:`patchbench.attacks.npixel.protocol_regions`): each attack is confined to each of the 4
   quadrants and to the centre ("the average of the five attacked classifications"), or only to
   the centre when it would span quadrants. A cell per region; tables average the regions.

   * ``evasion:`` N-pixel entries, each run against each model itself: Foolbox 2's
     ``single_pixel`` (N = 1) and ``multiple_pixels`` (N > 1), the attacks the paper ran (Sec. 4,
     "We used FoolBox implementations of N-pixel attacks"), and Su et al.'s differential evolution
     ``npixel``, a stronger search kept beside them. (Foolbox's ``local_search`` changes up to
     R·t pixels, no fixed N, so it is an attack of the registry but not of this protocol.)
   * ``attacks:`` adversarial patches of 5-25 % of the image (Sec. 3, Sec. 5), trained on f
     (random location, Brown et al.'s EoT); a patch is evaluated at the outer corner of each
     quadrant and at the centre. The paper used targeted patches ("Toaster, School-Bus, Lipstick
     and Pineapple", Sec. 5; Table 2's caption): an ``attacks:`` entry has one ``target``, so the
     paper presets hold one entry per named target (ImageNet: toaster 859, lipstick 629,
     pineapple 953, school bus 779; CIFAR-10/100 and the demo: the classes each preset's comment
     states), every entry at every size. ``target: null`` (an untargeted patch, lowering
     log p(true class)) stays an option, and entries of both kinds may be mixed. On g they are *transfer* patches (``patch_source``
     ``undefended``), what the paper implies; with ``whitebox: true`` patches are also trained on
     each g itself through the volumizer (``patch_source`` ``self``): the ranking is piecewise
     constant and treated as a constant, so the gradient reaches the pixels through the patch
     gather (exact wherever the order does not change).
4. ``defenses:`` (LGS, DW) run on f only, on the same attacked images.

Cells carry ``method`` (``undefended`` or ``volumized-<syllabus>``), ``syllabus`` and
``patch_source``; the engine's ``defense_success_rate`` is the paper's α/β.

α / β ("the defense success rate (β) — the percentage of successfully defended attacks", Sec. 5):
an attack on an image is *defended* when the image is still classified correctly, for targeted
patches too — not merely "not classified as the target". The paper's objectives are stated for
untargeted attacks ("In this study, we only focus on untargeted attacks", Sec. 3: the attack
succeeds when argmax f(x') ≠ argmax f(x), the defense is robust when it does not), so a targeted
patch that moves an image to any wrong class is not defended; one definition also lets α pool
targeted and untargeted patches, all targets, sizes and regions (Table 2 bottom pools "toaster,
lipstick, pineapple, and school-bus"). Of the images the model classifies correctly when clean
(without a defense), the share still correct under the patch (and the defense). Images of the
target class itself are left out of a targeted patch's α (the engine counts ``n_clean_correct``
and ``kept_correct`` on the other images, as it does for the attack success rate): "classified
correctly" and "classified as the target" are the same for them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd
import torch

from patchbench.api import (
    ATTACKS, Column, Condition, DefenseRun, METRICS, MODELS, NoDefense, NPixel, Patch, PatchbenchError, Preset, ResultStore,
    TrainConfig, VolumizeConfig, check, console, declare_columns, defense_runs, ensure_model, ensure_patches,
    eval_indices, evaluate_conditions, is_int, load_split, npixel_extent, protocol_regions, refuse_grid_options,
    validate_train, validate_volumize,
)

# the columns this experiment adds to its cells (labels only: the model and patch ids already tell cells apart)
declare_columns("bmvc2023", Column("method", "str"), Column("syllabus", "str"), Column("patch_source", "str"))
PIXEL_ATTACKS = ("single_pixel", "multiple_pixels", "npixel")  # Foolbox 2's min/max pixel attacks, Su et al.'s DE
REGION_PLACEMENTS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
LABELS = {"entropy": "H", "mi": "MI", "kl": "KL", "psnr": "PSNR", "max_norm": "MN", "joint_entropy": "JE", "mse": "MSE"}


@dataclass(frozen=True)
class SyllabusSpec:
    metric: str  # a metric of patchbench.volumization.METRICS (Table 1)
    order: str = "ascending"  # simple -> complex (Eq. 11-13)
    curriculum: bool = True  # also order the training batches (Sec. 4.3); false: the volumizer only
    label: str | None = None  # table label (default: the paper's abbreviation, e.g. MI, H, PSNR)

    @property
    def name(self) -> str:
        return (self.label or LABELS.get(self.metric, self.metric)).lower()


@dataclass(frozen=True)
class VolumetricSection:
    """The preset section ``volumetric:`` (see the module docstring)."""

    volumize: dict = field(default_factory=dict)  # VolumizeConfig fields shared by every g (not metric/order)
    train: dict = field(default_factory=dict)  # TrainConfig fields of g over the model's (training: pal)
    syllabi: list = field(default_factory=list)  # SyllabusSpec entries: one g each (per architecture)
    architectures: list = field(default_factory=list)  # 2-D nets f (each with its g's); empty: [model.arch]
    whitebox: bool = True  # also patches trained on each g itself
    validation_n: int = 100  # Fig. 2: images attacked after each epoch (0: no curve)
    validation_population: int = 40
    validation_iterations: int = 10
    paper_models: dict = field(default_factory=dict)  # our arch -> the paper's column (e.g. small_vgg: vgg16)

    def specs(self) -> list[SyllabusSpec]:
        return [s if isinstance(s, SyllabusSpec) else SyllabusSpec(**s) for s in self.syllabi]

    def model_presets(self, preset: Preset) -> list[tuple[str, Preset]]:
        """(method, preset) of every model the experiment trains, f then each g, per architecture
        (what generic tools such as :mod:`patchbench.probes` load from the cache)."""
        out = []
        for arch in architectures(preset):
            p = for_arch(preset, arch)
            out += [("undefended", p)] + [(f"volumized-{s.name}", g_preset(p, s)) for s in self.specs()]
        return out


def architectures(preset: Preset) -> list[str]:
    return list(section(preset).architectures) or [preset.model.arch]


def for_arch(preset: Preset, arch: str) -> Preset:
    return dataclasses.replace(preset, model=dataclasses.replace(preset.model, arch=arch))


def section(preset: Preset) -> VolumetricSection:
    sec = preset.extra.get("volumetric")
    if sec is None:
        raise PatchbenchError(f"preset {preset.name}: experiment 'volumization' needs a volumetric: section")
    return sec


# --------------------------------------------------------------------------------------------
# checks


def check_preset(p: Preset) -> None:
    """Everything the experiment will need, before any work (one-line errors naming the key)."""
    sec = section(p)
    check(isinstance(sec.syllabi, list) and sec.syllabi, "volumetric.syllabi must be a non-empty list")
    check(isinstance(sec.architectures, list), "volumetric.architectures must be a list of model names")
    for a in sec.architectures:
        check(a in MODELS, f"volumetric.architectures: unknown model {a!r}; known: {', '.join(MODELS)}")
    names = set()
    for i, raw in enumerate(sec.syllabi):
        check(isinstance(raw, dict) and "metric" in raw, f"volumetric.syllabi.{i} must be a mapping with a metric")
        unknown = set(raw) - {f.name for f in dataclasses.fields(SyllabusSpec)}
        check(not unknown, f"unknown key volumetric.syllabi.{i}.{sorted(unknown)[0] if unknown else ''}")
        spec = SyllabusSpec(**raw)
        check(spec.metric in METRICS, f"volumetric.syllabi.{i}.metric must be one of {', '.join(METRICS)}, got {spec.metric!r}")
        check(spec.order in ("ascending", "descending"), f"volumetric.syllabi.{i}.order must be ascending or descending")
        check(spec.name not in names, f"volumetric.syllabi.{i}: two syllabi named {spec.name!r}")
        names.add(spec.name)
    vol_fields = {f.name for f in dataclasses.fields(VolumizeConfig)} - {"metric", "order"}
    bad = set(sec.volumize) - vol_fields
    check(not bad, f"unknown key volumetric.volumize.{sorted(bad)[0] if bad else ''} (allowed: {', '.join(sorted(vol_fields))})")
    bad = set(sec.train) - {f.name for f in dataclasses.fields(TrainConfig)}
    check(not bad, f"unknown key volumetric.train.{sorted(bad)[0] if bad else ''}")
    for spec in sec.specs():
        g = g_preset(p, spec)
        validate_volumize(g.model.volumize, p.data.image_size, "volumetric.volumize")
        validate_train(g.model.train, "volumetric.train")
    for key in ("validation_n", "validation_population", "validation_iterations"):
        check(is_int(getattr(sec, key)) and getattr(sec, key) >= 0, f"volumetric.{key} must be an integer >= 0")
    check(isinstance(sec.whitebox, bool), "volumetric.whitebox must be true or false")
    vol = g_preset(p, sec.specs()[0]).model.volumize
    limit = 2 * vol.patch * vol.patch  # Sec. 5: N in [1, 2·p_w·p_h]
    check(p.evasion or p.attacks, f"preset {p.name}: nothing to attack (evasion: N-pixel entries, attacks: patches)")
    for i, e in enumerate(p.evasion):
        check(e.name in PIXEL_ATTACKS, f"evasion.{i}: experiment 'volumization' runs the N-pixel attacks "
                                       f"({', '.join(PIXEL_ATTACKS)}), got {e.name!r}")
        ATTACKS[e.name].check_config(e, p.data.image_size, f"evasion.{i}")
        n = pixel_count(e)
        check(is_int(n) and 1 <= n <= limit, f"evasion.{i}.params.pixels must be in 1..{limit} (2·p_w·p_h, BMVC Sec. 5), got {n!r}")
        check("region" not in e.params, f"evasion.{i}.params.region is set by the region protocol, not the preset")
    for i, a in enumerate(p.attacks):  # targets: one per entry, range-checked with the preset (null: untargeted)
        for s in a.sizes:
            area = s * s / p.data.image_size ** 2
            check(0.05 <= area <= 0.25, f"attacks.{i}: a {s} px patch covers {area:.1%} of the image; BMVC 2023 patches "
                                       "cover 5-25 % (Sec. 3, Sec. 5)")


# --------------------------------------------------------------------------------------------
# models


def g_preset(preset: Preset, spec: SyllabusSpec) -> Preset:
    """The preset of the volumetric model g for ``spec``: volumized ``arch``, PAL, the syllabus."""
    sec = section(preset)
    volumize = VolumizeConfig(**{**sec.volumize, "metric": spec.metric, "order": spec.order})
    train = {**dataclasses.asdict(preset.model.train), "training": "pal", **sec.train}
    if spec.curriculum:
        train.update(syllabus=spec.metric, syllabus_order=spec.order)
    model = dataclasses.replace(preset.model, volumize=volumize, channels_last=False, train=TrainConfig(**train))
    return dataclasses.replace(preset, model=model)


def validation_hook(preset: Preset, device: torch.device):
    """Fig. 2 (b): after each epoch, the defense success rate of a 1-pixel attack (whole image) on
    ``validation_n`` test images that are not evaluation images; None when validation_n is 0."""
    sec = section(preset)
    if not sec.validation_n:
        return None
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    taken = set(eval_indices(len(source), d.eval_n, d.eval_seed).tolist())
    idx = torch.tensor([i for i in range(len(source)) if i not in taken][: sec.validation_n])
    x, y = source.batch(idx, d.image_size, device), source.labels[idx].to(device)

    def hook(epoch: int, model) -> dict:
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        attack = NPixel(model, pixels=1, population=sec.validation_population, iterations=sec.validation_iterations,
                        seed=epoch)
        with torch.no_grad():
            kept = (model(attack(x[correct], y[correct])).argmax(1) == y[correct]).float().mean().item()
        return {"val_clean_acc": correct.float().mean().item(), "val_defense_success": kept}

    return hook


# --------------------------------------------------------------------------------------------
# conditions


def pixel_count(entry) -> int:
    """N of an N-pixel entry: Foolbox's SinglePixelAttack changes one pixel, the others say ``pixels``."""
    return 1 if entry.name == "single_pixel" else entry.params.get("pixels", 1)


def npixel_conditions(preset: Preset, model) -> list[Condition]:
    """One condition per N-pixel entry and protocol region (the attack runs against ``model``):
    Foolbox's min/max pixel attacks (the paper's, Sec. 4) or Su et al.'s differential evolution."""
    conds = []
    for e in preset.evasion:
        n = pixel_count(e)
        boxes = protocol_regions(preset.data.image_size, npixel_extent(n))
        for box, where in zip(boxes, REGION_PLACEMENTS if len(boxes) == 5 else ("center",)):
            cfg = dataclasses.replace(e, eps=None, params={**e.params, "region": list(box)}, column=f"{n}-pixel {where}")
            attack = ATTACKS[e.name].from_config(model, cfg, preset.data.image_size)
            conds.append(Condition(attack=attack, attack_config=cfg))
    return conds


def placed(patch: Patch, image_size: int) -> list[Patch]:
    """The patch at the outer corner of each quadrant and at the centre (5 regions), or at the
    centre only when it is larger than a quadrant (Sec. 5)."""
    fits = len(protocol_regions(image_size, patch.size)) == 5
    return [Patch(patch.pixels, patch.mask, {**patch.meta, "placement": where, "margin": 0})
            for where in (REGION_PLACEMENTS if fits else ("center",))]


# --------------------------------------------------------------------------------------------
# the sweep


def sweep_volumization(preset: Preset, store: ResultStore, device: torch.device, progress: bool = True, *,
                       defenses=None, lambdas=None, patches=None) -> pd.DataFrame:
    """The undefended model and one volumetric model per syllabus, per architecture of the preset."""
    refuse_grid_options(preset, "a volumization", defenses, lambdas, patches)
    frames = []
    for arch in architectures(preset):
        frames += _sweep_arch(for_arch(preset, arch), store, device, progress)
    return pd.concat(frames, ignore_index=True)


def _sweep_arch(preset: Preset, store: ResultStore, device: torch.device, progress: bool) -> list[pd.DataFrame]:
    sec = section(preset)
    size = preset.data.image_size
    frames = []
    f = ensure_model(preset, store, device, progress=progress, on_epoch_end=validation_hook(preset, device))
    f_patches = ensure_patches(preset, f, store, device, progress=progress)
    models = [("undefended", None, preset, f)]
    for spec in sec.specs():
        gp = g_preset(preset, spec)
        g = ensure_model(gp, store, device, progress=progress, on_epoch_end=validation_hook(preset, device))
        models.append((f"volumized-{spec.name}", spec, gp, g))
    for method, spec, p, loaded in models:
        extra = {"method": method, "syllabus": spec.metric if spec else None, "training": p.model.train.training}
        runs = [DefenseRun(NoDefense(), [None])]
        if spec is None:
            runs = defense_runs(preset, loaded.model, None, None)
        conds = [Condition(None)] + npixel_conditions(preset, loaded.model)
        frames.append(evaluate_conditions(p, loaded, conds, runs, store, device, progress, **extra))
        source = "self" if spec is None else "undefended"
        conds = [Condition(q) for patch in f_patches for q in placed(patch, size)]
        if conds:
            frames.append(evaluate_conditions(p, loaded, conds, runs, store, device, progress,
                                              patch_source=source, **extra))
        if spec is not None and sec.whitebox and preset.attacks:
            own = ensure_patches(p, loaded, store, device, progress=progress)
            conds = [Condition(q) for patch in own for q in placed(patch, size)]
            frames.append(evaluate_conditions(p, loaded, conds, runs, store, device, progress,
                                              patch_source="self", **extra))
        console.print(f"[bold]{preset.name}[/] {preset.model.arch} {method}: {sum(len(fr) for fr in frames)} cells")
    return frames
